"""Opening the study a search writes to: its storage (with the search's liveness rule), its
sampler and pruner by name, and a sampler seed per worker.

Any process that knows the storage URL and the study name can open the same study and run its
trials: the search settings travel inside the study (:mod:`automl_cnn.record`'s ``StudyInfo``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket

import optuna

from automl_cnn.config import SearchConfig
from automl_cnn.record import write_study_info
from automl_cnn.search_spaces import SearchSpace
from automl_cnn.storage import make_storage, study_exists
from automl_cnn.strategies import make_pruner, make_sampler

from .liveness import GRACE_FACTOR, RetryLostTrial

log = logging.getLogger(__name__)


def search_storage(url: str, *, heartbeat: int = 60) -> optuna.storages.BaseStorage:
    """The storage a search writes to: :func:`automl_cnn.storage.make_storage` with the
    search's liveness rule (on RDB storages, a trial silent for 3 × ``heartbeat`` seconds is
    failed and retried once by the next worker that starts a trial)."""
    return make_storage(url, heartbeat=heartbeat, grace=GRACE_FACTOR * heartbeat,
                        on_stale_trial=RetryLostTrial(max_retry=1))


def open_study(config: SearchConfig, space: SearchSpace, *, create: bool,
               storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    """Create (``create=True``) or load the study named by ``config``."""
    storage = storage or search_storage(config.storage_url, heartbeat=config.heartbeat)
    # A worker joining a study must not replay the creator's random draws.
    seed = config.seed if create else worker_seed(config.seed)
    sampler = make_sampler(config.sampler, seed=seed)
    pruner = make_pruner(config.pruner, max_epochs=space.max_epochs)
    name = config.resolved_study_name
    if create:
        study = optuna.create_study(storage=storage, study_name=name, sampler=sampler,
                                    pruner=pruner, directions=config.directions)
        write_study_info(study, config=config)
        return study
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)


def worker_seed(seed: int) -> int:
    """``seed`` mixed with this worker's host and PID (stable within the process)."""
    tag = f"{seed}:{socket.gethostname()}:{os.getpid()}".encode()
    return int.from_bytes(hashlib.sha256(tag).digest()[:4], "big")


__all__ = ["open_study", "search_storage", "study_exists", "worker_seed"]
