"""Readers for array-shaped image files: MNIST-style IDX and ``.npz`` archives.

Each reader checks what it reads and raises :class:`DatasetError` naming the file and the
problem, so bad data fails before any training. They return an :class:`ArraySet`: uint8
(N, C, H, W) images with int64 labels, plus the dataset's own test split when it has one.
"""

from __future__ import annotations

import gzip
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from automl_cnn.errors import UserError


class DatasetError(UserError):
    """A dataset name, path or file that cannot be read."""


@dataclass(frozen=True, eq=False)
class ArraySet:
    """Images as arrays in memory, before the train/validation split."""

    classes: tuple[str, ...]
    x: np.ndarray  # uint8 (N, C, H, W)
    y: np.ndarray  # int64 (N,), indices into classes
    test: tuple[np.ndarray, np.ndarray] | None = None  # the dataset's own test split
    flip_ok: bool = True


# -- shared checks ------------------------------------------------------------------------------

def require_path(path: Path, *, folder: bool, what: str) -> Path:
    """``path`` itself, or a DatasetError saying it is missing or the wrong kind of thing."""
    if not path.exists():
        raise DatasetError(f"{what}: {path} does not exist. Check the path after the prefix, "
                           f"e.g. --dataset mnist:/data/mnist.")
    if folder and not path.is_dir():
        raise DatasetError(f"{what}: {path} is a file, but a folder is expected here.")
    if not folder and path.is_dir():
        raise DatasetError(f"{what}: {path} is a folder, but a file is expected here.")
    return path


def check_counts(x: np.ndarray, y: np.ndarray, *, images: str, labels: str) -> None:
    if len(x) != len(y):
        raise DatasetError(f"{images} holds {len(x)} images but {labels} holds {len(y)} labels; "
                           "they must pair one to one. Check that the files belong together.")
    if len(x) == 0:
        raise DatasetError(f"{images} holds no images.")


def as_uint8_pixels(x: np.ndarray, source: str) -> np.ndarray:
    """Pixels as uint8 0..255: integers in range are cast, floats in [0, 1] are scaled."""
    if x.dtype == np.uint8:
        return x
    if x.dtype == np.bool_:
        return x.astype(np.uint8) * 255
    if np.issubdtype(x.dtype, np.integer):
        lo, hi = (int(x.min()), int(x.max())) if x.size else (0, 0)
        if lo < 0 or hi > 255:
            raise DatasetError(f"{source}: integer pixels must lie in 0..255, but range from "
                               f"{lo} to {hi}. Rescale them to 0..255 (uint8).")
        return x.astype(np.uint8)
    if np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all():
            raise DatasetError(f"{source}: pixels contain NaN or infinity.")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 255:
            raise DatasetError(f"{source}: float pixels must lie in [0, 1] or [0, 255], but "
                               f"range from {lo:g} to {hi:g}.")
        scale = 255.0 if hi <= 1.0 else 1.0
        return np.rint(x * scale).astype(np.uint8)
    raise DatasetError(f"{source}: pixels have dtype {x.dtype}; use uint8, another integer "
                       "type with values 0..255, or floats in [0, 1].")


def index_labels(
    y: np.ndarray, y_test: np.ndarray | None, names: tuple[str, ...] | None, source: str
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray | None]:
    """(classes, y, y_test) with labels as int64 indices into classes.

    With ``names``, labels must already be indices into them. Without, the distinct label
    values become the classes (named by their value), so e.g. labels 1..26 need no class 0.
    """
    parts = [y] if y_test is None else [y, y_test]
    for part in parts:
        if part.ndim != 1 or not np.issubdtype(part.dtype, np.integer):
            raise DatasetError(f"{source}: labels must be a 1-D array of integers, but got "
                               f"dtype {part.dtype} and shape {part.shape}.")
        if part.size and part.min() < 0:
            raise DatasetError(f"{source}: labels must not be negative, but found "
                               f"{int(part.min())}.")
    if names is not None:
        if len(names) < 2:
            raise DatasetError(f"{source}: names {len(names)} class{'' if names else 'es'} "
                               f"({', '.join(names) or 'none'}); a classifier needs at least "
                               "two. List one name per class, one per line (or per entry).")
        top = max(int(p.max()) for p in parts if p.size)
        if top >= len(names):
            raise DatasetError(f"{source}: label {top} has no class name; {len(names)} names "
                               "were given, one per label 0, 1, ...")
        return names, y.astype(np.int64), None if y_test is None else y_test.astype(np.int64)
    values = np.unique(np.concatenate(parts))
    if len(values) < 2:
        raise DatasetError(f"{source}: every image has label {values.tolist()}; a classifier "
                           "needs at least two classes.")
    classes = tuple(str(int(v)) for v in values)

    def remap(a: np.ndarray) -> np.ndarray:
        return np.searchsorted(values, a).astype(np.int64)

    return classes, remap(y), None if y_test is None else remap(y_test)


# -- IDX (MNIST, Fashion-MNIST, KMNIST, EMNIST) -------------------------------------------------

#: IDX type code (third magic byte) -> big-endian dtype.
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_bytes(path: Path) -> bytes:
    """A file's bytes, gunzipped when it starts with the gzip magic (whatever its name)."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path}: a damaged or truncated gzip file ({exc}). Download it "
                           "again, or gunzip it to see what is wrong.") from None


def read_idx(path: Path, *, ndim: int) -> np.ndarray:
    """An IDX array with ``ndim`` dimensions (3 for images, 1 for labels), checked fully."""
    raw = read_bytes(path)
    expected = 0x0800 + ndim
    if len(raw) < 4:
        raise DatasetError(f"{path}: only {len(raw)} bytes long; not an IDX file.")
    magic = struct.unpack(">I", raw[:4])[0]
    if raw[:2] != b"\0\0" or raw[2] not in IDX_TYPES or raw[3] != ndim:
        raise DatasetError(
            f"{path}: wrong magic number 0x{magic:08X}; an IDX file of "
            f"{'images' if ndim == 3 else 'labels'} starts with 0x{expected:08X}. Is it the "
            "right file (images vs labels), and not an HTML page or another format?")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated inside its header ({len(raw)} bytes).")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(IDX_TYPES[raw[2]])
    need = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != need:
        problem = "truncated" if len(raw) - header < need else "longer than its header says"
        raise DatasetError(f"{path}: {problem}: the header promises shape {tuple(dims)} "
                           f"({need:,} bytes of data) but the file holds "
                           f"{len(raw) - header:,}. Download the file again.")
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))  # native byte order, and a writable copy


def find_idx(folder: Path, split: str, kind: str) -> Path | None:
    """``train-images-idx3-ubyte[.gz]`` and the variants other sets use (``.`` for ``-``, an
    ``emnist-letters-`` style prefix); None when absent, an error when ambiguous."""
    dims = 3 if kind == "images" else 1
    pattern = re.compile(rf"^(?:.*-)?{split}-{kind}[-.]idx{dims}-ubyte(?:\.gz)?$")
    found = sorted(p for p in folder.iterdir() if pattern.match(p.name) and p.is_file())
    raw = [p for p in found if p.suffix != ".gz"]
    if len(found) == 2 and len(raw) == 1 and found[0].name + ".gz" == found[1].name:
        found = raw  # both the archive and its unpacked copy: read the unpacked one
    if len(found) > 1:
        raise DatasetError(f"{folder} holds several {split} {kind} files: "
                           f"{', '.join(p.name for p in found)}. Keep one set per folder.")
    return found[0] if found else None


def read_mnist(folder: Path) -> ArraySet:
    """MNIST-format IDX files in ``folder``: train images and labels, and ``t10k`` ones (the
    test split) when present. An optional ``classes.txt`` (one name per line) names labels
    0, 1, ...; Fashion-MNIST ships without one, so its classes read "0".."9"."""
    require_path(folder, folder=True, what="mnist")
    paths = {(s, k): find_idx(folder, s, k)
             for s in ("train", "t10k") for k in ("images", "labels")}
    if paths["train", "images"] is None or paths["train", "labels"] is None:
        listing = ", ".join(sorted(p.name for p in folder.iterdir())[:12]) or "nothing"
        raise DatasetError(f"mnist: {folder} lacks train-images-idx3-ubyte[.gz] and/or "
                           f"train-labels-idx1-ubyte[.gz] (it holds {listing}). Point "
                           "mnist:DIR at the folder holding the IDX files.")
    if (paths["t10k", "images"] is None) != (paths["t10k", "labels"] is None):
        raise DatasetError(f"mnist: {folder} holds only one of t10k-images-idx3-ubyte and "
                           "t10k-labels-idx1-ubyte; add the other, or remove it to have the "
                           "test split carved from the training images.")
    x, y = _read_pair(paths["train", "images"], paths["train", "labels"])
    test = None
    if paths["t10k", "images"] is not None:
        test = _read_pair(paths["t10k", "images"], paths["t10k", "labels"])  # type: ignore
        if test[0].shape[1:] != x.shape[1:]:
            raise DatasetError(f"{paths['t10k', 'images']}: images are {test[0].shape[2]}×"
                               f"{test[0].shape[3]}, but the training images are "
                               f"{x.shape[2]}×{x.shape[3]}.")
    names_file = folder / "classes.txt"
    names = None
    if names_file.is_file():
        names = tuple(line.strip() for line in names_file.read_text().splitlines() if line.strip())
    classes, y, y_test = index_labels(y, None if test is None else test[1], names, str(folder))
    return ArraySet(classes, x, y, None if test is None else (test[0], y_test), flip_ok=False)


def _read_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    x = as_uint8_pixels(read_idx(images, ndim=3), str(images))[:, None]  # (N, 1, H, W)
    y = read_idx(labels, ndim=1)
    if not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"{labels}: labels are stored as {y.dtype}; IDX labels are integers.")
    check_counts(x, y, images=str(images), labels=str(labels))
    return x, y.astype(np.int64)


# -- npz ----------------------------------------------------------------------------------------

def read_npz(path: Path) -> ArraySet:
    """Arrays ``x`` and ``y`` (and optionally ``x_test``/``y_test`` and ``classes``) from an
    ``.npz`` file; x is N×H×W, N×H×W×C or N×C×H×W. Never unpickles (allow_pickle=False)."""
    require_path(path, folder=False, what="npz")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not hasattr(archive, "files"):
                raise DatasetError(f"{path}: a single .npy array, not an .npz archive; save "
                                   "with np.savez(path, x=images, y=labels).")
            arrays = {k: archive[k] for k in archive.files}
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path}: cannot read it as an .npz archive ({exc}). Save it with "
                           "np.savez(path, x=images, y=labels).") from None
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise DatasetError(f"{path}: no array named {' or '.join(missing)} (found: "
                           f"{', '.join(sorted(arrays)) or 'none'}). Save images as x and "
                           "labels as y: np.savez(path, x=images, y=labels).")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DatasetError(f"{path}: has only one of x_test and y_test; save both or neither.")
    x = _npz_images(arrays["x"], f"{path} [x]")
    y = _npz_labels(arrays["y"])
    check_counts(x, y, images=f"{path} [x]", labels=f"{path} [y]")
    test = None
    if "x_test" in arrays:
        xt, yt = _npz_images(arrays["x_test"], f"{path} [x_test]"), _npz_labels(arrays["y_test"])
        check_counts(xt, yt, images=f"{path} [x_test]", labels=f"{path} [y_test]")
        if xt.shape[1:] != x.shape[1:]:
            raise DatasetError(f"{path}: x_test images have shape {xt.shape[1:]} (C, H, W) but "
                               f"x images have {x.shape[1:]}; they must match.")
        test = (xt, yt)
    names = tuple(str(c) for c in arrays["classes"].reshape(-1)) if "classes" in arrays else None
    classes, y, y_test = index_labels(y, None if test is None else test[1], names, str(path))
    return ArraySet(classes, x, y, None if test is None else (test[0], y_test))


def _npz_labels(y: np.ndarray) -> np.ndarray:
    return y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y  # (N, 1) column -> (N,)


def _npz_images(x: np.ndarray, source: str) -> np.ndarray:
    """(N, C, H, W) uint8 from N×H×W, N×H×W×C or N×C×H×W (channels: the axis of size ≤ 4)."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        last_small, first_small = x.shape[3] <= 4, x.shape[1] <= 4
        if last_small and not first_small:
            x = x.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
        elif not first_small:
            raise DatasetError(f"{source}: shape {x.shape} has no channel axis of size 1-4 "
                               "after N; use N×H×W, N×H×W×C or N×C×H×W.")
        elif last_small:
            raise DatasetError(f"{source}: shape {x.shape} is ambiguous: both axis 1 and axis 3 "
                               "could hold channels. Save single-channel images as N×H×W.")
    else:
        raise DatasetError(f"{source}: images must be N×H×W, N×H×W×C or N×C×H×W, but the "
                           f"array has shape {x.shape}.")
    return np.ascontiguousarray(as_uint8_pixels(x, source))
