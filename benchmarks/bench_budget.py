"""Does the search earn its compute? Test accuracy at equal wall budgets (issue 10).

Arms, each a real command timed from outside (imports, data, search, final fit, report):

- (a) ``ladder``: ``automl-cnn search --timeout B`` with defaults: fidelity ladder when the
  budget needs one, final fit of the winner on train + validation;
- (b) ``flat``: the search as it was: every trial on the whole training split (``--ladder off``),
  TPE + median pruning, no final fit (the search's own weights are tested);
- (c) ``baseline``: one enqueued baseline alone, trained on train + validation with its
  epochs stretched to fill the budget (each baseline of the space, run separately; the table
  reports the better one per seed, an oracle pick that favours this arm), tested averaging
  each image with its mirror image where flips keep labels, as (a)'s model is (the score
  without flips is recorded too, ``test_plain``);
- (C) ``long``: the first baseline alone as in (c), but without the final fit's epoch cap
  (8x its recipe's epochs): a person who trains the one recipe for the whole budget, however
  long that is;
- (d) ``random``: random search without pruning, no ladder, no final fit;
- (a/3): the ladder arm at a third of the budget, to compare with (d) at the full budget;
- a search arm with ``#P`` appended (``a#32``, ``d#bf16``) runs with ``--precision P``
  (the others train in ``--precision auto``: bf16 on a CPU with native bf16).

Defaults are the README's table (about 2 hours on a 2-core CPU with bf16): clutter:3600 at 6
and 12 minutes, budgets that buy the 20 trainings a search needs there (3 seeds for a and c,
the first baseline only, 1 for b, d and a/3), and digits at 1 minute (all three baselines).
Shrink with flags:

    python benchmarks/bench_budget.py --dataset clutter --budgets 120 --seeds-ac 2 \\
        --digits-budget 60 --out /tmp/bench-budget

Every run's wall time is printed against its budget. The test split is read once per run, by
the command itself; nothing here is tuned on it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

ARMS = ("a", "b", "c", "C", "d", "a/3")
BASELINES = 3  # the default space's enqueued baselines


def search_cmd(arm: str, dataset: str, budget: float, seed: int, out: Path) -> list[str]:
    arm, _, precision = arm.partition("#")
    cmd = [sys.executable, "-m", "automl_cnn", "search", "--dataset", dataset, "--seed",
           str(seed), "--timeout", f"{budget:g}", "--out", str(out), "--no-progress",
           "--no-mlflow", "--jobs", "1"]
    if "@" in arm:  # "a@0.5": the ladder arm with --final-share 0.5
        cmd += ["--final-share", arm.split("@")[1]]
    if arm == "b":
        cmd += ["--ladder", "off", "--no-final-fit"]
    if arm == "d":
        cmd += ["--ladder", "off", "--no-final-fit", "--sampler", "random", "--pruner", "none"]
    return cmd + (["--precision", precision] if precision else [])


def run(cmd: list[str], out: Path) -> tuple[float, int]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    (out / "stdout.txt").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr[-20000:])
    return wall, proc.returncode


def search_row(arm: str, dataset: str, budget: float, seed: int, root: Path) -> dict[str, Any]:
    name = arm.replace('/', '_').replace('@', '_').replace('#', '_')
    out = root / f"{dataset}-{budget:g}-{name}-s{seed}"
    wall, code = run(search_cmd(arm, dataset, budget, seed, out), out)
    summary = json.loads((out / "summary.json").read_text()) if code == 0 else {}
    test = (summary.get("test") or {}).get("accuracy")
    ladder = summary.get("ladder") or {}
    return {"arm": arm, "dataset": dataset, "budget": budget, "seed": seed,
            "wall": round(wall, 1), "code": code, "test": test,
            "precision": summary.get("precision"),
            "val": (summary.get("best") or {}).get("value"),
            "trials": summary.get("trials"), "counts": summary.get("counts"),
            "rungs": summary.get("rungs"), "ladder": [
                (r["images"], r["epochs"]) for r in ladder.get("rungs", [])],
            "phases": summary.get("phases"),
            "final_epochs": (summary.get("final") or {}).get("epochs"),
            # the search's own weights (before the final fit or further trainings), tested
            "search_test": (summary.get("search_test") or {}).get("accuracy"),
            "trainings": (summary.get("final") or {}).get("trainings"),
            "member_epochs": (summary.get("final") or {}).get("member_epochs")}


def baseline_rows(dataset: str, budget: float, seed: int, root: Path,
                  only: int | None = None, uncapped: bool = False) -> list[dict[str, Any]]:
    from automl_cnn.search_spaces import load_space

    rows = []
    for i, b in enumerate(load_space("default").baselines):
        if only is not None and i != only:
            continue
        out = root / f"{dataset}-{budget:g}-{'C' if uncapped else 'c'}{i}-s{seed}"
        cmd = [sys.executable, __file__, "--baseline-run", str(i), "--dataset", dataset,
               "--seed", str(seed), "--budget", f"{budget:g}", "--out", str(out)]
        cmd += ["--uncapped"] if uncapped else []
        wall, code = run(cmd, out)
        result = json.loads((out / "result.json").read_text()) if code == 0 else {}
        rows.append({"arm": "C" if uncapped else "c", "baseline": b.name, "dataset": dataset,
                     "budget": budget,
                     "seed": seed, "wall": round(wall, 1), "code": code,
                     "test": result.get("test"), "test_plain": result.get("test_plain"),
                     "final_epochs": result.get("epochs")})
    return rows


def baseline_alone(index: int, dataset: str, seed: int, budget: float, out: Path,
                   uncapped: bool = False) -> None:
    """(c): baseline ``index`` trained on train + validation for as many epochs as fit (at
    most the final fit's cap; ``uncapped``, arm C: no cap)."""
    started = time.monotonic()
    import optuna

    import automl_cnn.final_fit as final_fit

    if uncapped:
        final_fit.MAX_EPOCH_FACTOR = final_fit.MAX_EPOCHS = 10**6
    from automl_cnn.budget import Budget
    from automl_cnn.data import load_dataset
    from automl_cnn.device import resolve_device
    from automl_cnn.final_fit import fit_final, plan_final_fit
    from automl_cnn.network import FlipAveraged
    from automl_cnn.runners.climb import measure_speed
    from automl_cnn.search_spaces import load_space
    from automl_cnn.training import evaluate, silence_lightning

    silence_lightning()
    budget_ = Budget.start(budget, final_share=0.99, started=started)
    device = resolve_device("auto")
    data = load_dataset(dataset, seed=seed).to(device.torch_device)
    space = load_space("default")
    spec = space.sample(optuna.trial.FixedTrial(space.baselines[index].params),
                        flip_ok=data.flip_ok)
    ips = measure_speed(spec, data, device)
    images = len(data.y_train) + len(data.y_val)
    plan = plan_final_fit(seconds=budget_.final_left(), epoch_seconds=images / ips,
                          spec_epochs=spec.train.epochs)
    # Epochs planned from the timed speed, as a person would; the command's clocked schedule
    # is its own (clocked=False keeps this arm what it was).
    fit = fit_final(spec, data, device, seed=seed, plan=plan, max_seconds=budget_.final_left(),
                    clocked=False)
    model = fit.model.to(data.x_test.device)
    plain = evaluate(model, data.x_test, data.y_test)["accuracy"]
    # Where flips keep labels, the person averages flips at test time too, as the command's
    # model does (--tta auto): the strongest simple alternative, scored like (a).
    flipped = (evaluate(FlipAveraged(OrderedDict(model.named_children())).eval(),
                        data.x_test, data.y_test)["accuracy"] if data.flip_ok else plain)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps({"test": flipped, "test_plain": plain,
                                                 "epochs": len(fit.history),
                                                 "planned": plan.epochs}))


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| set | budget | arm | runs | test acc (mean ± std) | wall s (each) | notes |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    keys = sorted({(r["dataset"], r["budget"], r["arm"]) for r in rows},
                  key=lambda k: (k[0], k[1], k[2]))
    for dataset, budget, arm in keys:
        mine = [r for r in rows if (r["dataset"], r["budget"], r["arm"]) == (dataset, budget, arm)]
        if arm in ("c", "C"):  # the better baseline per seed (an oracle pick, favouring this arm)
            by_seed: dict[int, list[dict[str, Any]]] = {}
            for r in mine:
                by_seed.setdefault(r["seed"], []).append(r)
            tests = [max((r["test"] or 0.0) for r in rs) for rs in by_seed.values()]
            note = "; ".join(f"{r['baseline']} s{r['seed']}: {r['test'] or 0:.4f} "
                             f"(no flips {r.get('test_plain') or 0:.4f}; "
                             f"{r['final_epochs']} ep)" for r in mine)
        else:
            tests = [r["test"] or 0.0 for r in mine]
            note = "; ".join(f"s{r['seed']}: {r['trials']} trials, rungs {r['rungs']}"
                             + (f", final {r['final_epochs']} ep" if r.get("final_epochs")
                                else "")
                             + (f", {r['trainings']} trainings {r['member_epochs']} ep, the "
                                f"first alone {r['search_test']:.4f}"
                                if r.get("trainings") and r.get("search_test") is not None
                                else "") for r in mine)
        std = statistics.stdev(tests) if len(tests) > 1 else 0.0
        walls = ", ".join(f"{r['wall']:.0f}" for r in mine)
        lines.append(f"| {dataset} | {budget:g}s | {arm} | {len(tests)} | "
                     f"{statistics.fmean(tests):.4f} ± {std:.4f} | {walls} | {note} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="clutter:3600")
    p.add_argument("--budgets", default="360,720", help="seconds, comma-separated")
    p.add_argument("--seeds-ac", type=int, default=3, help="seeds for arms a and c")
    p.add_argument("--seeds-bd", type=int, default=1, help="seeds for arms b and d")
    p.add_argument("--c-other-seeds", type=int, default=None,
                   help="seeds for (c)'s other baselines (default: none on --dataset, "
                        "--seeds-ac on digits); the first baseline, the one a budget too "
                        "short to search trains, always gets --seeds-ac")
    p.add_argument("--seed-from", type=int, default=0,
                   help="skip the seeds below this one (re-run one seed of a table)")
    p.add_argument("--digits-budget", type=float, default=60, help="0: skip digits")
    p.add_argument("--arms", default="a,c,b,d,a/3")
    p.add_argument("--out", default="bench-budget")
    p.add_argument("--parallel", type=int, default=1,
                   help="runs at once (a GPU machine: several processes share the GPU; every "
                        "arm shares it alike). 1 on a CPU, where runs would fight for cores")
    p.add_argument("--baseline-run", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--budget", type=float, default=0, help=argparse.SUPPRESS)
    p.add_argument("--uncapped", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.baseline_run is not None:
        return baseline_alone(args.baseline_run, args.dataset, args.seed, args.budget,
                              Path(args.out), uncapped=args.uncapped)
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    arms = args.arms.split(",")
    plan = [(args.dataset, float(b)) for b in args.budgets.split(",")]
    if args.digits_budget:
        plan.append(("digits", args.digits_budget))
    rows: list[dict[str, Any]] = []
    log = root / "runs.jsonl"
    jobs = []
    for dataset, budget in plan:
        for seed in range(args.seed_from, max(args.seeds_ac, args.seeds_bd)):  # interleaved
            for arm in arms:
                seeds = (args.seeds_ac if arm[0] in ("a", "c", "C")
                         and not arm.startswith("a/3")
                         else args.seeds_bd)
                if seed < seeds:  # (c): one job per baseline
                    others = (args.c_other_seeds if args.c_other_seeds is not None
                              else args.seeds_ac if dataset == "digits" else 0)
                    jobs += [(arm, dataset, budget, seed, i)
                             for i in (range(BASELINES) if arm == "c" else
                                       [0] if arm == "C" else [None])
                             if i is None or i == 0 or seed < others]

    def one(job: tuple[str, str, float, int, int | None]) -> list[dict[str, Any]]:
        arm, dataset, budget, seed, index = job
        new = (baseline_rows(dataset, budget, seed, root, index, uncapped=arm == "C")
               if arm in ("c", "C") else
               [search_row(arm, dataset, budget / 3 if arm.startswith("a/3") else budget, seed,
                           root)])
        for r in new:
            r["budget"] = budget  # a/3 is listed under the budget it is compared at
            print(json.dumps(r), flush=True)
            with log.open("a") as f:
                f.write(json.dumps(r) + "\n")
        return new

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        for new in pool.map(one, jobs):
            rows += new
    print(table(rows))
    print(f"\nmachine: {os.cpu_count()} CPUs; load average at the end "
          f"{os.getloadavg()[0]:.1f} (shared with other work)")


if __name__ == "__main__":
    main()
