"""Turn an :class:`ArchSpec` into a plain ``torch.nn.Module``.

This file imports only torch and automl-cnn's pure-Python spec and shape modules, so a found
architecture can be rebuilt anywhere torch is installed.

Example:
    >>> from automl_cnn.arch import ArchSpec, ConvBlock
    >>> model = build_model(ArchSpec(blocks=(ConvBlock(8),)), (1, 8, 8), num_classes=10)
    >>> model(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from automl_cnn.arch import ArchSpec, ConvBlock, HeadSpec
from automl_cnn.shapes import plan_layers


class L2Pool2d(nn.Module):
    """L2 (power-average, p=2) pooling: sqrt of the sum of squares in each window.

    torch's ``LPPool2d`` has an infinite gradient where a window is all zeros (common after
    ReLU), which turns into NaN; the small epsilon here keeps the gradient finite.
    """

    def __init__(self, kernel_size: int, stride: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean_sq = F.avg_pool2d(x * x, self.kernel_size, self.stride)
        return torch.sqrt(mean_sq * (self.kernel_size * self.kernel_size) + self.eps)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


def make_activation(name: str) -> nn.Module:
    return {
        "relu": nn.ReLU,
        "leaky_relu": lambda: nn.LeakyReLU(0.1),
        "gelu": nn.GELU,
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
    }[name]()


def make_pool(block: ConvBlock) -> nn.Module:
    k, s = block.pool_size, block.pool_stride
    return {
        "max": lambda: nn.MaxPool2d(k, s),
        "avg": lambda: nn.AvgPool2d(k, s),
        "l2": lambda: L2Pool2d(k, s),
    }[block.pool]()


def conv_block(block: ConvBlock, in_channels: int) -> nn.Sequential:
    """conv → [bn] → activation → [pool], with named parts (``conv``, ``bn``, ``act``, ``pool``)."""
    parts: OrderedDict[str, nn.Module] = OrderedDict()
    parts["conv"] = nn.Conv2d(in_channels, block.filters, block.kernel, block.stride,
                              block.padding, bias=not block.batch_norm)
    if block.batch_norm:
        parts["bn"] = nn.BatchNorm2d(block.filters)
    parts["act"] = make_activation(block.activation)
    if block.pool != "none":
        parts["pool"] = make_pool(block)
    return nn.Sequential(parts)


def head(spec: HeadSpec, in_features: int, num_classes: int) -> nn.Sequential:
    """[global avg pool] → flatten → ([dropout] → linear → activation)* → [dropout] → linear."""
    parts: OrderedDict[str, nn.Module] = OrderedDict()
    if spec.global_pool == "avg":
        parts["pool"] = nn.AdaptiveAvgPool2d(1)
    parts["flatten"] = nn.Flatten()  # (B, C, H, W) -> (B, C·H·W)
    width = in_features
    for j, out in enumerate(spec.widths, start=1):
        if spec.dropout > 0:
            parts[f"drop{j}"] = nn.Dropout(spec.dropout)
        parts[f"fc{j}"] = nn.Linear(width, out)
        parts[f"act{j}"] = make_activation(spec.activation)
        width = out
    if spec.dropout > 0:
        parts["drop_out"] = nn.Dropout(spec.dropout)
    parts["out"] = nn.Linear(width, num_classes)
    return nn.Sequential(parts)


def build_model(
    spec: ArchSpec, input_shape: tuple[int, int, int], num_classes: int
) -> nn.Sequential:
    """Build the network ``spec`` describes for inputs of shape (C, H, W).

    The result is ``Sequential(features=Sequential(block1, block2, ...), head=Sequential(...))``
    and maps (B, C, H, W) floats in [0, 1]-normalised space to (B, num_classes) logits.
    Raises ``InfeasibleArchitecture`` when the input is too small for the stack.
    """
    plan = plan_layers(spec, input_shape, num_classes)
    blocks: OrderedDict[str, nn.Module] = OrderedDict()
    channels = input_shape[0]
    for i, block in enumerate(spec.blocks, start=1):
        blocks[f"block{i}"] = conv_block(block, channels)
        channels = block.filters
    c, h, w = plan.feature_shape
    in_features = c if spec.head.global_pool == "avg" else c * h * w
    return nn.Sequential(OrderedDict(
        features=nn.Sequential(blocks),
        head=head(spec.head, in_features, num_classes),
    ))
