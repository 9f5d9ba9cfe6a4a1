"""Resolve a ``--dataset`` string to an :class:`ImageSplits`.

Builtin names (``digits``, ``shapes``, ``clutter`` or ``clutter:N``; see :data:`BUILTIN_ARGS`) or
``prefix:PATH`` for local files; see :data:`FORMATS`.
Nothing is downloaded. The validation split is carved from the training set with ``seed``;
the test split is the dataset's own where it has one. Folder sets bigger than the memory budget
stay on disk as :class:`ImageFiles` and stream (see :func:`automl_cnn.data.make_batches`).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from automl_cnn.data.builtin import load_digits, load_shapes
from automl_cnn.data.clutter import clutter_arg, load_clutter
from automl_cnn.data.cifar import read_cifar10, read_cifar100
from automl_cnn.data.folder import ImageFiles, load_or_stream, read_folder
from automl_cnn.data.formats import ArraySet, DatasetError, read_mnist, read_npz
from automl_cnn.data.splits import ImageSplits, check_measurable, make_splits

if TYPE_CHECKING:
    from automl_cnn.config import SearchConfig

log = logging.getLogger(__name__)

#: Builtin datasets by name. Each takes ``seed`` (the validation split's seed).
DATASETS: dict[str, Callable[..., ImageSplits]] = {
    "digits": load_digits,
    "shapes": load_shapes,
    "clutter": load_clutter,
}

#: Builtins that also take ``NAME:ARG``: name -> (ARG -> keyword arguments, what ARG is).
BUILTIN_ARGS: dict[str, tuple[Callable[[str], dict[str, Any]], str]] = {
    "clutter": (clutter_arg, "N training images"),
}

#: ``prefix:PATH`` datasets: prefix -> (reader of arrays, what PATH is).
FORMATS: dict[str, tuple[Callable[[Path], ArraySet], str]] = {
    "mnist": (read_mnist, "DIR with train-/t10k-images-idx3-ubyte[.gz] and -labels-idx1-ubyte"),
    "cifar10": (read_cifar10, "DIR with data_batch_1..5, test_batch, batches.meta"),
    "cifar100": (read_cifar100, "DIR with train, test, meta"),
    "npz": (read_npz, "FILE.npz with arrays x, y (optional x_test, y_test, classes)"),
}
FOLDER_FORMAT = "DIR with one subfolder of images per class (optional train/ and test/)"

#: Images above this many uint8 bytes stream from disk instead of living on the device.
DEFAULT_MEMORY_BUDGET = 2 * 1024**3
BUDGET_ENV = "AUTOML_CNN_MEMORY_BUDGET"
#: ``image_size`` limit for sets held in memory (arrays and built-ins): they are resized as one
#: uint8 tensor, and upsampling small images past this adds pixels, not information.
MAX_MEMORY_IMAGE_SIZE = 1024


def dataset_help() -> str:
    """Every accepted ``--dataset`` form, for error messages and ``--help``."""
    forms = [f"{p}:{what}" for p, (_, what) in FORMATS.items()] + [f"folder:{FOLDER_FORMAT}"]
    builtins = [f"{n}[:{BUILTIN_ARGS[n][1]}]" if n in BUILTIN_ARGS else n
                for n in sorted(DATASETS)]
    return f"builtin {', '.join(builtins)}; or local files: {'; '.join(forms)}"


def load_search_data(config: SearchConfig) -> ImageSplits:
    """The dataset a search's settings name (``--dataset``, ``--seed``, ``--image-size``,
    ``--train-subset``): what the search command and every worker process load."""
    return load_dataset(config.dataset, seed=config.seed, image_size=config.image_size,
                        train_subset=config.train_subset)


def load_dataset(name: str, *, seed: int = 0, image_size: int | None = None,
                 train_subset: int | None = None,
                 memory_budget: int | None = None) -> ImageSplits:
    """Load a dataset by its ``--dataset`` string.

    ``image_size`` resizes images to ``image_size``×``image_size``; ``train_subset`` keeps a
    class-balanced ``train_subset`` images of the training split (validation and test stay
    whole); ``memory_budget`` (bytes; default ``$AUTOML_CNN_MEMORY_BUDGET`` or 2 GiB) is the
    most a folder set may take as tensors before it streams from disk instead.

    Example:
        >>> load_dataset("digits").input_shape
        (1, 8, 8)
        >>> fashion = load_dataset("mnist:/data/fashion", train_subset=5000)  # doctest: +SKIP
        >>> fashion.sizes()["train"]  # doctest: +SKIP
        5000
    """
    for what, value in (("image_size", image_size), ("train_subset", train_subset)):
        if value is not None and value < 1:
            raise DatasetError(f"{what} must be a positive integer, but got {value}.")
    prefix, sep, where = name.partition(":")
    if not sep or prefix in BUILTIN_ARGS:
        if prefix not in DATASETS:
            raise DatasetError(f"unknown dataset {name!r}. Valid datasets: {dataset_help()}.")
        splits = DATASETS[prefix](seed=seed, **(BUILTIN_ARGS[prefix][0](where) if sep else {}))
    elif prefix == "folder":
        splits = replace(read_folder(_path(where, name), seed=seed, image_size=image_size),
                         name=name)
    elif prefix in FORMATS:
        arrays = FORMATS[prefix][0](_path(where, name))
        splits = make_splits(name, arrays.classes, arrays.x, arrays.y, seed=seed,
                             test=arrays.test, flip_ok=arrays.flip_ok)
    else:
        raise DatasetError(f"unknown dataset prefix {prefix!r} in {name!r}. Valid datasets: "
                           f"{dataset_help()}.")
    if train_subset is not None:
        splits = take_train_subset(splits, train_subset, seed=seed)
    check_measurable(splits)
    budget = _budget(memory_budget)
    if image_size is not None and not isinstance(splits.x_train, ImageFiles):
        _check_resize(splits, image_size, budget)
        splits = resize_splits(splits, image_size)
    return load_or_stream(splits, memory_budget=budget)


def _check_resize(splits: ImageSplits, size: int, budget: int) -> None:
    """An in-memory set is resized as one tensor: refuse sizes it cannot hold, before
    allocating anything."""
    images = sum(splits.sizes().values())
    need = images * splits.input_shape[0] * size * size
    if size > MAX_MEMORY_IMAGE_SIZE or need > budget:
        raise DatasetError(
            f"--image-size {size} is too big for {splits.name}: its {images:,} images "
            f"({splits.input_shape[1]}×{splits.input_shape[2]}) are resized in memory, which "
            f"would take {need / 2**30:,.1f} GiB (memory budget {budget / 2**30:.1f} GiB, "
            f"${BUDGET_ENV}) and at most {MAX_MEMORY_IMAGE_SIZE} px is allowed for such sets. "
            f"Ask for --image-size {MAX_MEMORY_IMAGE_SIZE} or less; leave it out to keep "
            "the dataset's own size.")


def _path(where: str, name: str) -> Path:
    if not where.strip():
        raise DatasetError(f"dataset {name!r} names no path; write it as prefix:PATH, e.g. "
                           f"{name.rstrip(':')}:/data/my-set.")
    return Path(where).expanduser()


def _budget(memory_budget: int | None) -> int:
    if memory_budget is not None:
        return memory_budget
    text = os.environ.get(BUDGET_ENV, "").strip()
    if not text:
        return DEFAULT_MEMORY_BUDGET
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?", text.lower())
    if not match:
        raise DatasetError(f"${BUDGET_ENV}={text!r} is not a size; write bytes or a size like "
                           "512M or 8G.")
    number, unit = match.groups()
    return int(float(number) * 1024 ** " kmgt".index(unit or " "))


def balanced_indices(y: np.ndarray, n: int, *, seed: int) -> np.ndarray:
    """Sorted indices of ``n`` labels spread as evenly over the classes as their sizes allow.

    Example:
        >>> balanced_indices(np.array([0, 0, 0, 0, 1, 1]), 4, seed=0).tolist()
        [0, 2, 4, 5]
    """
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(y == c) for c in np.unique(y)]
    quota = {}
    left = n
    for rank, c in enumerate(sorted(range(len(by_class)), key=lambda c: len(by_class[c]))):
        quota[c] = min(len(by_class[c]), left // (len(by_class) - rank))
        left -= quota[c]
    picked = [rng.permutation(idx)[:quota[c]] for c, idx in enumerate(by_class)]
    return np.sort(np.concatenate(picked))


def take_train_subset(splits: ImageSplits, n: int, *, seed: int) -> ImageSplits:
    """A class-balanced ``n`` of the training split, chosen with ``seed``: a cheap fidelity."""
    y = splits.y_train.numpy()
    if n >= len(y):
        log.info("train_subset=%d covers the whole training split (%d images)", n, len(y))
        return splits
    if n < splits.num_classes:
        raise DatasetError(f"train_subset={n} is smaller than the {splits.num_classes} classes; "
                           "ask for at least one image per class.")
    idx = balanced_indices(y, n, seed=seed)
    x = splits.x_train
    x_sub = x.take(idx) if isinstance(x, ImageFiles) else x[torch.from_numpy(idx)]
    return replace(splits, x_train=x_sub, y_train=splits.y_train[torch.from_numpy(idx)])


def resize_splits(splits: ImageSplits, size: int) -> ImageSplits:
    """Every image tensor resized to ``size``×``size`` (bilinear, antialiased)."""
    if splits.input_shape[1:] == (size, size):
        return splits
    return replace(splits, **{k: _resize(getattr(splits, k), size)
                              for k in ("x_train", "x_val", "x_test")})


def _resize(x: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    out = torch.empty((len(x), x.shape[1], size, size), dtype=torch.uint8)
    for i in range(0, len(x), chunk):
        part = F.interpolate(x[i:i + chunk].float(), size=(size, size), mode="bilinear",
                             antialias=True, align_corners=False)  # (B, C, size, size)
        out[i:i + chunk] = part.round_().clamp_(0, 255).to(torch.uint8)
    return out
