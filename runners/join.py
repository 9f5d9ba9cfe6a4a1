"""What makes two workers' scores comparable, and the one refusal when they are not.

A study stores its *identity* when it is created: the dataset as loaded (name, classes, input
shape, split sizes — not its path, so machines may mount it in different places), the search
space by the SHA-256 of the YAML actually loaded (not its name), the objectives, the image size
and the train subset. A worker that joins with any of these different would mix incomparable
scores into the study; it is refused with one paragraph naming every difference.

Example:
    >>> check_join(stored, study_identity(config, space, data), study="digits-default",
    ...            where="postgresql://db/optuna")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from automl_cnn.config import SearchConfig
from automl_cnn.data import ImageSplits
from automl_cnn.errors import UserError
from automl_cnn.record import IDENTITY_ATTR
from automl_cnn.search_spaces import SearchSpace

#: identity key -> how the refusal names it
LABELS = {"dataset": "dataset", "classes": "classes", "input_shape": "input shape",
          "split_sizes": "split sizes", "space_sha256": "space (SHA-256 of the YAML)",
          "objectives": "objectives", "image_size": "--image-size",
          "train_subset": "--train-subset"}


def space_sha256(space: SearchSpace) -> str:
    return hashlib.sha256(Path(space.path).read_bytes()).hexdigest()


def study_identity(config: SearchConfig, space: SearchSpace, data: ImageSplits) -> dict[str, Any]:
    """The settings every worker of one study must share (JSON-ready)."""
    return {
        "dataset": data.name, "classes": list(data.classes),
        "input_shape": list(data.input_shape), "split_sizes": data.sizes(),
        "space": config.space, "space_sha256": space_sha256(space),
        "objectives": list(config.objectives), "image_size": config.image_size,
        "train_subset": config.train_subset,
    }


def differences(stored: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """"name: stored X, given Y" for every identity key that differs (keys a study made by an
    older version did not store are not compared)."""
    out = []
    for key, label in LABELS.items():
        if key not in stored or _norm(stored[key]) == _norm(given.get(key)):
            continue
        old, new = stored[key], given.get(key)
        if key == "space_sha256":
            old = f"{stored.get('space')!r} sha256 {str(old)[:12]}"
            new = f"{given.get('space')!r} sha256 {str(new)[:12]}"
        elif key == "classes":
            old, new = _classes(old), _classes(new)
        out.append(f"{label}: stored {old}, given {new}")
    return out


def check_join(stored: dict[str, Any] | None, given: dict[str, Any], *, study: str,
               where: str) -> None:
    """Refuse (:class:`UserError`, exit 2) a worker whose identity differs from the study's."""
    if not stored:
        return
    diffs = differences(stored, given)
    if diffs:
        raise UserError(
            f"this worker cannot join study {study!r} in {where}: its settings differ from "
            f"the ones the study was created with, so its scores would not be comparable ("
            f"{'; '.join(diffs)}). Run the worker with the study's settings (the same "
            "--dataset contents, --space file, --objective, --image-size and --train-subset), "
            "or pass another --study-name to start a separate study; nothing was changed.")


def _norm(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _norm(v) for k, v in value.items()}
    return value


def _classes(value: Any) -> str:
    names = list(value or [])
    shown = ", ".join(map(str, names[:6])) + (", …" if len(names) > 6 else "")
    return f"{len(names)} [{shown}]"


__all__ = ["IDENTITY_ATTR", "check_join", "differences", "space_sha256", "study_identity"]
