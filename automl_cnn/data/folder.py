"""A folder of images sorted into one subfolder per class, read with Pillow.

``DIR/cat/001.jpg, DIR/dog/002.png, ...``: the subfolder names, sorted, are the classes. When
``DIR`` holds exactly ``train`` and ``test`` (or ``val``) subfolders, each sorted by class, the
second is the dataset's own test split. Every image is converted to one size (``image_size``,
else the most common size) and one channel count (grey when every image is grey, else RGB).

:class:`ImageFiles` stands in for a uint8 (N, C, H, W) tensor whose images are decoded from
disk on demand, so a set too big for memory can stream; :func:`load_or_stream` decides.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from automl_cnn.data.formats import DatasetError, require_path
from automl_cnn.data.splits import ImageSplits, make_splits, stratified_split

if TYPE_CHECKING:  # Pillow is imported where images are decoded: searches of array sets
    from PIL import Image  # (digits, mnist:, npz:) run where it is not installed

log = logging.getLogger(__name__)
T = TypeVar("T")

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                            ".ppm", ".pgm", ".pbm"})
GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
WIDE_GREY_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})


def _read_errors() -> tuple[type[BaseException], ...]:
    from PIL import Image

    return (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def decode_image(path: str, *, height: int, width: int, channels: int) -> np.ndarray:
    """One image file as uint8 (C, H, W); the one decoder both the in-memory and the
    streaming path use, so they see identical pixels."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = _to_8bit(im).convert("L" if channels == 1 else "RGB")
            if im.size != (width, height):
                im = im.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.array(im, dtype=np.uint8)  # (H, W) or (H, W, 3), writable
    except _read_errors() as exc:
        raise DatasetError(f"{path}: cannot decode this image ({exc}). Remove or replace the "
                           "file.") from None
    return pixels[None] if channels == 1 else np.ascontiguousarray(pixels.transpose(2, 0, 1))


def _to_8bit(im: Image.Image) -> Image.Image:
    """16-bit grey (``I;16*``, and ``I`` as Pillow opens 16-bit PNGs and TIFFs) scaled to
    0..255; ``convert("L")`` would clip every value above 255 to white."""
    from PIL import Image

    if im.mode not in WIDE_GREY_MODES:
        return im
    wide = np.asarray(im, dtype=np.float64)  # (H, W), 0..65535
    return Image.fromarray(np.rint(np.clip(wide, 0, 65535) / 257.0).astype(np.uint8), "L")


def _probe(path: str) -> tuple[int, int, str]:
    """(height, width, mode) from the header only."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.height, im.width, im.mode
    except _read_errors() as exc:
        raise DatasetError(f"{path}: not a readable image ({exc}). Remove or replace the "
                           "file.") from None


def _pool_map(fn: Callable[[str], T], items: Sequence[str], threads: int | None) -> list[T]:
    """Pillow releases the GIL while decoding, so threads decode in parallel."""
    threads = threads or min(8, os.cpu_count() or 1)
    if threads <= 1 or len(items) < 64:
        return [fn(p) for p in items]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(fn, items, chunksize=64))


@dataclass(frozen=True, eq=False)
class ImageFiles:
    """Image files read as a uint8 (N, C, H, W) tensor would be: ``len``, ``shape``,
    ``x[i]`` / ``x[a:b]`` / ``x[index_tensor]`` (decoded on demand, on ``device``) and ``to``.

    Example:
        >>> files = ImageFiles(("a.png", "b.png"), channels=1, height=28, width=28)
        >>> files.shape
        torch.Size([2, 1, 28, 28])
    """

    paths: tuple[str, ...]
    channels: int
    height: int
    width: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype = torch.uint8

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.paths), self.channels, self.height, self.width))

    @property
    def nbytes(self) -> int:
        return len(self.paths) * self.channels * self.height * self.width

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: Any) -> torch.Tensor:
        if isinstance(index, (int, np.integer)):
            return torch.from_numpy(self._decode(self.paths[index])).to(self.device)
        return self.take(index).load().to(self.device)

    def take(self, index: Any) -> ImageFiles:
        """The files at ``index`` (a slice, or integer indices), still undecoded."""
        if isinstance(index, slice):
            return replace(self, paths=self.paths[index])
        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        return replace(self, paths=tuple(self.paths[int(i)] for i in np.asarray(index).ravel()))

    def to(self, device: torch.device | str, **_: Any) -> ImageFiles:
        return replace(self, device=torch.device(device))

    def load(self, *, threads: int | None = None) -> torch.Tensor:
        """Decode every file: uint8 (N, C, H, W) on the CPU."""
        out = np.empty(tuple(self.shape), dtype=np.uint8)
        for i, pixels in enumerate(_pool_map(self._decode, self.paths, threads)):
            out[i] = pixels
        return torch.from_numpy(out)

    def verify(self, *, threads: int | None = None) -> None:
        """Decode every file once and keep nothing: a corrupt file fails now, not mid-search."""
        _pool_map(self._decode, self.paths, threads)

    def _decode(self, path: str) -> np.ndarray:
        return decode_image(path, height=self.height, width=self.width, channels=self.channels)


# -- reading the folder -------------------------------------------------------------------------

def _class_files(root: Path) -> dict[str, list[str]]:
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not dirs:
        raise DatasetError(f"folder: {root} holds no class subfolders. Put each class's images "
                           "in a subfolder named after the class: DIR/cat/1.jpg, DIR/dog/2.png.")
    found: dict[str, list[str]] = {}
    for d in dirs:
        files = sorted(str(f) for f in d.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES
                       and not f.name.startswith(".") and f.is_file())
        if not files:
            raise DatasetError(f"folder: class folder {d} holds no images (looked for "
                               f"{', '.join(sorted(IMAGE_SUFFIXES))}). Add images or remove it.")
        found[d.name] = files
    return found


def _layout(root: Path) -> tuple[list[Path], Path | None]:
    """(training roots, test root): ``train/`` + ``test/`` (or ``val/``) when split already."""
    # Hidden folders (.ipynb_checkpoints, .git) are neither classes nor splits.
    subdirs = {d.name.lower(): d for d in root.iterdir()
               if d.is_dir() and not d.name.startswith(".")}
    if "train" in subdirs and set(subdirs) in ({"train", "test"}, {"train", "val"},
                                                {"train", "val", "test"}):
        test = subdirs.get("test", subdirs.get("val"))
        # With train/val/test, val joins the training pool: validation is carved with the seed.
        train = [subdirs["train"]] + ([subdirs["val"]] if "test" in subdirs and "val" in subdirs
                                      else [])
        return train, test
    return [root], None


def _labelled(groups: Iterable[dict[str, list[str]]], classes: tuple[str, ...],
              where: Path) -> tuple[list[str], np.ndarray]:
    paths: list[str] = []
    labels: list[int] = []
    for group in groups:
        for name, files in group.items():
            if name not in classes:
                raise DatasetError(f"folder: {where} has a class folder {name!r} that the "
                                   f"training folder lacks (classes: {', '.join(classes)}).")
            paths += files
            labels += [classes.index(name)] * len(files)
    return paths, np.asarray(labels, dtype=np.int64)


def _target_format(paths: Sequence[str], image_size: int | None,
                   threads: int | None) -> tuple[int, int, int]:
    """(channels, height, width) every image is converted to."""
    probes = _pool_map(_probe, paths, threads)
    channels = 1 if all(mode in GREY_MODES for _, _, mode in probes) else 3
    if image_size is not None:
        return channels, image_size, image_size
    sizes = Counter((h, w) for h, w, _ in probes)
    (h, w), count = sizes.most_common(1)[0]
    if count < len(probes):
        log.info("images come in %d sizes; resizing all to the most common, %d×%d (set "
                 "--image-size to choose)", len(sizes), h, w)
    return channels, h, w


def read_folder(root: Path, *, seed: int, image_size: int | None = None,
                threads: int | None = None) -> ImageSplits:
    """The folder's splits with :class:`ImageFiles` in place of image tensors (nothing decoded
    yet); the split is the same one :func:`make_splits` makes for the same labels."""
    require_path(root, folder=True, what="folder")
    train_roots, test_root = _layout(root)
    train_groups = [_class_files(r) for r in train_roots]
    classes = tuple(sorted({name for g in train_groups for name in g}))
    paths, y = _labelled(train_groups, classes, root)
    test_paths, y_test = (_labelled([_class_files(test_root)], classes, test_root)
                          if test_root else ([], np.zeros(0, dtype=np.int64)))
    if len(classes) < 2:
        raise DatasetError(f"folder: {root} holds one class folder ({classes[0]}); a classifier "
                           "needs at least two.")
    c, h, w = _target_format(paths + test_paths, image_size, threads)
    files = ImageFiles(tuple(paths), c, h, w)
    if test_root is None:  # carve the test split exactly as make_splits does
        rest, held = stratified_split(y, _MAKE_SPLITS["test_fraction"], seed=0)
        test_files, y_test = files.take(held), y[held]
        files, y = files.take(rest), y[rest]
    else:
        test_files = ImageFiles(tuple(test_paths), c, h, w)
    train_idx, val_idx = stratified_split(y, _MAKE_SPLITS["val_fraction"], seed=seed)
    return ImageSplits(
        name=f"folder:{root}", classes=classes, flip_ok=True,
        # ImageFiles stand in for the image tensors until load_or_stream decodes them.
        x_train=files.take(train_idx), y_train=torch.from_numpy(y[train_idx]),  # type: ignore
        x_val=files.take(val_idx), y_val=torch.from_numpy(y[val_idx]),  # type: ignore
        x_test=test_files, y_test=torch.from_numpy(y_test),  # type: ignore
    )


_MAKE_SPLITS: dict[str, Any] = make_splits.__kwdefaults__ or {}
_IMAGE_FIELDS = ("x_train", "x_val", "x_test")


def image_bytes(splits: ImageSplits) -> int:
    """Bytes the splits' images take (or would take) as uint8 tensors."""
    return sum(len(getattr(splits, k)) * int(np.prod(splits.input_shape)) for k in _IMAGE_FIELDS)


def load_or_stream(splits: ImageSplits, *, memory_budget: int,
                   threads: int | None = None) -> ImageSplits:
    """Decode file-backed splits into tensors when they fit ``memory_budget`` bytes; otherwise
    keep streaming them, after decoding each file once to catch corrupt ones now."""
    lazy = [k for k in _IMAGE_FIELDS if isinstance(getattr(splits, k), ImageFiles)]
    if not lazy:
        return splits
    size = image_bytes(splits)
    if size <= memory_budget:
        return replace(splits, **{k: getattr(splits, k).load(threads=threads) for k in lazy})
    log.info("%s: %.1f MB of images exceeds the %.1f MB memory budget; streaming from disk",
             splits.name, size / 1e6, memory_budget / 1e6)
    for k in lazy:
        getattr(splits, k).verify(threads=threads)
    return splits
