"""Searching for a target device: a latency limit of half the unconstrained best's latency.

For each dataset: an unconstrained search; the latency of its best architecture measured on the
target (this CPU, 1 thread, batch 1); then the same search with ``--max-latency-ms`` = half of
it. Reports the constrained best's accuracy and latency, the trainings the limit saved
(architectures over it are recorded and never trained), and the exported model's latency
measured again against what the search recorded (target: within 20 %).

    python benchmarks/bench_constraints.py [--trials 20] [--hard-trials 12] [--harder clutter:3000]

``clutter:3000`` (3,000 training images of the harder built-in set, fixed 6,000-image test split)
keeps the run short on a 2-core CPU; ``shapes`` stands in where clutter is not built in.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import optuna

from automl_cnn.api import open_source
from automl_cnn.arch import ArchSpec
from automl_cnn.checkpoint import load_checkpoint
from automl_cnn.config import SearchConfig
from automl_cnn.data.registry import DATASETS
from automl_cnn.export import export_model
from automl_cnn.latency import LatencyTarget, measure_latency, measure_spec_latency
from automl_cnn.record import Outcome, records
from automl_cnn.runners.search import run_search

TARGET = LatencyTarget("cpu", threads=1, batch=1)


def search(dataset: str, out: Path, trials: int, space: str, **limits: Any) -> Any:
    config = SearchConfig(trials=trials, dataset=dataset, space=space, seed=0, out=str(out),
                          mlflow=False, jobs=1, **limits)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return run_search(config, progress=False)


def latency_ms(model_or_spec: Any, shape: tuple[int, int, int], classes: int) -> float:
    """Median of three measurements (each the median of >= 50 timed forwards)."""
    if isinstance(model_or_spec, ArchSpec):
        runs = [measure_spec_latency(model_or_spec, shape, classes, TARGET) for _ in range(3)]
    else:
        runs = [measure_latency(model_or_spec, shape, TARGET) for _ in range(3)]
    return statistics.median(r.median_ms for r in runs)


def bench(dataset: str, trials: int, space: str, tmp: Path) -> dict[str, Any]:
    free = search(dataset, tmp / f"{dataset}-free", trials, space)
    spec, shape, classes = best_of(free.run_dir)
    limit = latency_ms(spec, shape, classes) / 2
    search(dataset, tmp / f"{dataset}-limited", trials, space, max_latency_ms=limit)
    return row(dataset, tmp / f"{dataset}-free", tmp / f"{dataset}-limited", tmp)


def best_of(run_dir: Path) -> tuple[ArchSpec, tuple[int, int, int], int]:
    """The best architecture of a finished search, its input shape and class count."""
    src = open_source(run_dir)
    return src.spec(0), src.input_shape, src.num_classes


def row(dataset: str, free_dir: Path, held_dir: Path, tmp: Path) -> dict[str, Any]:
    """The table row of two finished searches (also usable on the run directories alone)."""
    free_sum = json.loads((free_dir / "summary.json").read_text())
    held_sum = json.loads((held_dir / "summary.json").read_text())
    spec, shape, classes = best_of(free_dir)
    limit = json.loads((held_dir / "config.json").read_text())["max_latency_ms"]
    recs = records(open_source(held_dir).study)
    over = [r for r in recs if r.limit == "max_latency_ms"]
    trained = [r for r in recs if r.outcome in (Outcome.COMPLETE, Outcome.PRUNED)]
    mean_train = statistics.mean(r.timings.train_seconds for r in trained) if trained else 0.0
    top = held_sum["best"]
    folder = export_model(held_dir, tmp / f"{dataset}-export")
    model, _, _ = load_checkpoint(folder)
    return {
        "dataset": dataset, "trials": free_sum["trials"], "free_acc": free_sum["best"]["value"],
        "free_test": (free_sum.get("test") or {}).get("accuracy"),
        "free_ms": latency_ms(spec, shape, classes), "limit_ms": limit,
        "acc": top["value"] if top else None,
        "test": (held_sum.get("test") or {}).get("accuracy"),
        "ms": top["latency_ms"] if top else None, "over": len(over),
        "over_s": sum(r.timings.total_seconds for r in over), "mean_train_s": mean_train,
        "exported_ms": latency_ms(model, shape, classes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="trials per search on digits")
    parser.add_argument("--hard-trials", type=int, default=12,
                        help="trials per search on the harder set")
    harder = "clutter:3000" if "clutter" in DATASETS else "shapes"
    parser.add_argument("--harder", default=harder, help="the harder built-in set")
    parser.add_argument("--space", default="default", help="the search space of every search")
    parser.add_argument("--only", choices=("digits", "harder"), default=None,
                        help="run one of the two sets (e.g. both at once in two processes)")
    parser.add_argument("--from-runs", nargs=3, metavar=("DATASET", "FREE_DIR", "LIMITED_DIR"),
                        default=None, help="only measure two finished searches' run directories")
    args = parser.parse_args()
    if args.from_runs:
        name, free_dir, held_dir = args.from_runs
        with tempfile.TemporaryDirectory() as tmp:
            print_rows([row(name, Path(free_dir), Path(held_dir), Path(tmp))])
        return
    plan = [(d, n) for d, n, which in (("digits", args.trials, "digits"),
                                       (args.harder, args.hard_trials, "harder"))
            if args.only in (None, which)]
    with tempfile.TemporaryDirectory() as tmp:
        print_rows([bench(d, n, args.space, Path(tmp)) for d, n in plan])


def print_rows(rows: list[dict[str, Any]]) -> None:
    print("| dataset | trials | unconstrained best: val acc / test acc / latency | limit | "
          "constrained best: val acc / test acc / latency | over the limit (never trained) | "
          "exported model's latency vs recorded |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        ratio = r["exported_ms"] / r["ms"] if r["ms"] else float("nan")
        print(f"| {r['dataset']} | {r['trials']} | {r['free_acc']:.4f} / {r['free_test']:.4f} / "
              f"{r['free_ms']:.3f} ms | {r['limit_ms']:.3f} ms | {r['acc']:.4f} / "
              f"{r['test']:.4f} / {r['ms']:.3f} ms | {r['over']} trials, checked in "
              f"{r['over_s']:.1f} s (a trained trial averaged {r['mean_train_s']:.1f} s) | "
              f"{r['exported_ms']:.3f} ms ({ratio:.2f}×) |")


if __name__ == "__main__":
    main()
