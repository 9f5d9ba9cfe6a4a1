"""Training precision on this machine's CPU: fp32 against bf16 mixed precision, on the real path.

For each baseline of the default space, :func:`automl_cnn.training.fit_spec` trains the
training split for ``--epochs`` epochs in fp32 (``--precision 32``) and in bf16 autocast
(``--precision bf16``), on each seed, and the result is scored on the test split in fp32 (as
the command scores the model it hands over). Runs alternate (fp32, bf16, fp32, ...) so a busy
moment hits both sides alike. Reported per baseline: training images/s (median over seeds), the
bf16/fp32 speed ratio, and test accuracy per seed. With ``--sampled N`` it also trains N
architectures drawn at random from the default space (seeded; the ones whose shapes fit) for
one epoch in each precision, for the speed ratio over the varied networks a search trains.

    python benchmarks/bench_precision.py [--dataset clutter:6000] [--epochs 12] \\
        [--seeds 0 1] [--baselines 0 1 2] [--sampled 12] [--json precision.json]

What it decided: ``--precision auto`` trains in bf16 on a CPU with native bf16 (AVX-512 BF16
or AMX; ``automl_cnn.device.cpu_has_bf16``), fp32 elsewhere.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import optuna
import torch

from automl_cnn.data import load_dataset
from automl_cnn.device import cpu_has_bf16, resolve_device
from automl_cnn.evaluation import evaluate
from automl_cnn.search_spaces import load_space
from automl_cnn.training import fit_spec, silence_lightning
from emit import emit  # benchmarks/ is on the path when run as a script


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="clutter:6000")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--baselines", type=int, nargs="*", default=None,
                   help="indices into the default space's baselines (default: all; a bare "
                        "--baselines: none)")
    p.add_argument("--sampled", type=int, default=0,
                   help="also time N random draws of the space, one epoch each")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    silence_lightning()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = load_dataset(args.dataset, seed=0)
    space = load_space("default")
    chosen = args.baselines if args.baselines is not None else range(len(space.baselines))
    specs = [(space.baselines[i].name, space.sample(
        optuna.trial.FixedTrial(space.baselines[i].params), flip_ok=data.flip_ok))
        for i in chosen]
    devices = {"32": resolve_device("cpu", "32"), "bf16": resolve_device("cpu", "bf16")}
    result: dict[str, Any] = {"dataset": args.dataset, "epochs": args.epochs,
                              "threads": torch.get_num_threads(), "cpu_has_bf16": cpu_has_bf16(),
                              "baselines": []}
    for name, spec in specs:
        rows: dict[str, list[dict[str, float]]] = {k: [] for k in devices}
        for seed in args.seeds:
            for key, device in devices.items():
                fit = fit_spec(spec, data, device, seed=seed, epochs=args.epochs, val_split=None)
                test = evaluate(fit.model, data.x_test, data.y_test)["accuracy"]
                rows[key].append({"seed": seed, "images_per_s": args.epochs * len(data.y_train)
                                  / fit.seconds, "test": test})
                print(name, key, {k: round(v, 4) for k, v in rows[key][-1].items()}, flush=True)
        speed = {k: statistics.median(r["images_per_s"] for r in v) for k, v in rows.items()}
        result["baselines"].append({
            "baseline": name,
            **{f"{k}_images_per_s": round(v) for k, v in speed.items()},
            "bf16_speed_ratio": round(speed["bf16"] / speed["32"], 2),
            **{f"{k}_test": [round(r["test"], 4) for r in v] for k, v in rows.items()},
            **{f"{k}_test_mean": round(statistics.mean(r["test"] for r in v), 4)
               for k, v in rows.items()}})
        print(result["baselines"][-1], flush=True)
    if args.sampled:
        result["sampled"] = sampled_speeds(space, data, devices, args.sampled)
        ratios = [r["bf16_speed_ratio"] for r in result["sampled"]]
        result["sampled_ratio_median"] = statistics.median(ratios)
        result["sampled_ratio_min"] = min(ratios)
    emit(result, args.json)


def sampled_speeds(space: Any, data: Any, devices: dict[str, Any], count: int) -> list[dict]:
    """Images/s of one epoch in each precision for ``count`` random draws of ``space``."""
    from automl_cnn.model import build_model

    sampler = optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    rows: list[dict[str, Any]] = []
    while len(rows) < count:
        trial = study.ask()
        spec = space.sample(trial, flip_ok=data.flip_ok)
        study.tell(trial, 0.0)
        try:
            build_model(spec, data.input_shape, data.num_classes)
        except Exception:  # a shape that does not fit: the search records it untrained
            continue
        speed = {}
        for key, device in devices.items():
            fit = fit_spec(spec, data, device, seed=0, epochs=1, val_split=None)
            speed[key] = len(data.y_train) / fit.seconds
        rows.append({"depth": len(spec.blocks),
                     "activations": sorted({b.activation for b in spec.blocks}),
                     "pools": sorted({b.pool for b in spec.blocks}),
                     **{f"{k}_images_per_s": round(v) for k, v in speed.items()},
                     "bf16_speed_ratio": round(speed["bf16"] / speed["32"], 2)})
        print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    main()
