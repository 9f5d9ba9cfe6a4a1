"""How well a ladder's low rungs rank candidates: the same networks trained at each fidelity,
and each low fidelity's rank correlation with the top one.

``--configs`` networks (the space's baselines, then seeded random draws that fit) are each
trained from scratch at every fidelity in ``--fidelities`` (IMAGES x EPOCHS, class-balanced
subsets chosen as the search chooses them, ``runners/climb.rung_data``), with the search's own
``fit_spec`` and seed rule, and scored on the validation split. For every fidelity it gives the
Spearman rank correlation of its scores with the last fidelity's, the mean score, how many
scored within 2 points of chance, and whether the top third it would promote holds the top
fidelity's best network.

    python benchmarks/bench_rungs.py --dataset clutter:3600 --configs 16 \\
        --fidelities 2040x2 2040x4 3060x4 3060x12 --json rungs.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from emit import emit  # noqa: E402


def spearman(a: list[float], b: list[float]) -> float:
    def ranks(xs: list[float]) -> list[float]:
        order = sorted(range(len(xs)), key=lambda i: xs[i])
        out = [0.0] * len(xs)
        i = 0
        while i < len(order):  # ties share their mean rank
            j = i
            while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out
    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.mean(ra), statistics.mean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return cov / var if var else float("nan")


def candidates(space: Any, data: Any, count: int, seed: int) -> list[tuple[str, Any]]:
    import optuna

    from automl_cnn.shapes import InfeasibleArchitecture, plan_layers

    out = [(b.name, space.sample(optuna.trial.FixedTrial(b.params), flip_ok=data.flip_ok))
           for b in space.baselines]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    while len(out) < count:
        trial = study.ask()
        spec = space.sample(trial, flip_ok=data.flip_ok)
        try:
            plan_layers(spec, data.input_shape, data.num_classes)
        except InfeasibleArchitecture:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        study.tell(trial, 0.0)
        out.append((f"random {trial.number}", spec))
    return out[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="clutter:3600")
    parser.add_argument("--space", default="default")
    parser.add_argument("--configs", type=int, default=16)
    parser.add_argument("--fidelities", nargs="+", default=["2040x2", "2040x4", "3060x4",
                                                             "3060x12"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from automl_cnn.data import load_dataset
    from automl_cnn.device import resolve_device
    from automl_cnn.final_fit import trial_seed
    from automl_cnn.ladder import Rung
    from automl_cnn.runners.climb import rung_data
    from automl_cnn.search_spaces import load_space
    from automl_cnn.training import fit_spec, silence_lightning

    silence_lightning()
    device = resolve_device("auto")
    data = load_dataset(args.dataset, seed=args.seed).to(device.torch_device)
    space = load_space(args.space)
    fids = [tuple(int(x) for x in f.split("x")) for f in args.fidelities]
    nets = candidates(space, data, args.configs, args.seed)
    chance = 1.0 / data.num_classes
    scores: dict[str, list[float]] = {f: [] for f in args.fidelities}
    seconds: dict[str, float] = {f: 0.0 for f in args.fidelities}
    rows = []
    for number, (name, spec) in enumerate(nets):
        row: dict[str, Any] = {"net": name}
        for text, (images, epochs) in zip(args.fidelities, fids):
            subset = rung_data(data, Rung(0, images, epochs), seed=args.seed)
            began = time.perf_counter()
            fit = fit_spec(spec, subset, device, epochs=epochs,
                           seed=trial_seed(args.seed, number))
            seconds[text] += time.perf_counter() - began
            acc = float(fit.history[-1]["val_acc"]) if fit.history else chance
            scores[text].append(acc)
            row[text] = round(acc, 4)
        rows.append(row)
        print(row, flush=True)
    top = scores[args.fidelities[-1]]
    best = max(range(len(top)), key=lambda i: top[i])
    keep = max(1, len(top) // 3)
    summary = {}
    for text in args.fidelities:
        s = scores[text]
        promoted = sorted(range(len(s)), key=lambda i: -s[i])[:keep]
        summary[text] = {"spearman_with_top": round(spearman(s, top), 3),
                         "mean": round(statistics.mean(s), 4),
                         "near_chance": sum(x < chance + 0.02 for x in s),
                         "top_third_holds_the_best": best in promoted,
                         "seconds": round(seconds[text], 1)}
    emit({"dataset": args.dataset, "configs": len(nets), "device": device.torch_device,
          "torch_threads": torch.get_num_threads(), "best_at_top": rows[best]["net"],
          "fidelities": summary, "rows": rows}, args.json)


if __name__ == "__main__":
    main()
