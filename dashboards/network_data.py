"""Trained network → plain arrays: first-layer filters and activation maps, tiled as mosaics.

The weights come from a kept checkpoint (``models/trial-NNNN``), the images from the search's own
validation split, so the pictures show what the search actually found.

Example:
    >>> view = network_view(run_dir, 10, load_config(study))
    >>> view.filters.shape  # (rows·(K+1)−1, cols·(K+1)−1) mosaic, NaN gaps
    (11, 23)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from automl_cnn.checkpoint import load_checkpoint
from automl_cnn.config import SearchConfig
from automl_cnn.rundir import RunDir

if TYPE_CHECKING:
    from automl_cnn.data import ImageSplits


def tile(images: np.ndarray, *, columns: int) -> np.ndarray:
    """Tile (N, h, w) images row-major into one (rows·(h+1)−1, columns·(w+1)−1) array with a
    NaN gap between tiles (drawn blank)."""
    n, h, w = images.shape
    rows = max(math.ceil(n / columns), 1)
    out = np.full((rows * (h + 1) - 1, columns * (w + 1) - 1), np.nan, dtype=np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        out[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = image
    return out


def normalise_each(images: np.ndarray) -> np.ndarray:
    """Scale every image (first axis) to [0, 1] on its own, so weak filters stay visible."""
    flat = images.reshape(len(images), -1)
    low, high = flat.min(axis=1), flat.max(axis=1)
    span = np.where(high > low, high - low, 1.0)
    shape = (-1,) + (1,) * (images.ndim - 1)
    return (images - low.reshape(shape)) / span.reshape(shape)


def first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


def filter_images(model: nn.Module) -> np.ndarray:
    """First-layer filters as (F, K, K) greyscale images (input channels averaged) or
    (F, K, K, 3) colour images when the input has 3 channels; each scaled to [0, 1]."""
    weight = first_conv(model).weight.detach().cpu().numpy()  # (F, C_in, K, K)
    if weight.shape[1] == 3:
        return normalise_each(weight.transpose(0, 2, 3, 1))  # (F, K, K, 3)
    return normalise_each(weight.mean(axis=1))  # (F, K, K)


@torch.no_grad()
def block_outputs(model: nn.Module, images: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """Each conv block's output for uint8 ``images`` (B, C, H, W), scaled as in training."""
    x = images.float().div(255.0)  # the network sees pixels in [0, 1]
    outputs = []
    for name, block in model.features.named_children():  # type: ignore[union-attr]
        x = block(x)  # (B, C_i, H_i, W_i)
        outputs.append((name, x))
    return outputs


@dataclass(frozen=True)
class ActivationMaps:
    layer: str
    inputs: np.ndarray  # (N, H, W) input images in [0, 1] (channels averaged)
    maps: np.ndarray  # (N, C, h, w) the layer's activations, each map scaled to [0, 1]
    labels: list[str]


@dataclass(frozen=True)
class NetworkView:
    trial: int
    filters: np.ndarray  # (F, K, K) or (F, K, K, 3)
    activations: list[ActivationMaps]  # first block, and the last one when there are several


def activation_maps(model: nn.Module, images: torch.Tensor, labels: list[str], *,
                    channels: int = 8) -> list[ActivationMaps]:
    outputs = block_outputs(model, images)
    keep = [outputs[0]] + ([outputs[-1]] if len(outputs) > 1 else [])
    inputs = images.float().div(255.0).mean(dim=1).cpu().numpy()
    result = []
    for name, out in keep:
        maps = out[:, :channels].cpu().numpy()  # (N, C, h, w)
        n, c = maps.shape[:2]
        scaled = normalise_each(maps.reshape(n * c, *maps.shape[2:])).reshape(maps.shape)
        result.append(ActivationMaps(name, inputs, scaled, labels))
    return result


def network_view(run_dir: Path, trial: int, config: SearchConfig, *,
                 images: int = 4, data: ImageSplits | None = None) -> NetworkView:
    """Load trial ``trial``'s kept weights and show them ``images`` validation images of the
    search's own dataset: ``data`` when the caller holds it (a search that just ended), else
    loaded as the search loaded it.

    Raises ``CheckpointError`` when the trial's weights were not kept.
    """
    from automl_cnn.data import load_dataset

    model, _, _ = load_checkpoint(RunDir(run_dir).trial_folder(trial))
    sizing = {k: getattr(config, k) for k in ("image_size", "train_subset")
              if getattr(config, k, None) is not None}
    if data is None:
        data = load_dataset(config.dataset, seed=config.seed, **sizing)
    picks = _one_per_class(data.y_val.cpu(), images)
    x = data.x_val[picks]
    x = x.cpu() if isinstance(x, torch.Tensor) else x  # the weights load on the CPU
    labels = [str(data.classes[int(data.y_val[i])]) for i in picks]
    return NetworkView(trial, filter_images(model), activation_maps(model, x, labels))


def _one_per_class(labels: torch.Tensor, n: int) -> list[int]:
    """The first validation image of each of the first ``n`` classes seen (varied examples)."""
    seen: dict[int, int] = {}
    for i, label in enumerate(labels.tolist()):
        seen.setdefault(int(label), i)
        if len(seen) == n:
            break
    return sorted(seen.values())
