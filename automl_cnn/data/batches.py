"""Training batches, from tensors on the training device or streamed from image files.

:class:`DeviceBatches` slices tensors that already live on the training device: no per-sample
Python work; shuffling is one ``randperm``, augmentation is batched tensor ops (random crop
with zero padding, horizontal flip), and uint8 pixels become [0, 1] floats per batch.
:class:`StreamBatches` yields the very same batches for a set too big for memory, decoding
images in DataLoader workers. :func:`make_batches` picks one; both go straight to Lightning's
``fit`` as iterables.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader

from automl_cnn.data.folder import ImageFiles
from automl_cnn.data.splits import ImageSplits

Index = slice | torch.Tensor  # a chunk's rows: a slice in order, or shuffled indices


def augment_batch(
    x: torch.Tensor, *, crop_padding: int, flip: bool, generator: torch.Generator
) -> torch.Tensor:
    """Random crop (pad by ``crop_padding`` with zeros, crop back) and random horizontal flip.

    ``x`` is (B, C, H, W) float; every image gets its own offset and flip. Both are folded
    into one gather of source pixels (plus zeroing those that fall in the padding), so the
    images are read once, with no padded or flipped copies in between.
    """
    if not crop_padding and not flip:
        return x
    b, _, h, w = x.shape
    dev = x.device
    rows = torch.arange(h, device=dev).expand(b, h)  # (B, H) source row of each output row
    cols = torch.arange(w, device=dev).expand(b, w)  # (B, W) source column of each column
    if crop_padding:
        p = crop_padding
        for_rows, for_cols = (torch.randint(0, 2 * p + 1, (b,), device=dev, generator=generator) - p
                              for _ in range(2))  # offsets drawn rows first, as before
        rows, cols = rows + for_rows[:, None], cols + for_cols[:, None]
    if flip:  # mirroring the crop = reading its columns right to left
        mirror = torch.rand(b, device=dev, generator=generator) < 0.5
        cols = torch.where(mirror[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=dev)[:, None, None]
    out = x.permute(0, 2, 3, 1)[batch, rows.clamp(0, h - 1)[:, :, None],
                                cols.clamp(0, w - 1)[:, None, :]]  # (B, H, W, C)
    if crop_padding:
        inside = (((rows >= 0) & (rows < h))[:, :, None]
                  & ((cols >= 0) & (cols < w))[:, None, :])  # (B, H, W): not in the padding
        out = out * inside[..., None]
    return out.permute(0, 3, 1, 2)  # (B, C, H, W)


#: Float bytes converted and augmented in one go: a chunk of many small batches costs a
#: handful of tensor ops instead of a handful per batch (per-op overhead dominates 8×8
#: images); kept cache-sized, since larger chunks of large images ran slower on a CPU.
CHUNK_BYTES = 120 * 1024


class DeviceBatches:
    """An epoch's worth of ``(x, y)`` batches cut from device-resident tensors.

    Rows are gathered, scaled to [0, 1] and augmented a chunk of batches at a time (up to
    :data:`CHUNK_BYTES` of floats); each batch is then a view of its chunk.

    Example:
        >>> xs = torch.zeros(10, 1, 8, 8, dtype=torch.uint8); ys = torch.arange(10)
        >>> [len(y) for _, y in DeviceBatches(xs, ys, batch_size=4)]
        [4, 4, 2]
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        crop_padding: int = 0,
        flip: bool = False,
        drop_last: bool = False,
    ) -> None:
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.crop_padding = crop_padding
        self.flip = flip
        self.drop_last = drop_last and len(y) > batch_size
        self.generator = torch.Generator(device=y.device)
        self.generator.manual_seed(seed)
        image_bytes = 4 * max(1, int(torch.Size(x.shape[1:]).numel()))
        self.batches_per_chunk = max(1, CHUNK_BYTES // (image_bytes * batch_size))

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = (torch.randperm(len(self.y), device=self.y.device, generator=self.generator)
                 if self.shuffle else None)
        chunks = self._chunk_rows()
        index = [order[rows] if order is not None else rows for rows in chunks]
        for idx, xc in zip(index, self._uint8_chunks(index)):
            xc = xc.float().div_(255.0)  # uint8 (R, C, H, W) -> float in [0, 1]
            if self.crop_padding or self.flip:
                xc = augment_batch(xc, crop_padding=self.crop_padding, flip=self.flip,
                                   generator=self.generator)
            yc = self.y[idx]
            for i in range(0, len(yc), self.batch_size):
                yield xc[i:i + self.batch_size], yc[i:i + self.batch_size]

    def _chunk_rows(self) -> list[slice]:
        """Row ranges of the epoch's (shuffled) order, each a whole number of batches."""
        n, step = len(self.y), self.batches_per_chunk * self.batch_size
        end = len(self) * self.batch_size if self.drop_last else n
        return [slice(i, min(i + step, end)) for i in range(0, end, step)]

    def _uint8_chunks(self, index: list[Index]) -> Iterator[torch.Tensor]:
        for idx in index:
            yield self.x[idx]


class StreamBatches(DeviceBatches):
    """:class:`DeviceBatches` over :class:`ImageFiles`: the same order, augmentation and
    pixels, but images are decoded from disk by ``workers`` DataLoader processes, a batch at
    a time, and moved to the device, so the set never has to fit in memory.

    Example:
        >>> batches = StreamBatches(files, labels, batch_size=64, shuffle=True)  # doctest: +SKIP
    """

    def __init__(self, x: ImageFiles, y: torch.Tensor, *, workers: int | None = None,
                 **options: Any) -> None:
        super().__init__(x, y, **options)  # type: ignore[arg-type]
        self.workers = default_workers() if workers is None else workers
        self._sampler = _BatchList()
        # Workers start each epoch: persistent ones, left to the garbage collector when a
        # trial ends, each stalled the search ~5 s in DataLoader's shutdown join.
        self.loader = DataLoader(
            x.to("cpu"), batch_sampler=self._sampler, num_workers=self.workers,
            pin_memory=x.device.type == "cuda", prefetch_factor=4 if self.workers else None)

    def _uint8_chunks(self, index: list[Index]) -> Iterator[torch.Tensor]:
        bs, n = self.batch_size, len(self.y)
        rows = [list(range(n))[i] if isinstance(i, slice) else i.tolist() for i in index]
        self._sampler.batches = [r[j:j + bs] for r in rows for j in range(0, len(r), bs)]
        loaded = iter(self.loader)  # uint8 (B, C, H, W) batches, collated by the workers
        for r in rows:
            parts = [next(loaded) for _ in range(-(-len(r) // bs))]
            yield torch.cat(parts).to(self.x.device, non_blocking=True)


class _BatchList:
    """A DataLoader batch sampler replaying the index lists set for the current epoch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def default_workers() -> int:
    """Decoding processes for streamed sets: the cores left after the training process."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def make_batches(data: ImageSplits, split: str, *, batch_size: int, shuffle: bool = False,
                 seed: int = 0, crop_padding: int = 0, flip: bool = False,
                 drop_last: bool = False, workers: int | None = None) -> DeviceBatches:
    """Batches of ``split`` ("train", "val" or "test"): sliced on the device when its images
    are tensors, streamed through DataLoader workers when they are :class:`ImageFiles`.

    Example:
        >>> data = load_dataset("digits")  # doctest: +SKIP
        >>> xb, yb = next(iter(make_batches(data, "train", batch_size=64)))  # doctest: +SKIP
        >>> xb.shape  # doctest: +SKIP
        torch.Size([64, 1, 8, 8])
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, but got {split=}.")
    x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
    options = dict(batch_size=batch_size, shuffle=shuffle, seed=seed, crop_padding=crop_padding,
                   flip=flip, drop_last=drop_last)
    if isinstance(x, ImageFiles):
        return StreamBatches(x, y, workers=workers, **options)
    return DeviceBatches(x, y, **options)  # type: ignore[arg-type]
