"""MLflow plumbing for the tracker: reaching the store, bounded HTTP retries, MLflow's global
tracking URI scoped to one block, and values cut to MLflow's limits.

Example:
    >>> clip("x" * 10, 4)
    'xxx…'
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import mlflow
import torch
from mlflow.tracking._tracking_service import utils as tracking_utils

from automl_cnn.tracking.checks import (  # noqa: F401 - kept importable from here
    SERVER_HINT, check_reachable, server_answers)


def import_pytorch_flavor() -> None:
    """``mlflow.pytorch`` calls ``logging.basicConfig`` on import, which would route every
    library's INFO lines (Lightning's banners) to the terminal: import it, keep root logging."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    import mlflow.pytorch  # noqa: F401

    root.handlers[:] = handlers
    root.setLevel(level)


import_pytorch_flavor()  # before anything else imports it

#: Set around our MLflow calls only, and only where the user has not set them. MLflow's HTTP
#: client retries a dead server for minutes by default; during a search a lost server should
#: cost seconds, once. And a server URI makes MLflow print a "View run" line per run ended,
#: which would scroll the progress bar away (the CLI names the store once instead).
QUICK_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
              "MLFLOW_HTTP_REQUEST_TIMEOUT": "15", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


@contextmanager
def global_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's global tracking URI set to ``uri`` for a block, then put back exactly,
    ``$MLFLOW_TRACKING_URI`` included (``mlflow.set_tracking_uri`` writes and deletes it)."""
    saved, saved_env = tracking_utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved)
        if saved_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env


#: MLflow loggers whose INFO lines describe its own housekeeping ("Creating initial MLflow
#: database tables...", "Updating database tables" on a fresh sqlite store): kept off the
#: terminal the CLI keeps clean; their warnings and errors still show.
HOUSEKEEPING_LOGGERS = ("mlflow.store", "alembic")


@contextmanager
def quick_http() -> Iterator[None]:
    """Around every MLflow call of the tracker: quick HTTP retries, no per-run URL prints,
    and no housekeeping INFO lines (see :data:`QUICK_HTTP`, :data:`HOUSEKEEPING_LOGGERS`)."""
    added = {k: v for k, v in QUICK_HTTP.items() if k not in os.environ}
    os.environ.update(added)
    loggers = [logging.getLogger(name) for name in HOUSEKEEPING_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        if lg.getEffectiveLevel() < logging.WARNING:
            lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


#: The experiment tag MLflow 3 reads for what an experiment holds: model training, not GenAI
#: traces. (MLflow 3.17's UI goes by its view switch instead; ``automl-cnn ui`` links to the
#: model-training view.)
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def dataset_input(description: dict[str, Any]) -> Any:
    """An MLflow dataset input naming the searched data, so the runs table's Dataset column
    shows it: name, a digest of its shape, classes and split sizes, and where it came from (a
    local path, or the built-in set), tagged with the ``training`` context. Metadata only:
    no pixels are uploaded.

    ``description`` is the study's dataset description (name, classes, input_shape, sizes).
    """
    import hashlib
    import json

    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    name = str(description.get("name", "dataset"))
    digest = hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode())
    dataset = MetaDataset(source=dataset_source(name), name=name,
                          digest=digest.hexdigest()[:8])
    return DatasetInput(dataset._to_mlflow_entity(),
                        tags=[InputTag("mlflow.data.context", "training")])


def dataset_source(name: str) -> Any:
    """Where the data came from, as MLflow records it: the local path of ``KIND:PATH``
    (MLflow's local-file source; ``FileSystemDatasetSource`` is abstract, and calling it
    failed the parent run of every search of a user's own data), or the built-in set by name
    (``digits``, ``clutter:6000``: a count, not a path)."""
    import warnings
    from pathlib import Path

    from mlflow.data.code_dataset_source import CodeDatasetSource

    from automl_cnn.data.registry import BUILTIN_ARGS

    kind, sep, where = name.partition(":")
    if sep and where and kind not in BUILTIN_ARGS:
        from mlflow.data.dataset_source_registry import resolve_dataset_source

        try:
            with warnings.catch_warnings():  # "can be interpreted in multiple ways": all local
                warnings.simplefilter("ignore")
                return resolve_dataset_source(str(Path(where).absolute()))
        except Exception:  # noqa: BLE001 - an unusual path is still named by the tag below
            pass
    return CodeDatasetSource(tags={"automl_cnn.dataset": name})


def clip(value: Any, limit: int) -> str:
    """MLflow refuses params and tags over its length limits: keep the head, mark the cut."""
    text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def pip_requirements() -> list[str]:
    """Stated, not inferred: inferring them loads the model in a subprocess (seconds)."""
    return [f"torch=={torch.__version__.split('+')[0]}"]


__all__ = ["EXPERIMENT_KIND", "HOUSEKEEPING_LOGGERS", "QUICK_HTTP", "SERVER_HINT",
           "check_reachable", "clip", "dataset_input", "global_tracking_uri",
           "import_pytorch_flavor", "pip_requirements", "quick_http"]
