"""``clutter``: a harder synthetic set, generated on the fly, on which the architecture matters.

Grey 32×32 uint8 images of ten shape kinds (:data:`CLUTTER_SHAPES`), each filled solid or with
stripes: 20 classes (shape × fill), or 10 (shape only; the fill is then a nuisance). Every image
has a random scale, rotation and position, random grey levels of either polarity (brightness
says nothing about the class), a gradient background with a faint grating, distractor strokes
and blobs (one stroke drawn over the shape) and Gaussian noise. Stripes 3–4 px apart and small
shapes among strokes reward nets that keep detail early and pool later.

Rendering is numpy on coordinate grids, 1,000 images per chunk, each chunk seeded by
(seed, split, chunk index): the first N images are the same whatever the total, and the test
split (its own stream of 6,000) never moves. :func:`write_idx` (command line:
``python benchmarks/make_idx_set.py --idx DIR``) writes a set in MNIST's IDX format, readable as
``--dataset mnist:DIR``.
"""

from __future__ import annotations

import argparse
import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np

from automl_cnn.data.formats import DatasetError
from automl_cnn.data.splits import ImageSplits, make_splits

CLUTTER_SHAPES = ("disk", "ring", "square", "triangle", "plus", "star", "crescent", "ellipse",
                  "tee", "half-disk")
FILLS = ("solid", "striped")
CHUNK = 1000  # images per seeded chunk: bounds scratch memory (~40 MB) and fixes prefixes
GENERATION_SEED = 1234  # the pictures never depend on --seed (that only moves validation)
DEFAULT_TRAIN = 24_000  # train + validation pool; validation takes 15 % of it
TEST_IMAGES = 6_000
SPLIT_STREAMS = {"train": 0, "test": 1}

Sdf = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _uniform(rng: np.random.Generator, low: float, high: float | np.ndarray,
             shape: tuple[int, ...]) -> np.ndarray:
    """float32 draws: float64 parameters would promote every (B, S, S) grid op to float64."""
    return rng.uniform(low, high, shape).astype(np.float32)


def _rect(u: np.ndarray, v: np.ndarray, cu: float, cv: float, hu: float, hv: float) -> np.ndarray:
    return np.maximum(np.abs(u - cu) - hu, np.abs(v - cv) - hv)


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    angles = np.pi / 2 + np.arange(3) * 2 * np.pi / 3  # outward normals of an equilateral
    return np.max([u * np.cos(a) + v * np.sin(a) for a in angles], axis=0) - 0.5


#: Signed distance (negative inside) of each shape in unit coordinates: its radius is about 1.
SHAPE_SDF: dict[str, Sdf] = {
    "disk": lambda u, v: np.hypot(u, v) - 1.0,
    "ring": lambda u, v: np.abs(np.hypot(u, v) - 0.72) - 0.26,
    "square": lambda u, v: np.maximum(np.abs(u), np.abs(v)) - 0.75,
    "triangle": _triangle,
    "plus": lambda u, v: np.minimum(_rect(u, v, 0, 0, 0.28, 0.95), _rect(u, v, 0, 0, 0.95, 0.28)),
    "star": lambda u, v: np.hypot(u, v) - (0.62 + 0.38 * np.cos(5 * np.arctan2(v, u))),
    "crescent": lambda u, v: np.maximum(np.hypot(u, v) - 1.0, 0.85 - np.hypot(u - 0.5, v)),
    "ellipse": lambda u, v: (np.hypot(u, v / 0.5) - 1.0) * 0.5,
    "tee": lambda u, v: np.minimum(_rect(u, v, 0, 0.55, 0.95, 0.25),
                                   _rect(u, v, 0, -0.2, 0.25, 0.75)),
    "half-disk": lambda u, v: np.maximum(np.hypot(u, v + 0.42) - 1.0, -(v + 0.42)),
}


def clutter_classes(classes: int) -> tuple[str, ...]:
    """Class names: ``("disk", ...)`` for 10, ``("disk/solid", "disk/striped", ...)`` for 20."""
    if classes == len(CLUTTER_SHAPES):
        return CLUTTER_SHAPES
    if classes == len(CLUTTER_SHAPES) * len(FILLS):
        return tuple(f"{s}/{f}" for s in CLUTTER_SHAPES for f in FILLS)
    raise DatasetError(f"clutter has 10 classes (shapes) or 20 (shape × fill), but got "
                       f"classes={classes}.")


def _stroke(xx: np.ndarray, yy: np.ndarray, rng: np.random.Generator, b: int,
            size: int) -> np.ndarray:
    """Coverage (B, S, S) of one random line segment per image, anti-aliased."""
    ax, ay = _uniform(rng, 0, size, (2, b, 1, 1))
    angle = _uniform(rng, 0, 2 * np.pi, (b, 1, 1))
    c, s = np.cos(angle), np.sin(angle)
    length = _uniform(rng, 0.3, 0.8, (b, 1, 1)) * size
    half = _uniform(rng, 0.5, 1.2, (b, 1, 1)) * size / 32
    along = (xx - ax) * c + (yy - ay) * s  # (B, S, S): the sum is the only full-size step
    across = np.abs((yy - ay) * c - (xx - ax) * s)
    ends = np.clip(np.minimum(along, length - along) + 0.5, 0, 1)
    return np.clip(half + 0.5 - across, 0, 1) * ends


def _blob(xx: np.ndarray, yy: np.ndarray, rng: np.random.Generator, b: int,
          size: int) -> np.ndarray:
    cx, cy = _uniform(rng, 0, size, (2, b, 1, 1))
    r = _uniform(rng, 1.0, 2.5, (b, 1, 1)) * size / 32
    return np.clip(r + 0.5 - np.hypot(xx - cx, yy - cy), 0, 1)


def _background(xx: np.ndarray, yy: np.ndarray, rng: np.random.Generator, b: int,
                size: int) -> tuple[np.ndarray, np.ndarray]:
    """(image (B, S, S), base level (B, 1, 1)): a level, a linear gradient, a faint grating."""
    level = _uniform(rng, 30, 225, (b, 1, 1))
    phi, psi = _uniform(rng, 0, 2 * np.pi, (2, b, 1, 1))
    slope = _uniform(rng, -40, 40, (b, 1, 1)) / size
    period = _uniform(rng, 5, 12, (b, 1, 1)) * size / 32
    grating = _uniform(rng, 0, 12, (b, 1, 1)) * np.sin(
        2 * np.pi * (xx * np.cos(psi) + yy * np.sin(psi)) / period)
    gradient = slope * ((xx - size / 2) * np.cos(phi) + (yy - size / 2) * np.sin(phi))
    return level + gradient + grating, level


def _shape_coverage(xx: np.ndarray, yy: np.ndarray, kinds: np.ndarray,
                    rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(coverage (B, S, S) of each image's shape, stripe pattern (B, S, S) in [0, 1])."""
    b = len(kinds)
    radius = _uniform(rng, 0.22, 0.38, (b, 1, 1)) * size
    cx, cy = _uniform(rng, 0.8 * radius, size - 0.8 * radius, (2, b, 1, 1))
    angle = _uniform(rng, 0, 2 * np.pi, (b, 1, 1))
    c, s = np.cos(angle), np.sin(angle)
    u = ((xx - cx) * c + (yy - cy) * s) / radius  # (B, S, S) in the shape's unit frame
    v = (-(xx - cx) * s + (yy - cy) * c) / radius
    dist = np.empty_like(u)
    for k, name in enumerate(CLUTTER_SHAPES):
        idx = np.flatnonzero(kinds == k)
        if len(idx):
            dist[idx] = SHAPE_SDF[name](u[idx], v[idx])
    coverage = np.clip(0.5 - dist * radius, 0, 1)  # one pixel of anti-aliased edge
    period = _uniform(rng, 2.8, 4.0, (b, 1, 1)) * size / 32
    phase, tilt = _uniform(rng, 0, 2 * np.pi, (2, b, 1, 1))
    across = (xx * np.cos(tilt) + yy * np.sin(tilt)) * (2 * np.pi) / period
    stripes = np.clip(0.5 + 1.5 * np.sin(across + phase), 0, 1)
    return coverage, stripes


def _render_chunk(labels: np.ndarray, *, size: int, classes: int,
                  rng: np.random.Generator) -> np.ndarray:
    """uint8 (B, S, S) images of ``labels``."""
    b = len(labels)
    # Separable grids, (1, 1, S) and (1, S, 1): per-image linear terms stay (B, 1, S) or (B, S, 1)
    # and only their sums are full (B, S, S) arrays.
    xx = (np.arange(size, dtype=np.float32) + 0.5)[None, None, :]
    yy = xx.reshape(1, size, 1)
    if classes == len(CLUTTER_SHAPES):
        kinds, striped = labels, rng.random(b) < 0.5
    else:
        kinds, striped = labels // 2, labels % 2 == 1
    img, level = _background(xx, yy, rng, b, size)
    paint = lambda img, cover, value: img + cover * (value - img)  # noqa: E731
    for draw in (_stroke, _stroke, _blob, _blob):
        img = paint(img, draw(xx, yy, rng, b, size), _uniform(rng, 0, 255, (b, 1, 1)))
    # Shape level: 60..130 grey levels away from the background, on whichever side fits.
    sign = np.where(rng.random((b, 1, 1)) < 0.5, np.float32(-1), np.float32(1))
    step = _uniform(rng, 60, 130, (b, 1, 1))
    sign = np.where((level + sign * step < 0) | (level + sign * step > 255), -sign, sign)
    fg = level + sign * step
    coverage, stripes = _shape_coverage(xx, yy, kinds, rng, size)
    # Stripes swing half way back to the background: the silhouette stays whole, the texture
    # is a second cue that only detail kept before pooling can see.
    fill = np.where(striped[:, None, None], fg + 0.5 * (level - fg) * (1 - stripes), fg)
    img = paint(img, coverage, fill)
    img = paint(img, _stroke(xx, yy, rng, b, size), _uniform(rng, 0, 255, (b, 1, 1)))
    img += rng.standard_normal(img.shape, dtype=np.float32) * _uniform(rng, 3, 12, (b, 1, 1))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render_clutter(n: int, *, size: int = 32, classes: int = 20, seed: int = GENERATION_SEED,
                   split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(x uint8 (n, 1, size, size), y int64 (n,)), classes interleaved (balanced).

    Example:
        >>> x, y = render_clutter(40, size=32, classes=20)
        >>> x.shape, x.dtype.name, y[:3].tolist()
        ((40, 1, 32, 32), 'uint8', [0, 1, 2])
    """
    clutter_classes(classes)
    if size < 16:
        raise DatasetError(f"clutter images must be at least 16×16, but got size={size}.")
    labels = np.arange(n, dtype=np.int64) % classes
    x = np.empty((n, 1, size, size), dtype=np.uint8)
    for start in range(0, n, CHUNK):
        rng = np.random.default_rng([seed, SPLIT_STREAMS[split], start // CHUNK])
        # Always a whole chunk, cut afterwards: the draws, and so the pictures, of image i
        # then do not depend on n.
        part = np.arange(start, start + CHUNK, dtype=np.int64) % classes
        images = _render_chunk(part, size=size, classes=classes, rng=rng)
        x[start:start + CHUNK, 0] = images[:n - start]
    return x, labels


def load_clutter(*, seed: int = 0, n_train: int = DEFAULT_TRAIN, size: int = 32,
                 classes: int = 20) -> ImageSplits:
    """The clutter set: ``n_train`` images for training and validation (15 % of them, carved
    with ``seed``) and a fixed test split of 6,000. ``--dataset clutter:N`` sets ``n_train``."""
    x, y = render_clutter(n_train, size=size, classes=classes, split="train")
    test = render_clutter(TEST_IMAGES, size=size, classes=classes, split="test")
    name = "clutter" if n_train == DEFAULT_TRAIN else f"clutter:{n_train}"
    return make_splits(name, clutter_classes(classes), x, y, seed=seed, test=test, flip_ok=True)


def clutter_arg(arg: str) -> dict[str, int]:
    """``load_clutter``'s keyword arguments from the ARG of ``clutter:ARG`` (a training count)."""
    text = arg.strip().replace("_", "").replace(",", "")
    if not text.isdigit() or not 100 <= int(text) <= 1_000_000:
        raise DatasetError(f"clutter:{arg} does not name a training-image count; write "
                           f"clutter:N with N from 100 to 1000000, e.g. clutter:60000 (plain "
                           f"clutter is {DEFAULT_TRAIN:,}).")
    return {"n_train": int(text)}


def _idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file: magic 0x0000080N, N big-endian dimensions, then the data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(folder: Path, *, n_train: int = 60_000, n_test: int = 10_000, size: int = 28,
              classes: int = 10, seed: int = GENERATION_SEED) -> list[Path]:
    """Write clutter in MNIST's layout (``train-images-idx3-ubyte.gz``, ``-labels-idx1-``,
    ``t10k-*`` and ``classes.txt``) to ``folder``, for ``--dataset mnist:FOLDER``."""
    if n_train < classes or n_test < 0:
        raise DatasetError(f"write_idx needs at least one training image per class and no "
                           f"negative counts, but got n_train={n_train}, n_test={n_test}.")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for prefix, n, split in (("train", n_train, "train"), ("t10k", n_test, "test")):
        x, y = render_clutter(n, size=size, classes=classes, seed=seed, split=split)
        for kind, array in (("images-idx3", x[:, 0]), ("labels-idx1", y)):
            path = folder / f"{prefix}-{kind}-ubyte.gz"
            path.write_bytes(gzip.compress(_idx_bytes(array), compresslevel=4, mtime=0))
            written.append(path)
    names = folder / "classes.txt"
    names.write_text("".join(f"{c}\n" for c in clutter_classes(classes)))
    return [*written, names]


def main(argv: list[str] | None = None) -> None:
    """The command line of :func:`write_idx` (``benchmarks/make_idx_set.py``)."""
    parser = argparse.ArgumentParser(
        prog="make_idx_set.py",
        description="Write the clutter set as MNIST-style IDX files (read with "
                    "--dataset mnist:DIR).")
    parser.add_argument("--idx", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--n", type=int, default=60_000, help="training images (default 60000)")
    parser.add_argument("--test", type=int, default=10_000, help="test images (default 10000)")
    parser.add_argument("--size", type=int, default=28, help="image side in pixels (default 28)")
    parser.add_argument("--classes", type=int, default=10, choices=(10, 20))
    parser.add_argument("--seed", type=int, default=GENERATION_SEED)
    args = parser.parse_args(argv)
    try:
        paths = write_idx(args.idx, n_train=args.n, n_test=args.test, size=args.size,
                          classes=args.classes, seed=args.seed)
    except DatasetError as exc:
        parser.exit(2, f"error: {exc}\n")
    for path in paths:
        print(path)
