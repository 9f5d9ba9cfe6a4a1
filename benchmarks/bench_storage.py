"""What a trial costs outside training, per storage, and how workers scale on PostgreSQL.

Part 1 — sampler + storage milliseconds per trial at 1,000 trials: every configuration starts
from the same 1,000 finished trials of the real default space, then runs ``--measured`` more
with TPE as the search sets it up (multivariate, group, constant liar) and a trivial objective,
in turns of 5 trials so that all see the same load on this shared machine. Configurations: the
in-memory storage (the sampler alone), the journal file with plain ``study.optimize``, and the
journal file (the default), SQLite and PostgreSQL through the search's own loop
(``run_until_target``: storage lock, lost-trial check, slot count, lease).

Part 2 — trials per hour with 1, 2, 4 and 8 worker processes sharing one PostgreSQL study,
each trial a trivial objective that sleeps ``--trial-seconds`` (standing in for training on a
GPU: it does not load this machine's 2 CPU cores), so the ideal is linear.

    python benchmarks/bench_storage.py [--trials 1000] [--measured 50] [--dir /tmp]
        [--only in-memory journal sqlite postgresql] [--workers 1 2 4 8] [--scale-trials 120]
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
from typing import Any

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


def history(trials: int) -> list[optuna.trial.FrozenTrial]:
    """``trials`` finished trials of the real space (random draws: what TPE fits on at that
    size costs the same whatever drew it), to start every storage at the same history."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0),
                                direction="maximize")
    study.optimize(objective, n_trials=trials)
    return study.get_trials()


def open_bench_study(url: str | None, past: list[optuna.trial.FrozenTrial]) -> Any:
    storage = make_storage(url) if url else None
    study = optuna.create_study(study_name=f"bench-{uuid.uuid4().hex[:8]}", storage=storage,
                                sampler=make_sampler("tpe", seed=0),
                                direction="maximize")
    study.add_trials(past)
    return study, storage


def step(study: optuna.Study, storage: Any, url: str | None, loop: bool, n: int) -> float:
    """Run ``n`` more trials; returns the seconds they took."""
    started = time.perf_counter()
    if loop:
        target = len(study.get_trials(deepcopy=False)) + n
        run_until_target(study, objective, lock=lambda: storage_lock(url, storage),
                         target=target, interval=60)
    else:
        study.optimize(objective, n_trials=n)
    return time.perf_counter() - started


def per_trial(urls: dict[str, tuple[str | None, bool]], at: int, measured: int,
              chunk: int = 5) -> dict[str, float]:
    """ms per trial for trials ``at``..``at + measured`` of each configuration, run in turns
    (``chunk`` trials each) so that every one sees the same machine load."""
    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    past = history(at)
    studies = {label: (*open_bench_study(url, past), url, loop)
               for label, (url, loop) in urls.items()}
    spent = dict.fromkeys(urls, 0.0)
    for _ in range(measured // chunk):
        for label, (study, storage, url, loop) in studies.items():
            spent[label] += step(study, storage, url, loop, chunk)
    for label, (study, storage, url, _) in studies.items():
        if url and not url.startswith("journal:"):
            optuna.delete_study(study_name=study.study_name, storage=storage)
    return {label: 1000 * seconds / measured for label, seconds in spent.items()}


def _worker(url: str, name: str, target: int, start_at: float, sleep: float) -> None:
    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = make_storage(url)
    study = optuna.load_study(study_name=name, storage=storage,
                              sampler=make_sampler("tpe", seed=random.randrange(2**31)))
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
        urls = {
            "in-memory, study.optimize (the sampler alone)": (None, False),
            "journal, study.optimize": (f"journal:{Path(tmp) / 'plain.journal'}", False),
            "journal (default), the search's loop": (f"journal:{Path(tmp) / 'loop.journal'}",
                                                     True),
            "sqlite, the search's loop": (f"sqlite:///{Path(tmp) / 'study.db'}", True),
            "postgresql, the search's loop": (args.postgres, True),
        }
        urls = {k: v for k, v in urls.items() if not args.only or k.split(",")[0].split()[0]
                in args.only}
        print(f"| storage ({args.dir or tempfile.gettempdir()}) | ms/trial, trials "
              f"{args.trials}-{args.trials + args.measured} |\n| --- | --- |")
        for label, ms in per_trial(urls, args.trials, args.measured).items():
            print(f"| {label} | {ms:.1f} |", flush=True)


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
    parser.add_argument("--measured", type=int, default=50,
                        help="trials timed after the first --trials (in turns of 5)")
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
