"""One lock per study storage, shared by every worker on every machine that uses it.

Two short critical sections need it: creating a study that many workers may create at once
(``--join``), and taking a trial while counting the trials already taken (so a study asked for
N trials ends with exactly N). Both last milliseconds; training never runs under the lock.

- ``journal:PATH`` and ``sqlite:///PATH``: ``flock`` on ``PATH.automl.lock`` beside the file
  (the storage is a shared file already; the kernel drops the lock of a killed process);
- ``postgresql://``: a session advisory lock (``pg_advisory_lock``), dropped with the
  connection when a worker dies;
- ``mysql://``: ``GET_LOCK``; any other storage: no lock (a study may end a trial or two over
  its target when workers race).

Example:
    >>> with storage_lock("journal:runs/x/study.journal", storage):
    ...     pass
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna

log = logging.getLogger(__name__)
LOCK_SUFFIX = ".automl.lock"


def _key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextmanager
def _sql_lock(engine: Any, lock_sql: str, unlock_sql: str, key: Any) -> Iterator[None]:
    from sqlalchemy import text

    with engine.connect() as conn:
        conn.execute(text(lock_sql), {"k": key})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text(unlock_sql), {"k": key})
            conn.commit()


def storage_lock(url: str, storage: optuna.storages.BaseStorage | None = None,
                 *, name: str = "automl-cnn") -> Any:
    """A context manager that holds the storage's lock (see the module docstring)."""
    if url.startswith("journal:"):
        return _file_lock(Path(url[len("journal:"):] + LOCK_SUFFIX))
    if url.startswith("sqlite:///"):
        return _file_lock(Path(url[len("sqlite:///"):] + LOCK_SUFFIX))
    # Studies wrap an RDBStorage in Optuna's cache; the engine is the wrapped storage's.
    engine = getattr(storage, "engine", None) or getattr(getattr(storage, "_backend", None),
                                                         "engine", None)
    if engine is not None and url.startswith("postgresql"):
        return _sql_lock(engine, "SELECT pg_advisory_lock(:k)", "SELECT pg_advisory_unlock(:k)",
                         _key(name))
    if engine is not None and url.startswith("mysql"):
        return _sql_lock(engine, "SELECT GET_LOCK(:k, -1)", "SELECT RELEASE_LOCK(:k)",
                         f"automl-cnn-{_key(name)}")
    log.info("no cross-process lock for storage %s; workers may overshoot the trial target", url)
    return _no_lock()


@contextmanager
def _no_lock() -> Iterator[None]:
    yield


__all__ = ["LOCK_SUFFIX", "storage_lock"]
