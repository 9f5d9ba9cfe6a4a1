"""What MLflow tracking costs a search: the same small search with and without MLflow.

Runs the search twice with the same seed (so the same trials): once with ``--no-mlflow``,
once tracking into a fresh sqlite store, timing every tracker hook. Prints tracking's share of
trial time, split into the per-trial logging (runs, params, per-epoch metrics, layer plan,
artifacts) and the model logging done only when a trial is a new best.

    python benchmarks/bench_tracking.py                   # 2 × 10 digits trials, default space
    python benchmarks/bench_tracking.py --trials 20 --space tiny --repeat 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from typing import Any

import optuna

from automl_cnn.config import SearchConfig
from automl_cnn.record import TrialRecord
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


def search(config: SearchConfig, tracker: Any = None) -> tuple[float, list[float], list[float]]:
    """Wall time, each trial's duration and each trial's training time (``trainer.fit``)."""
    started = time.perf_counter()
    outcome = run_search(config, tracker=tracker, progress=False)
    wall = time.perf_counter() - started
    trials = [t for t in outcome.study.trials if t.duration]
    return (wall, [t.duration.total_seconds() for t in trials],
            [TrialRecord.from_trial(t).timings.train_seconds for t in trials])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--space", default="default")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--repeat", type=int, default=2,
                        help="pairs of searches, in turns (off/on, then on/off), so machine "
                             "noise hits both sides")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    walls: dict[str, list[float]] = {"off": [], "on": []}
    trials: dict[str, list[float]] = {"off": [], "on": []}
    fits: dict[str, list[float]] = {"off": [], "on": []}
    seconds: dict[str, list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        base = SearchConfig(trials=args.trials, space=args.space, dataset=args.dataset,
                            device="cpu", seed=0)
        for i in range(args.repeat):
            for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):
                config = base.replace(out=f"{tmp}/{mode}{i}", study_name=f"bench-{mode}{i}",
                                      mlflow=mode == "on",
                                      tracking_uri=f"sqlite:///{tmp}/mlflow.db")
                tracker = TimedTracker(config) if mode == "on" else None
                wall, durations, fit = search(config, tracker)
                walls[mode].append(wall)
                trials[mode] += durations
                fits[mode] += fit
                for hook, values in (tracker.seconds.items() if tracker else ()):
                    seconds[hook] += values
    report(args, seconds, walls, trials, fits)


def report(args: argparse.Namespace, sec: dict[str, list[float]],
           walls: dict[str, list[float]], trials: dict[str, list[float]],
           fits: dict[str, list[float]]) -> None:
    n = len(trials["on"])
    per_trial = sum(sum(sec[h]) for h in ("start_trial", "log_plan", "log_epoch", "end_trial"))
    models = sec["new_best"]
    trial_time = sum(trials["on"])
    wall_off, wall_on = statistics.median(walls["off"]), statistics.median(walls["on"])
    med_off, med_on = statistics.median(trials["off"]), statistics.median(trials["on"])
    print(f"\n{args.repeat} × {args.trials} {args.dataset} trials per side, space "
          f"{args.space!r}; tracked: {n} trials, {len(sec['log_epoch'])} epochs logged, "
          f"{len(models)} models logged (new bests)\n")
    rows = [
        ("search wall time, no MLflow (median)", f"{wall_off:.2f} s", "1.00×"),
        ("search wall time, MLflow sqlite (median)", f"{wall_on:.2f} s",
         f"{wall_on / wall_off:.2f}×"),
        ("median trial, no MLflow", f"{med_off * 1000:.0f} ms", "1.00×"),
        ("median trial, MLflow", f"{med_on * 1000:.0f} ms", f"{med_on / med_off:.2f}×"),
        ("all trials, no MLflow: total / in trainer.fit",
         f"{sum(trials['off']):.1f} / {sum(fits['off']):.1f} s", "same seed, same trials"),
        ("all trials, MLflow: total / in trainer.fit",
         f"{sum(trials['on']):.1f} / {sum(fits['on']):.1f} s",
         f"{sum(trials['on']) / sum(trials['off']):.2f}× / "
         f"{sum(fits['on']) / sum(fits['off']):.2f}×"),
        ("per-trial logging (run, params, plan, epochs, end)",
         f"{per_trial / n * 1000:.0f} ms/trial", f"{per_trial / trial_time:.1%} of trial time"),
        ("  of which log_epoch (sent with the trial's end, or >= 1 s apart)",
         f"{sum(sec['log_epoch']) / len(sec['log_epoch']) * 1000:.1f} ms/epoch", ""),
        ("model logging + registry, first in the process",
         f"{models[0] * 1000:.0f} ms" if models else "-", "torch.export warm-up, once"),
        ("model logging + registry, later new bests",
         f"{statistics.median(models[1:]) * 1000:.0f} ms" if len(models) > 1 else "-", ""),
        ("all tracking incl. models", f"{(per_trial + sum(models)) / n * 1000:.0f} ms/trial",
         f"{(per_trial + sum(models)) / trial_time:.1%} of trial time"),
        ("open store + parent run", f"{statistics.median(sec['open store']) * 1000:.0f} ms"
         f" + {statistics.median(sec['start_search']) * 1000:.0f} ms", "once per search"),
        ("end_search", f"{statistics.median(sec['end_search']) * 1000:.0f} ms", "once"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>16}  {note}")


if __name__ == "__main__":
    main()
