"""Leases: which worker runs which trial, and whether it is still alive.

Optuna's heartbeat exists only for RDB storages; the journal file (our default) has none, so a
worker killed with ``kill -9`` (OOM killer, preemption, a scheduler's time limit) would leave
its trial RUNNING forever. Every running trial therefore holds a *lease* — host, PID and an
expiry time — in its trial system attributes, renewed by a daemon thread while it runs.

Why system attributes and not files beside the journal: they live in the study, so they work
for every storage (a journal anywhere, SQLite, PostgreSQL), reach workers on other machines
exactly when the study does, arrive with the trial list a worker reads anyway (no extra I/O to
check them), and a write is atomic in every backend. One renewal is one small journal record
per ``interval`` seconds per running trial.

Any worker (at its start, between trials, while it waits for the last trials) and any
``--resume`` calls :func:`reap_lost_trials`: a trial whose lease names *this host* and a PID
that is gone is failed at once; any other trial is failed when its lease expired
(``3 × interval`` after the last renewal). A failed-as-lost trial is re-enqueued once
(:class:`RetryLostTrial`, Optuna's ``RetryHeartbeatStaleTrialCallback`` semantics:
``failed_trial``, ``retry_history``, at most one retry).

Example:
    >>> with LeaseKeeper(study._storage, trial._trial_id, trial.number, interval=60):
    ...     train()  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
import os
import socket
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from automl_cnn.record import BASELINE_ATTR, mark_interrupted

log = logging.getLogger(__name__)

LEASE_ATTR = "automl_cnn.lease"
LOST_ATTR = "automl_cnn.lost"
#: A lease lasts this many renewal intervals: two renewals may be late before it expires.
GRACE_FACTOR = 3
#: User attributes a retry keeps (set when the trial was enqueued); the rest described the
#: lost attempt.
KEPT_USER_ATTRS = (BASELINE_ATTR,)


@dataclass(frozen=True)
class Lease:
    """Worker ``host``/``pid`` runs trial ``trial`` and promises a renewal before ``expires``
    (seconds since the epoch)."""

    host: str
    pid: int
    trial: int
    expires: float

    @classmethod
    def mine(cls, trial: int, interval: float) -> Lease:
        return cls(socket.gethostname(), os.getpid(), trial, time.time() + GRACE_FACTOR * interval)

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any], number: int) -> Lease | None:
        raw = attrs.get(LEASE_ATTR)
        try:
            lease = cls(str(raw["host"]), int(raw["pid"]), int(raw["trial"]),
                        float(raw["expires"]))
        except (TypeError, KeyError, ValueError):
            return None
        return lease if lease.trial == number else None  # a retry's copy is not its own


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs on this host (a zombie — killed, not yet reaped — is dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def why_lost(lease: Lease | None, trial: FrozenTrial, *, now: float, host: str,
             grace: float) -> str | None:
    """The reason ``trial`` (RUNNING) has no live worker, or None while it may still have one."""
    if lease is None:
        # Killed between taking the trial and writing its first lease (a few ms), or run by a
        # worker that writes none (an older version): judge by its start time.
        started = trial.datetime_start.timestamp() if trial.datetime_start else now
        if now - started > grace:
            return f"no worker has held it since it started {now - started:.0f}s ago"
        return None
    who = f"worker {lease.host}:{lease.pid}"
    if lease.host == host and lease.pid != os.getpid() and not process_alive(lease.pid):
        return f"{who} died (its process is gone)"
    if now > lease.expires:
        return f"{who} sent no sign of life for {now - lease.expires + grace:.0f}s"
    return None


class RetryLostTrial(RetryHeartbeatStaleTrialCallback):
    """Re-enqueue a lost trial's parameters once (``max_retry=1``), without the lost attempt's
    lease and results. Also used as the RDB heartbeat's stale-trial callback, so both ways of
    finding a dead worker retry alike."""

    def __init__(self, max_retry: int = 1) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(max_retry=max_retry)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        clean = FrozenTrial(
            number=trial.number, state=trial.state, value=None, values=trial.values,
            datetime_start=trial.datetime_start, datetime_complete=trial.datetime_complete,
            params=trial.params, distributions=trial.distributions,
            user_attrs={k: v for k, v in trial.user_attrs.items() if k in KEPT_USER_ATTRS},
            # a deep copy: Optuna's callback appends to retry_history in place, which would
            # otherwise change the storage's cached copy of the lost trial
            # ... without its constraints, which the retry sets again (Optuna keeps the
            # first value set and warns)
            system_attrs=copy.deepcopy({k: v for k, v in trial.system_attrs.items()
                                        if k not in (LEASE_ATTR, LOST_ATTR)
                                        and not k.startswith("constraints:")}),
            intermediate_values={}, trial_id=trial._trial_id)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__call__(study, clean)

    @staticmethod
    def retried_numbers(trials: list[FrozenTrial]) -> set[int]:
        """Numbers of trials that a later trial retries (their attempt does not count)."""
        return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def reap_lost_trials(study: optuna.Study, *, interval: float,
                     retry: RetryLostTrial | None = None) -> list[int]:
    """Fail every RUNNING trial of ``study`` whose worker is dead, re-enqueue each once;
    returns the numbers failed here (another worker may have failed some first)."""
    storage, now, host = study._storage, time.time(), socket.gethostname()
    retry = retry or RetryLostTrial()
    lost: list[int] = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        lease = Lease.from_attrs(trial.system_attrs, trial.number)
        reason = why_lost(lease, trial, now=now, host=host, grace=GRACE_FACTOR * interval)
        if reason is None:
            continue
        try:
            storage.set_trial_system_attr(trial._trial_id, LOST_ATTR, reason)
            mark_interrupted(storage, trial._trial_id, f"lost: {reason}")
            if not storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue  # it finished, or another worker failed it first
        log.warning("trial %d lost: %s; failed, and retried once", trial.number, reason)
        retry(study, storage.get_trial(trial._trial_id))
        lost.append(trial.number)
    return lost


class LeaseKeeper:
    """Holds the lease on one trial while the ``with`` block runs (daemon renewal thread)."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int, number: int, *,
                 interval: float) -> None:
        self.storage, self.trial_id, self.number = storage, trial_id, number
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_until_stopped, daemon=True,
                                        name=f"lease-trial-{number}")

    def __enter__(self) -> LeaseKeeper:
        self._write()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # No join: waiting for the thread to wake costs milliseconds a trial on a loaded
        # machine, and a renewal that lands after the trial finished is refused by the storage.
        self._stop.set()

    def _write(self) -> bool:
        lease = Lease.mine(self.number, self.interval)
        try:
            self.storage.set_trial_system_attr(self.trial_id, LEASE_ATTR, asdict(lease))
        except UpdateFinishedTrialError:
            return False  # finished (or failed as lost by a worker that gave up on us)
        return True

    def _renew_until_stopped(self) -> None:
        warned = False
        while not self._stop.wait(self.interval):
            try:
                if not self._write():
                    return
            except Exception as exc:  # a storage hiccup: try again next interval
                if not warned:
                    log.warning("could not renew the lease of trial %d (%s: %s); retrying",
                                self.number, type(exc).__name__, exc)
                    warned = True


__all__ = ["GRACE_FACTOR", "LEASE_ATTR", "LOST_ATTR", "Lease", "LeaseKeeper", "RetryLostTrial",
           "process_alive", "reap_lost_trials", "why_lost"]
