"""Run trials until the *study* holds its target number, however many workers share it.

The target lives in the study (``automl_cnn.target_trials``): a new study's is ``--trials``,
``--resume`` raises it by ``--trials``, ``--join`` keeps it (every worker of a cluster runs the
same command). A trial *uses a slot* when it finished — complete, pruned or infeasible — or
failed with an error of its own; a trial lost with its worker (``kill -9``, preemption, Ctrl-C)
does not, because its parameters are re-enqueued once (:mod:`.liveness`) and the retry takes
the slot. So a study asked for N trials ends with exactly N finished ones whatever was killed
(as long as no trial fails by itself).

Each worker takes a trial under the storage's lock (:mod:`.storage_lock`): it fails the trials
of dead workers, counts used and running slots, and only asks Optuna for a trial while
``used + running < target``; the lock is released as soon as the new trial holds its lease,
so training never runs under it. When every remaining slot is held by a running trial, the
worker waits (polling) rather than exits: if one of those workers dies, its retry needs one.

Example:
    >>> run_until_target(study, runner, lock=lambda: storage_lock(url, storage), target=100,
    ...                  interval=60)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl_cnn.record import TARGET_ATTR, read_study_info, write_study_info

from .liveness import LOST_ATTR, LeaseKeeper, RetryLostTrial, reap_lost_trials

log = logging.getLogger(__name__)
#: How often a worker with nothing to take looks again (seconds).
POLL_SECONDS = 1.0


@dataclass(frozen=True)
class SlotCounts:
    """``used``: trials that count towards the target; ``running``: trials that may."""

    used: int
    running: int


def count_slots(trials: Sequence[FrozenTrial]) -> SlotCounts:
    retried = RetryLostTrial.retried_numbers(list(trials))
    used = running = 0
    for trial in trials:
        if trial.state == TrialState.RUNNING:
            running += 1
        elif trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            used += 1
        elif trial.state == TrialState.FAIL and trial.number not in retried:
            used += 1  # its own error (or a second loss): counted, so a search always ends
    return SlotCounts(used, running)


def read_target(study: optuna.Study) -> int | None:
    return read_study_info(study).target


def settle_target(study: optuna.Study, trials: int | None, *, mode: str) -> int | None:
    """The study's target after this worker's ``mode`` (create | resume | join); call it
    under the storage lock. None: no trial cap (``--timeout`` alone)."""
    stored = read_target(study)
    if trials is None:
        return stored if mode == "join" else None
    if mode == "resume":
        target = count_slots(study.get_trials(deepcopy=False)).used + trials
    elif mode == "join" and stored is not None:
        target = max(stored, trials)
    else:
        target = trials
    if target != stored:
        write_study_info(study, target=target)
    return target


class _LeasedObjective:
    """The objective under a lease; lets go of the storage lock once the lease is written."""

    def __init__(self, objective: Callable[[optuna.Trial], Any], gate: ExitStack,
                 interval: float) -> None:
        self.objective, self.gate, self.interval = objective, gate, interval
        self.trial: optuna.Trial | None = None

    def __call__(self, trial: optuna.Trial) -> Any:
        self.trial = trial
        with LeaseKeeper(trial.study._storage, trial._trial_id, trial.number,
                         interval=self.interval):
            self.gate.close()
            return self.objective(trial)


def run_until_target(study: optuna.Study, objective: Callable[[optuna.Trial], Any], *,
                     lock: Callable[[], AbstractContextManager[Any]], target: int | None,
                     interval: float, timeout: float | None = None,
                     stop: Callable[[], bool] = lambda: False,
                     callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
                     catch: tuple[type[Exception], ...] = (),
                     on_lost: Callable[[set[int]], None] = lambda _: None) -> None:
    """Take and run trials until ``target`` slots are used, ``timeout`` seconds passed, or
    ``stop()``; ``on_lost`` gets the numbers of failed trials each time that set grows (the
    tracker closes their runs)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    retry, failed_seen, waiting_logged = RetryLostTrial(), set[int](), False
    while not stop() and (deadline is None or time.monotonic() < deadline):
        with ExitStack() as gate:
            gate.enter_context(lock())
            reap_lost_trials(study, interval=interval, retry=retry)
            trials = study.get_trials(deepcopy=False)
            counts = count_slots(trials)
            failed = {t.number for t in trials if t.state == TrialState.FAIL}
            if failed - failed_seen:
                gate.close()
                on_lost(failed)
                failed_seen = failed
                continue
            if target is not None and counts.used >= target:
                return
            if target is not None and counts.used + counts.running >= target:
                gate.close()
                if not waiting_logged:
                    log.info("all %d slots taken; waiting for %d running trial(s)", target,
                             counts.running)
                    waiting_logged = True
                time.sleep(POLL_SECONDS)
                continue
            leased = _LeasedObjective(objective, gate, interval)
            try:
                study.optimize(leased, n_trials=1, callbacks=list(callbacks), catch=catch,
                               gc_after_trial=False)
            except Exception as exc:
                if _lost_meanwhile(study, leased.trial):
                    # Another worker judged us dead (a lease renewal came too late) and has
                    # already failed and re-enqueued the trial: our result cannot be told.
                    log.warning("trial %s was taken over by another worker (%s); going on",
                                leased.trial.number if leased.trial else "?",
                                type(exc).__name__)
                    continue
                _retry_own(study, leased.trial, retry)
                raise
            except BaseException:
                _retry_own(study, leased.trial, retry)
                raise


def _lost_meanwhile(study: optuna.Study, trial: optuna.Trial | None) -> bool:
    if trial is None:
        return False
    try:
        frozen = study._storage.get_trial(trial._trial_id)
    except Exception:
        return False
    if frozen.state != TrialState.FAIL:
        return False
    # failed by our reaper (LOST_ATTR), or by Optuna's heartbeat check on RDB (a retry exists)
    return LOST_ATTR in frozen.system_attrs or frozen.number in RetryLostTrial.retried_numbers(
        study.get_trials(deepcopy=False))


def _retry_own(study: optuna.Study, trial: optuna.Trial | None, retry: RetryLostTrial) -> None:
    """This worker stops mid-trial (Ctrl-C, SIGTERM from a scheduler): the trial's parameters
    go back in the queue once, like a lost worker's."""
    if trial is None:
        return
    try:
        frozen = study._storage.get_trial(trial._trial_id)
        if frozen.state == TrialState.FAIL:
            retry(study, frozen)
    except Exception as exc:  # the store may be what failed; the stop must still go through
        log.warning("could not re-enqueue interrupted trial %d: %s", trial.number, exc)


__all__ = ["POLL_SECONDS", "SlotCounts", "TARGET_ATTR", "count_slots", "read_target",
           "run_until_target", "settle_target"]
