"""Datasets that ship with the install: nothing is downloaded.

- ``digits``: scikit-learn's bundled 8×8 handwritten digits (1,797 real images, 10 classes).
- ``shapes``: a seeded synthetic 32×32×3 set of coloured lines, curves, squares and circles, the
  32×32×3 example of the CNN primer; deep enough to exercise strided and pooled stacks.
"""

from __future__ import annotations

import numpy as np

from automl_cnn.data.splits import ImageSplits, make_splits

SHAPE_CLASSES = ("line", "curve", "square", "circle")


def load_digits(*, seed: int = 0) -> ImageSplits:
    pixels, y = read_digits()
    # Values are 0..16; map to 0..255 so every dataset shares one uint8 pixel scale.
    x = np.rint(pixels.reshape(-1, 1, 8, 8) * (255.0 / 16.0)).astype(np.uint8)  # (N, 1, 8, 8)
    classes = tuple(str(c) for c in range(10))
    # A quarter of the rest for validation: with fewer images, several candidates score a
    # perfect validation accuracy and the search can no longer tell them apart.
    return make_splits("digits", classes, x, y, seed=seed, flip_ok=False, val_fraction=0.25)


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """(pixels float (1797, 64) in 0..16, labels int64) from the CSV scikit-learn ships.

    Read with numpy from where scikit-learn is installed, without importing it: importing
    ``sklearn.datasets`` costs about as long as importing torch, at every search's start.
    """
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")
    path = (Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" /
            "digits.csv.gz") if spec and spec.submodule_search_locations else None
    if path is None or not path.exists():  # another layout: let scikit-learn find it
        from sklearn.datasets import load_digits as sk_digits

        bunch = sk_digits()
        return bunch.data.astype(np.float64), bunch.target.astype(np.int64)
    table = np.loadtxt(path, delimiter=",", dtype=np.float64)  # (1797, 65): pixels, label
    return table[:, :-1], table[:, -1].astype(np.int64)


def load_shapes(*, seed: int = 0, n_per_class: int = 600, size: int = 32) -> ImageSplits:
    """The synthetic shapes set. The images depend only on ``n_per_class`` and ``size``
    (generated with a fixed seed), so every search sees the same pictures."""
    x, y = render_shapes(n_per_class=n_per_class, size=size, seed=1234)
    return make_splits("shapes", SHAPE_CLASSES, x, y, seed=seed, flip_ok=True)


def render_shapes(*, n_per_class: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(x uint8 (N, 3, size, size), y int64) with classes interleaved."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    n = n_per_class * len(SHAPE_CLASSES)
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    labels = np.arange(n, dtype=np.int64) % len(SHAPE_CLASSES)
    for i, label in enumerate(labels):
        mask = _shape_mask(int(label), rng, xx, yy, size)
        background = rng.uniform(0, 90, size=3)
        colour = rng.uniform(120, 255, size=3)
        noise = rng.normal(0, 12, size=(3, size, size))
        img = background[:, None, None] + mask[None] * (colour - background)[:, None, None]
        images[i] = np.clip(img + noise, 0, 255).astype(np.uint8)
    return images, labels


def _shape_mask(label: int, rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray,
                size: int) -> np.ndarray:
    cx, cy = rng.uniform(0.3 * size, 0.7 * size, size=2)
    r = rng.uniform(0.15 * size, 0.3 * size)
    thick = rng.uniform(1.2, 2.5)
    if label == 0:  # line: a thick straight segment through (cx, cy)
        angle = rng.uniform(0, np.pi)
        dx, dy = np.cos(angle), np.sin(angle)
        along = (xx - cx) * dx + (yy - cy) * dy
        across = -(xx - cx) * dy + (yy - cy) * dx
        return ((np.abs(across) < thick) & (np.abs(along) < 1.4 * r)).astype(np.float32)
    dist = np.hypot(xx - cx, yy - cy)
    if label == 1:  # curve: an open arc of a circle, 90..220 degrees long
        start = rng.uniform(0, 2 * np.pi)
        span = rng.uniform(np.pi / 2, 1.22 * np.pi)
        theta = (np.arctan2(yy - cy, xx - cx) - start) % (2 * np.pi)
        return ((np.abs(dist - r) < thick) & (theta < span)).astype(np.float32)
    if label == 2:  # square: filled, axis-aligned
        return ((np.abs(xx - cx) < r * 0.85) & (np.abs(yy - cy) < r * 0.85)).astype(np.float32)
    return (dist < r).astype(np.float32)  # circle: filled disk
