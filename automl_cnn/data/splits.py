"""The typed value every dataset loader returns, and the deterministic splitter."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from automl_cnn.data.formats import DatasetError

#: Images a class needs so that training, validation and the carved test split each get one.
MIN_PER_CLASS = 5


@dataclass(frozen=True, eq=False)
class ImageSplits:
    """Train / validation / test images as compact tensors.

    Images are uint8 (N, C, H, W) holding pixel values 0..255; the network sees them scaled to
    [0, 1]. Labels are int64 class indices into ``classes``. The test split is never read by the
    search: only the final evaluation of the best model touches it.
    """

    name: str
    classes: tuple[str, ...]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    flip_ok: bool = True  # whether a horizontally flipped image keeps its label

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.x_train.shape[1:]
        return (int(c), int(h), int(w))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}

    def to(self, device: torch.device | str) -> ImageSplits:
        """The same splits with every tensor moved to ``device`` (done once per search)."""
        moved = {k: getattr(self, k).to(device) for k in
                 ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
        return ImageSplits(self.name, self.classes, flip_ok=self.flip_ok, **moved)


def stratified_split(
    y: np.ndarray, fraction: float, *, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held_out) with ``fraction`` of every class held out, reproducibly."""
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        held.append(idx[: int(round(len(idx) * fraction))])
    held_out = np.sort(np.concatenate(held)) if held else np.array([], dtype=np.int64)
    mask = np.ones(len(y), dtype=bool)
    mask[held_out] = False
    return np.flatnonzero(mask), held_out


def make_splits(
    name: str,
    classes: tuple[str, ...],
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    flip_ok: bool = True,
) -> ImageSplits:
    """Split (x uint8 NCHW, y) into train/val/test.

    The test split is the dataset's own when ``test`` is given, else carved with a fixed seed
    (so it never moves between searches); validation is carved from the rest with ``seed``.
    """
    if test is None:
        rest, held = stratified_split(y, test_fraction, seed=0)
        test = (x[held], y[held])
        x, y = x[rest], y[rest]
    train_idx, val_idx = stratified_split(y, val_fraction, seed=seed)

    def t(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(dtype)

    return ImageSplits(
        name=name, classes=tuple(classes), flip_ok=flip_ok,
        x_train=t(x[train_idx], torch.uint8), y_train=t(y[train_idx], torch.int64),
        x_val=t(x[val_idx], torch.uint8), y_val=t(y[val_idx], torch.int64),
        x_test=t(test[0], torch.uint8), y_test=t(test[1], torch.int64),
    )


def check_measurable(splits: ImageSplits) -> ImageSplits:
    """``splits`` itself, or a :class:`DatasetError` when a split is too small to measure a
    model: at least two classes must have images, each of them needs an image in training and
    in validation, and the test split must not be empty. A class name with no image at all
    (a placeholder in ``classes.txt``) is allowed and ignored.

    With the default fractions (20 % test, then 15 % of the rest for validation, rounded per
    class) that takes 5 images per class, or 4 per class beside the dataset's own test split.

    Example:
        >>> y = torch.tensor([0, 1, 0, 1])
        >>> x = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
        >>> check_measurable(ImageSplits("toy", ("a", "b"), x, y, x, y, x, y)).name
        'toy'
    """
    n = splits.num_classes
    counts = {k: torch.bincount(getattr(splits, f"y_{k}").cpu(), minlength=n)[:n]
              for k in ("train", "val", "test")}
    total = counts["train"] + counts["val"] + counts["test"]
    present = [c for c in range(n) if total[c] > 0]
    per_class = ", ".join(f"{splits.classes[c]} {int(total[c])}"
                          for c in sorted(present, key=lambda c: int(total[c]))[:12])
    if len(present) < 2:
        raise DatasetError(f"{splits.name}: only one class has images ({per_class}); a "
                           "classifier needs images of at least two classes.")
    for split, what in (("train", "training"), ("val", "validation")):
        empty = [splits.classes[c] for c in present if counts[split][c] == 0]
        if empty:
            raise DatasetError(
                f"{splits.name}: too few images to measure a model: the {what} split holds no "
                f"image of class {empty[0]!r}{_more(empty)} (images per class, fewest first: "
                f"{per_class}). Each class needs at least {MIN_PER_CLASS} images ("
                f"{MIN_PER_CLASS - 1} beside the dataset's own test split); add images to the "
                "small classes or remove them.")
    if int(counts["test"].sum()) == 0:
        raise DatasetError(f"{splits.name}: the test split is empty, so no test accuracy can "
                           f"be measured (images per class: {per_class}). Add images.")
    return splits



def _more(names: list[str]) -> str:
    return f" and {len(names) - 1} more" if len(names) > 1 else ""
