"""The default study store: Optuna's journal file, synced to disk once per trial event rather
than once per line.

Optuna's ``JournalFileBackend`` calls ``fsync`` after every line it appends. A trial of the
default space appends about 40 (one per suggested parameter, its record, its lease, its
state), so a trial paid ~40 disk syncs: 0.8 ms each on the development machine's disk when
quiet, ~7 ms under load — most of what the journal added to a trial at 1,000 trials
(``benchmarks/bench_storage.py``).

:class:`TrialSyncedJournal` appends every line exactly as Optuna does — under the journal's
lock, flushed to the operating system before the lock is released, so every other process
reads it at once and a killed worker loses nothing — but syncs to disk only on lines that
change a trial's state (started from the queue, finished) or the study itself. What a power
cut can lose is then the parameters and intermediate values of trials that were running, which
the next ``--resume`` fails and re-runs anyway.

Example:
    >>> import optuna
    >>> storage = optuna.storages.JournalStorage(TrialSyncedJournal("runs/demo/study.journal"))
"""

from __future__ import annotations

import json
from typing import Any

from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._storage import JournalOperation

#: Lines after which the file is synced to disk: the study's own changes and trial states.
SYNCED_OPERATIONS = frozenset(
    getattr(JournalOperation, name) for name in (
        "CREATE_STUDY", "DELETE_STUDY", "SET_STUDY_USER_ATTR", "SET_STUDY_SYSTEM_ATTR",
        "SET_TRIAL_STATE_VALUES", "DISCARD_TRIALS")
    if hasattr(JournalOperation, name))  # DISCARD_TRIALS is newer than some Optuna 4.x


class TrialSyncedJournal(JournalFileBackend):
    """A journal file synced to disk on trial and study events only (see the module)."""

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        lock, path = getattr(self, "_lock", None), getattr(self, "_file_path", None)
        if lock is None or path is None or any(
                log.get("op_code") in SYNCED_OPERATIONS for log in logs):
            super().append_logs(logs)  # Optuna's own write, with its fsync
            return
        from optuna.storages.journal._file import get_lock_file

        text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
        with get_lock_file(lock), open(path, "ab") as f:
            f.write(text.encode("utf-8"))  # closed (flushed to the OS) inside the lock


__all__ = ["SYNCED_OPERATIONS", "TrialSyncedJournal"]
