"""Optuna storages by URL: the one place a study's storage is opened, for the search (writing)
and for every reader (``best``, ``export``, ``dashboard``, the Python API).

Example:
    >>> storage = make_storage("journal:runs/demo/study.journal")
    >>> study_exists(storage, "digits-tiny")
    False
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl_cnn.errors import UserError
from automl_cnn.redact import scrub, without_password
from automl_cnn.rundir import JOURNAL_PREFIX

if TYPE_CHECKING:
    import optuna


def make_storage(url: str, *, heartbeat: int = 60, grace: int | None = None,
                 on_stale_trial: Callable[..., None] | None = None
                 ) -> optuna.storages.BaseStorage:
    """``journal:PATH`` (a journal file, the default inside a run directory) or any RDB URL
    Optuna takes (``sqlite:///study.db``, ``postgresql://user@host/db``, ``mysql+pymysql://``).

    RDB storages get Optuna's heartbeat every ``heartbeat`` seconds: a trial silent for
    ``grace`` seconds (default 3 × heartbeat) is failed, and ``on_stale_trial`` called on it
    (the search passes one that retries it once)."""
    import optuna

    if url.startswith(JOURNAL_PREFIX):
        path = Path(url[len(JOURNAL_PREFIX):])
        path.parent.mkdir(parents=True, exist_ok=True)
        from automl_cnn.journal import TrialSyncedJournal

        return optuna.storages.JournalStorage(TrialSyncedJournal(str(path)))
    shown = without_password(url)  # every message below: never the password
    if "://" not in url:
        raise UserError(f"--storage {shown!r} is not a storage URL. Use journal:PATH, "
                        "sqlite:///PATH, or postgresql://user@host:port/db.")
    try:
        # The heartbeat lets another process mark a crashed worker's trial as failed.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=heartbeat, grace_period=grace or 3 * heartbeat,
                heartbeat_stale_trial_callback=on_stale_trial,
                engine_kwargs=_engine_kwargs(url))
    except ImportError as exc:
        raise UserError(f"cannot open the study storage {shown!r}: its database driver is "
                        f"not installed ({exc.__cause__ or exc}). For PostgreSQL run "
                        "pip install 'automl-cnn[postgres]'; for MySQL, pip install pymysql."
                        ) from None
    except Exception as exc:  # sqlalchemy raises many kinds; all mean "cannot use this URL"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot open the study storage {shown!r}: {scrub(first, url)}. "
                        "Check that the database server is running and the URL (user, host, "
                        "port, database) is right.") from None


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith(("postgresql", "mysql")):
        return {"pool_pre_ping": True, "connect_args": {"connect_timeout": 5}}
    return {}


def study_exists(storage: optuna.storages.BaseStorage, name: str) -> bool:
    return any(s.study_name == name for s in storage.get_all_studies())


__all__ = ["make_storage", "study_exists"]
