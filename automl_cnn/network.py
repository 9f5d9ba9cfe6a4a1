"""A network found by automl-cnn, in plain PyTorch: this file imports only torch and the
standard library.

automl-cnn builds every network with this file, and every export folder ships it unchanged as
``model.py`` beside ``arch.json`` (the architecture), ``meta.json`` (input shape, classes) and
``model.safetensors`` (the weights). Nothing in it is generated, so the same code that trained
the weights rebuilds them. Usage, from an export folder:

    import torch
    from model import load
    net = load(".")                       # eval mode, weights from ./model.safetensors
    logits = net(torch.rand(4, C, H, W))  # float images scaled to [0, 1] -> (4, classes)

``build(arch, input_shape, num_classes)`` returns the untrained network of an arch.json dict.
"""

from __future__ import annotations

import json
import struct
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

SPEC_VERSION = 1  # the arch.json version this file reads (automl_cnn.arch.SPEC_VERSION)


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


#: Activation name (conv blocks and head) -> constructor.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.1),
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
}

#: Pooling name -> constructor from (kernel size, stride); "none" means no pooling layer.
POOLS: dict[str, Callable[[int, int], nn.Module]] = {
    "max": nn.MaxPool2d,
    "avg": nn.AvgPool2d,
    "l2": L2Pool2d,
}


def lookup(table: dict[str, Any], kind: str, name: str) -> Any:
    """``table[name]``, or a ValueError that lists the valid names."""
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}. Valid {kind}s: {', '.join(sorted(table))}.")
    return table[name]


def conv_block(block: dict[str, Any], in_channels: int) -> nn.Sequential:
    """conv → [bn] → activation → [pool], with named parts (``conv``, ``bn``, ``act``, ``pool``)."""
    parts: OrderedDict[str, nn.Module] = OrderedDict()
    parts["conv"] = nn.Conv2d(in_channels, block["filters"], block["kernel"], block["stride"],
                              block["padding"], bias=not block["batch_norm"])
    if block["batch_norm"]:
        parts["bn"] = nn.BatchNorm2d(block["filters"])
    parts["act"] = lookup(ACTIVATIONS, "activation", block["activation"])()
    if block["pool"] != "none":
        pool = lookup(POOLS, "pool", block["pool"])
        parts["pool"] = pool(block["pool_size"], block["pool_stride"])
    return nn.Sequential(parts)


def conv_stack(blocks: list[dict[str, Any]], in_channels: int) -> nn.Sequential:
    """``Sequential(block1, block2, ...)``: (B, C, H, W) -> (B, C', H', W')."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i, block in enumerate(blocks, start=1):
        layers[f"block{i}"] = conv_block(block, in_channels)
        in_channels = block["filters"]
    return nn.Sequential(layers)


def head(spec: dict[str, Any], in_features: int, num_classes: int) -> nn.Sequential:
    """[global avg pool] → flatten → ([dropout] → linear → activation)* → [dropout] → linear."""
    parts: OrderedDict[str, nn.Module] = OrderedDict()
    if spec["global_pool"] == "avg":
        parts["pool"] = nn.AdaptiveAvgPool2d(1)
    parts["flatten"] = nn.Flatten()  # (B, C, H, W) -> (B, C·H·W)
    width = in_features
    for j, out in enumerate(spec["widths"], start=1):
        if spec["dropout"] > 0:
            parts[f"drop{j}"] = nn.Dropout(spec["dropout"])
        parts[f"fc{j}"] = nn.Linear(width, out)
        parts[f"act{j}"] = lookup(ACTIVATIONS, "activation", spec["activation"])()
        width = out
    if spec["dropout"] > 0:
        parts["drop_out"] = nn.Dropout(spec["dropout"])
    parts["out"] = nn.Linear(width, num_classes)
    return nn.Sequential(parts)


def flat_width(arch: dict[str, Any], input_shape: tuple[int, int, int]) -> int:
    """Width of the head's flattened input, found by running the conv stack on the ``meta``
    device (shapes only: no memory, no arithmetic, no random numbers drawn)."""
    with torch.device("meta"):
        stack = conv_stack(arch["blocks"], input_shape[0]).eval()  # BatchNorm takes 1 image
        try:
            c, h, w = stack(torch.empty(1, *input_shape)).shape[1:]
        except RuntimeError as exc:
            raise ValueError(f"input {tuple(input_shape)} is too small for this conv stack "
                             f"({exc}).") from None
    return int(c) if arch["head"]["global_pool"] == "avg" else int(c * h * w)


def build(arch: dict[str, Any], input_shape: tuple[int, int, int],
          num_classes: int) -> nn.Module:
    """The untrained network of ``arch`` (an arch.json dict) for (C, H, W) inputs.

    ``Sequential(features=Sequential(block1, ...), head=Sequential(...))`` maps (B, C, H, W)
    floats scaled to [0, 1] to (B, num_classes) logits; an arch with ``members`` is an
    :class:`Ensemble` of this network and each member.

    Example:
        >>> arch = json.loads(Path("arch.json").read_text())  # doctest: +SKIP
        >>> build(arch, (1, 8, 8), 10)(torch.zeros(2, 1, 8, 8)).shape  # doctest: +SKIP
        torch.Size([2, 10])
    """
    if arch.get("version") != SPEC_VERSION:
        raise ValueError(f"arch.json has spec version {arch.get('version')!r}, but this file "
                         f"reads version {SPEC_VERSION}; export the model again.")
    if arch.get("members"):
        lead = {k: v for k, v in arch.items() if k != "members"}
        return Ensemble([build(a, input_shape, num_classes)
                         for a in (lead, *arch["members"])])
    width = flat_width(arch, input_shape)
    kind = FlipAveraged if arch["head"].get("tta", "none") == "flip" else nn.Sequential
    return kind(OrderedDict(
        features=conv_stack(arch["blocks"], input_shape[0]),
        head=head(arch["head"], width, num_classes),
    ))


class FlipAveraged(nn.Sequential):
    """The network that, in eval mode, averages its logits over each image and its mirror
    image (test-time augmentation, for data whose labels survive a horizontal flip); training
    sees each image once. The parameters and state dict are the plain network's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.features(x))  # not super(): TorchScript cannot script it
        if self.training:
            return logits
        return (logits + self.head(self.features(torch.flip(x, dims=[3])))) / 2


class Ensemble(nn.Module):
    """Several trained networks as one: the output is the mean of their log-probabilities
    (log-softmax of each one's logits), so a network that is more confident does not outvote
    the others by the scale of its logits; ``argmax`` of it is the ensemble's prediction."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(())
        for member in self.members:  # a plain loop: TorchScript and ONNX export it
            total = total + F.log_softmax(member(x), dim=1)
        return total / len(self.members)


_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a .safetensors file with torch alone. Format: an 8-byte little-endian header
    length, a JSON header (name -> dtype, shape, byte offsets), then the raw tensor bytes."""
    data = Path(path).read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + size])
    header.pop("__metadata__", None)
    body = data[8 + size:]
    tensors = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        dtype = lookup(_DTYPES, "safetensors dtype", info["dtype"])
        flat = (torch.frombuffer(bytearray(body[start:end]), dtype=dtype) if end > start
                else torch.empty(0, dtype=dtype))
        tensors[name] = flat.reshape(info["shape"])
    return tensors


def load(folder: str | Path = ".", *, device: str = "cpu") -> nn.Module:
    """The trained network in ``folder`` (arch.json, meta.json, model.safetensors), eval mode.

    Example:
        >>> net = load("exported")  # doctest: +SKIP
    """
    folder = Path(folder)
    arch = json.loads((folder / "arch.json").read_text())
    meta = json.loads((folder / "meta.json").read_text())
    net = build(arch, tuple(meta["input_shape"]), int(meta["num_classes"]))
    weights = folder / "model.safetensors"
    if not weights.exists():
        raise FileNotFoundError(f"{weights} does not exist; load() reads the weights from "
                                "model.safetensors next to arch.json.")
    try:
        net.load_state_dict(read_safetensors(weights))
    except RuntimeError as exc:
        raise ValueError(f"{weights} does not fit the network of {folder / 'arch.json'}: "
                         f"keep arch.json, meta.json and the weights of one export together "
                         f"({str(exc).splitlines()[0]})") from None
    return net.to(device).eval()
