"""What MLflow tracking costs a search: the same small search with and without MLflow.

Runs the search twice with the same seed (so the same trials): once with ``--no-mlflow``,
once tracking into a fresh sqlite store, timing every tracker hook. Prints tracking's share of
trial time, split into the per-trial logging (runs, params, per-epoch metrics, layer plan,
artifacts) and the model logging done only when a trial is a new best.

    python benchmarks/bench_tracking.py                      # 12 digits trials, default space
    python benchmarks/bench_tracking.py --trials 20 --space tiny
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import optuna

from automl_cnn.config import SearchConfig
from automl_cnn.runners.search import run_search
from automl_cnn.tracking.mlflow_tracker import MlflowTracker

HOOKS = ("start_search", "start_trial", "log_plan", "log_epoch", "end_trial", "new_best",
         "end_search")


class TimedTracker(MlflowTracker):
    """The real MLflow tracker, with the wall time of each hook call recorded."""

    def __init__(self, config: SearchConfig) -> None:
        started = time.perf_counter()
        super().__init__(config)
        self.seconds: dict[str, list[float]] = defaultdict(list)
        self.seconds["open store"].append(time.perf_counter() - started)


def _timed(name: str) -> Any:
    def hook(self: TimedTracker, *args: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
        getattr(MlflowTracker, name)(self, *args, **kwargs)
        self.seconds[name].append(time.perf_counter() - started)
    return hook


for _name in HOOKS:
    setattr(TimedTracker, _name, _timed(_name))


def search(config: SearchConfig, tracker: Any = None) -> tuple[float, list[float]]:
    started = time.perf_counter()
    outcome = run_search(config, tracker=tracker, progress=False)
    wall = time.perf_counter() - started
    trial_seconds = [t.duration.total_seconds() for t in outcome.study.trials if t.duration]
    return wall, trial_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--space", default="default")
    parser.add_argument("--dataset", default="digits")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        base = SearchConfig(trials=args.trials, space=args.space, dataset=args.dataset,
                            device="cpu", seed=0)
        wall_off, trials_off = search(base.replace(mlflow=False, out=f"{tmp}/off"))
        tracked = base.replace(out=f"{tmp}/on", tracking_uri=f"sqlite:///{tmp}/mlflow.db")
        tracker = TimedTracker(tracked)
        wall_on, trials_on = search(tracked, tracker)
        report(args, tracker.seconds, wall_off, trials_off, wall_on, trials_on, Path(tmp))


def report(args: argparse.Namespace, sec: dict[str, list[float]], wall_off: float,
           trials_off: list[float], wall_on: float, trials_on: list[float], _: Path) -> None:
    n = len(trials_on)
    per_trial = sum(sum(sec[h]) for h in ("start_trial", "log_plan", "log_epoch", "end_trial"))
    models = sec["new_best"]
    trial_time = sum(trials_on)
    epochs = len(sec["log_epoch"])
    print(f"\n{n} {args.dataset} trials, space {args.space!r}, {epochs} epochs logged, "
          f"{len(models)} new bests (models logged)\n")
    rows = [
        ("search wall time, no MLflow", f"{wall_off:.2f} s", "1.00×"),
        ("search wall time, MLflow (sqlite)", f"{wall_on:.2f} s", f"{wall_on / wall_off:.2f}×"),
        ("median trial, no MLflow", f"{statistics.median(trials_off) * 1000:.0f} ms", ""),
        ("median trial, MLflow", f"{statistics.median(trials_on) * 1000:.0f} ms",
         f"{statistics.median(trials_on) / statistics.median(trials_off):.2f}×"),
        ("per-trial logging (run, params, plan, epochs, end)",
         f"{per_trial / n * 1000:.0f} ms/trial", f"{per_trial / trial_time:.1%} of trial time"),
        ("  of which one log_batch per epoch",
         f"{statistics.median(sec['log_epoch']) * 1000:.1f} ms/epoch", ""),
        ("model logging + registry, first new best", f"{models[0] * 1000:.0f} ms" if models
         else "-", "torch.export warm-up, once per process"),
        ("model logging + registry, later new bests",
         f"{statistics.median(models[1:]) * 1000:.0f} ms" if len(models) > 1 else "-", ""),
        ("all tracking incl. models", f"{(per_trial + sum(models)) / n * 1000:.0f} ms/trial",
         f"{(per_trial + sum(models)) / trial_time:.1%} of trial time"),
        ("open store (new sqlite db) + parent run",
         f"{(sum(sec['open store']) + sum(sec['start_search'])) * 1000:.0f} ms", "once"),
        ("end_search", f"{sum(sec['end_search']) * 1000:.0f} ms", "once"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>14}  {note}")


if __name__ == "__main__":
    main()
