"""CIFAR-10 / CIFAR-100 "python version" batches, unpickled safely.

The batches are pickled dicts of bytes, lists and one numpy array. :class:`SafeUnpickler`
resolves only the handful of globals numpy needs to rebuild an array (and ``_codecs.encode``
restricted to latin-1, which Python 3 uses to pickle bytes at protocol 2); any other global,
such as ``os.system``, is refused, so a tampered file cannot run code.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np

from automl_cnn.data.formats import ArraySet, DatasetError, check_counts, index_labels, require_path

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")


def _latin1_encode(text: str, encoding: str = "utf-8", *_: Any) -> bytes:
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


_probe = np.zeros(1, dtype=np.uint8)
#: (module, name) -> object. numpy moved ``numpy.core`` to ``numpy._core`` in 2.0; files
#: written by either name (the real CIFAR files use the old one) resolve to the live function.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **{(f"numpy.{core}.multiarray", "_reconstruct"): _probe.__reduce__()[0]
       for core in ("core", "_core")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): _probe.__reduce_ex__(5)[0]
       for core in ("core", "_core")},
    ("_codecs", "encode"): _latin1_encode,
}


class SafeUnpickler(pickle.Unpickler):
    """Unpickles plain data and numpy arrays; refuses every other class or function."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[module, name]
        except KeyError:
            raise pickle.UnpicklingError(
                f"global {module}.{name} is not allowed in a dataset file") from None


def safe_unpickle(path: Path) -> Any:
    """The object pickled in ``path``, or a DatasetError; bytes keys stay bytes (Python 2)."""
    try:
        with path.open("rb") as f:
            return SafeUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, OverflowError, MemoryError) as exc:
        raise DatasetError(f"{path}: not a readable CIFAR python batch ({type(exc).__name__}: "
                           f"{exc}). Use the 'python version' archive of CIFAR, unpacked, and "
                           "download it again if it is damaged.") from None


def _text_keys(obj: Any, path: Path) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: holds a {type(obj).__name__}, but a CIFAR batch is a dict.")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _read_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _text_keys(safe_unpickle(path), path)
    missing = [k for k in ("data", label_key) if k not in batch]
    if missing:
        raise DatasetError(f"{path}: no {' or '.join(missing)!r} entry (found: "
                           f"{', '.join(sorted(batch))}). Is this the right CIFAR variant?")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), got {got}.")
    labels = np.asarray(batch[label_key])
    check_counts(data, labels, images=f"{path} ['data']", labels=f"{path} [{label_key!r}]")
    # Each row holds the red, then green, then blue plane of a 32×32 image, row-major.
    return data.reshape(-1, 3, 32, 32), labels


def _names(path: Path, key: str) -> tuple[str, ...] | None:
    if not path.is_file():
        return None
    meta = _text_keys(safe_unpickle(path), path)
    if key not in meta:
        raise DatasetError(f"{path}: no {key!r} entry (found: {', '.join(sorted(meta))}).")
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in meta[key])


def _locate(folder: Path, inner: str, marker: str) -> Path:
    """``folder`` itself, or its ``cifar-10-batches-py``-style subfolder from the archive."""
    require_path(folder, folder=True, what=inner)
    if not (folder / marker).exists() and (folder / inner / marker).exists():
        return folder / inner
    return folder


def read_cifar10(folder: Path) -> ArraySet:
    """``data_batch_1`` .. ``data_batch_5`` (train), ``test_batch`` and ``batches.meta``."""
    folder = _locate(folder, "cifar-10-batches-py", "data_batch_1")
    batches = sorted((p for p in folder.glob("data_batch_*")
                      if re.fullmatch(r"data_batch_\d+", p.name)),
                     key=lambda p: int(p.name.rsplit("_", 1)[1]))
    if not batches:
        raise DatasetError(f"cifar10: {folder} holds no data_batch_1 .. data_batch_5. Point "
                           "cifar10:DIR at the unpacked cifar-10-batches-py folder.")
    parts = [_read_batch(p, "labels") for p in batches]
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    test_file = folder / "test_batch"
    test = _read_batch(test_file, "labels") if test_file.exists() else None
    names = _names(folder / "batches.meta", "label_names") or CIFAR10_CLASSES
    classes, y, y_test = index_labels(y, None if test is None else test[1], names, str(folder))
    return ArraySet(classes, x, y, None if test is None else (test[0], y_test))


def read_cifar100(folder: Path) -> ArraySet:
    """``train``, ``test`` and ``meta`` of CIFAR-100, with its 100 fine labels."""
    folder = _locate(folder, "cifar-100-python", "train")
    if not (folder / "train").is_file():
        raise DatasetError(f"cifar100: {folder} holds no 'train' file. Point cifar100:DIR at "
                           "the unpacked cifar-100-python folder.")
    x, y = _read_batch(folder / "train", "fine_labels")
    test = _read_batch(folder / "test", "fine_labels") if (folder / "test").exists() else None
    names = _names(folder / "meta", "fine_label_names")
    classes, y, y_test = index_labels(y, None if test is None else test[1], names, str(folder))
    return ArraySet(classes, x, y, None if test is None else (test[0], y_test))
