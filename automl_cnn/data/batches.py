"""Batches sliced from tensors that already live on the training device.

No per-sample Python work: shuffling is one ``randperm``, augmentation is batched tensor ops
(random crop with zero padding, horizontal flip), and uint8 pixels become [0, 1] floats per
batch. Passed straight to Lightning's ``fit`` as an iterable.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F


def augment_batch(
    x: torch.Tensor, *, crop_padding: int, flip: bool, generator: torch.Generator
) -> torch.Tensor:
    """Random crop (pad by ``crop_padding`` with zeros, crop back) and random horizontal flip.

    ``x`` is (B, C, H, W) float; every image gets its own offset and flip.
    """
    b, _, h, w = x.shape
    if crop_padding > 0:
        p = crop_padding
        padded = F.pad(x, (p, p, p, p))  # (B, C, H+2p, W+2p)
        dy = torch.randint(0, 2 * p + 1, (b,), device=x.device, generator=generator)
        dx = torch.randint(0, 2 * p + 1, (b,), device=x.device, generator=generator)
        rows = (torch.arange(h, device=x.device)[None, :] + dy[:, None])[:, :, None]  # (B, H, 1)
        cols = (torch.arange(w, device=x.device)[None, :] + dx[:, None])[:, None, :]  # (B, 1, W)
        batch = torch.arange(b, device=x.device)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # (B, C, H, W)
    if flip:
        mask = torch.rand(b, device=x.device, generator=generator) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x


class DeviceBatches:
    """An epoch's worth of ``(x, y)`` batches cut from device-resident tensors.

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
        self.generator = torch.Generator(device=x.device)
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.y)
        order = (torch.randperm(n, device=self.x.device, generator=self.generator)
                 if self.shuffle else None)
        for i in range(len(self)):
            sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
            idx = order[sl] if order is not None else sl
            xb = self.x[idx].float().div_(255.0)  # uint8 (B, C, H, W) -> float in [0, 1]
            if self.crop_padding or self.flip:
                xb = augment_batch(xb, crop_padding=self.crop_padding, flip=self.flip,
                                   generator=self.generator)
            yield xb, self.y[idx]
