"""The tracking checks that must fail a search before anything trains, written without MLflow:
importing MLflow and opening its store cost seconds, so :func:`make_tracker` runs these
synchronously and leaves the rest to a background thread
(:class:`~automl_cnn.tracking.deferred.DeferredTracker`).

Example:
    >>> check_model_name("digits-cnn")
    >>> server_answers("sqlite:///mlflow.db")
    True
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from automl_cnn.errors import UserError
from automl_cnn.redact import scrub, without_password

SERVER_HINT = ("Start one with `automl-cnn ui` (or `mlflow server --host 127.0.0.1 --port 5000`) "
               "and pass --tracking-uri http://127.0.0.1:5000, leave --tracking-uri and "
               "MLFLOW_TRACKING_URI unset to use the local store sqlite:///mlflow.db, or pass "
               "--no-mlflow to search without tracking.")


def server_answers(uri: str) -> bool:
    """Whether the tracking store at ``uri`` answers now (see :func:`check_reachable`)."""
    try:
        check_reachable(uri)
    except UserError:
        return False
    return True


def check_reachable(uri: str) -> None:
    """A tracking server that does not answer fails the search before anything trains."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5).close()
    except urllib.error.HTTPError:
        return  # it answered (a proxy without /health, an auth wall): the client decides
    except (urllib.error.URLError, OSError, ValueError) as exc:
        why = scrub(str(getattr(exc, "reason", exc)), uri)
        raise UserError(f"cannot reach the MLflow tracking server {without_password(uri)} "
                        f"({why}); nothing was trained. {SERVER_HINT}") from None


def check_local_store(uri: str) -> None:
    """A sqlite store whose folder is missing or read-only fails here, before anything trains,
    as it did when the store was opened up front (MLflow creates the file, never its folder).
    Anything subtler (a corrupt file, a deleted experiment) is found when the store opens."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or ":memory:" in uri:
        return
    path = Path(uri[len(prefix):].split("?", 1)[0])
    folder = path.parent
    if not folder.is_dir():
        why = f"its folder {folder} does not exist"
    elif not os.access(folder, os.W_OK | os.X_OK):
        why = f"its folder {folder} is not writable"
    else:
        return
    raise UserError(f"cannot open the MLflow tracking store {without_password(uri)}: {why}; "
                    "nothing was trained. Create the folder (or make it writable), or pass "
                    "another --tracking-uri, or --no-mlflow to search without tracking.")


def check_model_name(name: str) -> None:
    """MLflow's registry refuses these names only when the first model is logged, minutes in:
    refuse them before the search starts."""
    if not name.strip() or any(c in name for c in "/:@"):
        raise UserError(f"--model-name {name!r} cannot name a registered MLflow model: it must "
                        "be non-empty and hold no '/', ':' or '@'. Pass e.g. --model-name "
                        "digits-cnn.")


__all__ = ["SERVER_HINT", "check_local_store", "check_model_name", "check_reachable",
           "server_answers"]
