"""What a trial costs outside training, per storage, and how workers scale on PostgreSQL.

Part 1 — sampler + storage milliseconds per trial at 1,000 trials: TPE as the search sets it
up (multivariate, group, constant liar) sampling the real default space, a trivial objective,
through the same loop the search runs (``run_until_target``: storage lock, lost-trial check,
slot count, lease), on the journal file (the default), SQLite and PostgreSQL; in-memory
storage with plain ``study.optimize`` as the sampler-only floor.

Part 2 — trials per hour with 1, 2, 4 and 8 worker processes sharing one PostgreSQL study,
each trial a trivial objective that sleeps ``--trial-seconds`` (standing in for training on a
GPU: it does not load this machine's 2 CPU cores), so the ideal is linear.

    python benchmarks/bench_storage.py [--trials 1000] [--window 100] [--scale-trials 120]
        [--trial-seconds 0.5] [--postgres postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import optuna

from automl_cnn.runners.slots import run_until_target, settle_target
from automl_cnn.runners.storage_lock import storage_lock
from automl_cnn.runners.study import make_sampler, make_storage
from automl_cnn.search_spaces import load_space

SPACE = load_space("default")


def objective(trial: optuna.Trial, sleep: float = 0.0) -> float:
    SPACE.sample(trial, flip_ok=True)
    if sleep:
        time.sleep(sleep)
    return random.Random(trial.number).random()


class Clock:
    """Per-trial wall times from the trial-end callback."""

    def __init__(self) -> None:
        self.ends: list[float] = [time.perf_counter()]

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.ends.append(time.perf_counter())

    def ms(self, first: int, last: int) -> float:
        return 1000 * (self.ends[last] - self.ends[first]) / (last - first)


def per_trial(url: str | None, trials: int, window: int) -> tuple[float, float]:
    """(mean ms/trial over all trials, ms/trial over the last ``window``)."""
    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = f"bench-{uuid.uuid4().hex[:8]}"
    sampler = make_sampler("tpe", seed=0, multi_objective=False)
    storage = make_storage(url) if url else None
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                direction="maximize")
    clock = Clock()
    if url is None:
        study.optimize(objective, n_trials=trials, callbacks=[clock])
    else:
        target = settle_target(study, trials, mode="create")
        run_until_target(study, objective, lock=lambda: storage_lock(url, storage),
                         target=target, interval=60, callbacks=[clock])
        if not url.startswith("journal:"):
            optuna.delete_study(study_name=name, storage=storage)
    return clock.ms(0, trials), clock.ms(trials - window, trials)


def _worker(url: str, name: str, target: int, start_at: float, sleep: float) -> None:
    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = make_storage(url)
    study = optuna.load_study(study_name=name, storage=storage,
                              sampler=make_sampler("tpe", seed=random.randrange(2**31),
                                                   multi_objective=False))
    time.sleep(max(0.0, start_at - time.time()))
    run_until_target(study, lambda t: objective(t, sleep), target=target, interval=60,
                     lock=lambda: storage_lock(url, storage, name=name))


def trials_per_hour(url: str, workers: int, trials: int, sleep: float) -> float:
    name = f"scale-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(study_name=name, storage=make_storage(url), direction="maximize")
    settle_target(study, trials, mode="create")
    start_at = time.time() + 8  # every worker imported and connected before the clock starts
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(url, name, trials, start_at, sleep))
             for _ in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) == trials, f"{len(done)} trials finished, expected {trials}"
    wall = max(t.datetime_complete for t in done).timestamp() - start_at
    optuna.delete_study(study_name=name, storage=make_storage(url))
    return 3600 * trials / wall


def storage_table(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        urls = {"in-memory": None, "journal": f"journal:{Path(tmp) / 'study.journal'}",
                "sqlite": f"sqlite:///{Path(tmp) / 'study.db'}", "postgresql": args.postgres}
        print(f"| storage ({args.dir or tempfile.gettempdir()}) | ms/trial, mean of "
              f"{args.trials} | ms/trial, trials {args.trials - args.window}-{args.trials} |"
              "\n| --- | --- | --- |")
        for label, url in urls.items():
            if args.only and label not in args.only:
                continue
            mean, last = per_trial(url, args.trials, args.window)
            print(f"| {label} | {mean:.1f} | {last:.1f} |", flush=True)


def scale_table(args: argparse.Namespace) -> None:
    print(f"| workers | trials/hour ({args.scale_trials} trials of {args.trial_seconds}s) "
          "| vs 1 worker | ideal |\n| --- | --- | --- | --- |")
    base = None
    for n in args.workers:
        rate = trials_per_hour(args.postgres, n, args.scale_trials, args.trial_seconds)
        base = base or rate
        print(f"| {n} | {rate:,.0f} | {rate / base:.2f}× | {n}× |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--only", nargs="*", default=[],
                        help="in-memory journal sqlite postgresql (default: all)")
    parser.add_argument("--dir", default=None, help="folder for the journal and sqlite files")
    parser.add_argument("--scale-trials", type=int, default=120)
    parser.add_argument("--trial-seconds", type=float, default=0.5)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2, 4, 8])
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    if args.trials:
        storage_table(args)
    if args.workers:
        scale_table(args)


if __name__ == "__main__":
    main()
