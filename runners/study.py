"""Optuna plumbing: samplers, pruners and storages by name, and opening a study.

Any process that knows the storage URL and the study name can open the same study and run its
trials: the search settings travel inside the study (``study.user_attrs``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import warnings
from pathlib import Path
from typing import Any

import optuna

from automl_cnn.config import SearchConfig
from automl_cnn.errors import UserError
from automl_cnn.search_spaces import SearchSpace

from .liveness import GRACE_FACTOR, RetryLostTrial

log = logging.getLogger(__name__)
CONFIG_ATTR = "automl_cnn.config"
DATASET_ATTR = "automl_cnn.dataset"


def make_sampler(name: str, *, seed: int, multi_objective: bool) -> optuna.samplers.BaseSampler:
    """TPE is the default: it handles the conditional, mixed categorical/numeric space natively
    (``group=True`` models each depth's parameters together) and learns from few trials."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, n_startup_trials=10,
            constant_liar=True,  # workers sharing a study don't all try the same point
        )
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=10)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True)
    if name == "nsgaii":
        return optuna.samplers.NSGAIISampler(seed=seed)
    raise UserError(f"unknown sampler {name!r}.")


def make_pruner(name: str, *, space: SearchSpace) -> optuna.pruners.BasePruner:
    """Pruners step in epochs; the space's epoch budget is Hyperband's maximum resource."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if name == "percentile":
        return optuna.pruners.PercentilePruner(25.0, n_startup_trials=5, n_warmup_steps=1)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=space.max_epochs,
                                              reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise UserError(f"unknown pruner {name!r}.")


def make_storage(url: str, *, heartbeat: int = 60) -> optuna.storages.BaseStorage:
    """``journal:PATH`` (a journal file, the default inside a run directory) or any RDB URL
    Optuna takes (``sqlite:///study.db``, ``postgresql://user@host/db``, ``mysql+pymysql://``).

    RDB storages get Optuna's heartbeat every ``heartbeat`` seconds: a trial silent for
    3 × that is failed and retried once by the next worker that starts a trial."""
    if url.startswith("journal:"):
        path = Path(url[len("journal:"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise UserError(f"--storage {url!r} is not a storage URL. Use journal:PATH, "
                        "sqlite:///PATH, or postgresql://user@host:port/db.")
    try:
        # The heartbeat lets another process mark a crashed worker's trial as failed.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=heartbeat, grace_period=GRACE_FACTOR * heartbeat,
                heartbeat_stale_trial_callback=RetryLostTrial(max_retry=1),
                engine_kwargs=_engine_kwargs(url))
    except ImportError as exc:
        raise UserError(f"cannot open the study storage {url!r}: its database driver is not "
                        f"installed ({exc.__cause__ or exc}). For PostgreSQL run "
                        "pip install 'automl-cnn[postgres]'; for MySQL, pip install pymysql."
                        ) from None
    except Exception as exc:  # sqlalchemy raises many kinds; all mean "cannot use this URL"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot open the study storage {url!r}: {first}. Check that the "
                        "database server is running and the URL (user, host, port, database) "
                        "is right.") from None


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith(("postgresql", "mysql")):
        return {"pool_pre_ping": True, "connect_args": {"connect_timeout": 5}}
    return {}


def study_exists(storage: optuna.storages.BaseStorage, name: str) -> bool:
    return any(s.study_name == name for s in storage.get_all_studies())


def open_study(config: SearchConfig, space: SearchSpace, *, create: bool,
               storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    """Create (``create=True``) or load the study named by ``config``."""
    storage = storage or make_storage(config.storage_url, heartbeat=config.heartbeat)
    # A worker joining a study must not replay the creator's random draws.
    seed = config.seed if create else worker_seed(config.seed)
    sampler = make_sampler(config.sampler, seed=seed, multi_objective=config.multi_objective)
    pruner = make_pruner(config.pruner, space=space)
    name = config.resolved_study_name
    if create:
        study = optuna.create_study(storage=storage, study_name=name, sampler=sampler,
                                    pruner=pruner, directions=config.directions)
        study.set_user_attr(CONFIG_ATTR, config.to_dict())
        return study
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)


def worker_seed(seed: int) -> int:
    """``seed`` mixed with this worker's host and PID (stable within the process)."""
    tag = f"{seed}:{socket.gethostname()}:{os.getpid()}".encode()
    return int.from_bytes(hashlib.sha256(tag).digest()[:4], "big")


def load_config(study: optuna.Study) -> SearchConfig:
    """The settings a study was created with (for workers and dashboards)."""
    raw = study.user_attrs.get(CONFIG_ATTR)
    if raw is None:
        raise UserError(f"study {study.study_name!r} was not created by automl-cnn "
                        "(it has no search settings).")
    return SearchConfig.from_dict(raw)
