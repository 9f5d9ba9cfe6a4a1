"""Resolve a ``--dataset`` string to an :class:`ImageSplits`."""

from __future__ import annotations

from collections.abc import Callable

from automl_cnn.data.builtin import load_digits, load_shapes
from automl_cnn.data.splits import ImageSplits
from automl_cnn.errors import UserError


class DatasetError(UserError):
    """A dataset name, path or file that cannot be read."""


#: Builtin datasets by name. Each takes ``seed`` (the validation split's seed).
DATASETS: dict[str, Callable[..., ImageSplits]] = {
    "digits": load_digits,
    "shapes": load_shapes,
}


def load_dataset(name: str, *, seed: int = 0) -> ImageSplits:
    """Load a dataset by its ``--dataset`` name, e.g. ``"digits"`` or ``"shapes"``.

    Example:
        >>> load_dataset("digits").input_shape
        (1, 8, 8)
    """
    if name in DATASETS:
        return DATASETS[name](seed=seed)
    raise DatasetError(
        f"unknown dataset {name!r}. Valid datasets: {', '.join(sorted(DATASETS))}."
    )
