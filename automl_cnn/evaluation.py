"""Score a trained network: on tensors (:func:`evaluate`) or from a checkpoint folder
(:func:`evaluate_checkpoint`), and the train + validation join used by final fits and retrains.

Imports torch but not Lightning, so scoring a kept model costs no trainer import.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from automl_cnn.device import Device

if TYPE_CHECKING:
    from automl_cnn.data import ImageSplits


def scoring_batch(where: torch.device | str) -> int:
    """Images per forward pass when scoring: cache-sized on a CPU, where batch 128 scored
    clutter's test split with the VGG-style baseline at 1.4x the images/s of batch 512 and 1.5x
    that of 1,024 (benchmarks/bench_layout.py)."""
    return 128 if torch.device(where).type == "cpu" else 1024


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
             batch_size: int | None = None) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` on uint8 images ``x`` (on model's device),
    :func:`scoring_batch` images at a time unless ``batch_size`` says otherwise."""
    model.eval()
    where = next(model.parameters()).device
    batch_size = batch_size or scoring_batch(where)
    correct, loss, n = 0, 0.0, len(y)
    for i in range(0, n, batch_size):
        # no-ops when the split already lives on the model's device; files stream from disk
        xb = x[i:i + batch_size].to(where).float().div_(255.0)
        yb = y[i:i + batch_size].to(where)
        logits = model(xb).float()
        loss += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += int((logits.argmax(1) == yb).sum())
    return {"accuracy": correct / max(n, 1), "loss": loss / max(n, 1)}


def with_val_in_train(data: ImageSplits) -> ImageSplits:
    """The same splits with the validation images appended to the training images."""
    x_train, x_val = data.x_train, data.x_val
    if isinstance(x_train, torch.Tensor):
        x = torch.cat([x_train, x_val])
    else:  # image files streamed from disk: join the two lists of paths
        x = replace(x_train, paths=tuple(x_train.paths) + tuple(x_val.paths))
    return replace(data, x_train=x, y_train=torch.cat([data.y_train, data.y_val]))


def evaluate_checkpoint(folder: Path, data: ImageSplits, device: Device | str,
                        *, split: str = "test") -> dict[str, float]:
    """Accuracy and mean loss of the checkpoint in ``folder`` on ``data``'s ``split`` (test).

    Example:
        >>> evaluate_checkpoint("runs/x/models/trial-0003", data, "cpu")  # doctest: +SKIP
        {'accuracy': 0.97, 'loss': 0.11}
    """
    from automl_cnn.checkpoint import CheckpointError, load_checkpoint

    where = device.torch_device if isinstance(device, Device) else device
    model, _, meta = load_checkpoint(Path(folder), device=where)
    if tuple(meta["input_shape"]) != data.input_shape or meta["num_classes"] != data.num_classes:
        raise CheckpointError(
            f"checkpoint {folder} takes {tuple(meta['input_shape'])} images in "
            f"{meta['num_classes']} classes, but dataset {data.name!r} has {data.input_shape} in "
            f"{data.num_classes}; evaluate it on the dataset it was trained on.")
    return evaluate(model, getattr(data, f"x_{split}"), getattr(data, f"y_{split}"))


__all__ = ["evaluate", "evaluate_checkpoint", "scoring_batch", "with_val_in_train"]
