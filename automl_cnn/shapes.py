"""Shape arithmetic for a conv stack: the single place the output-size rule lives.

``O = floor((W - K + 2P) / S) + 1`` gives the output width of a conv (or pooling) layer with
input width W, kernel K, zero padding P and stride S. :func:`plan_layers` applies it layer by
layer and also tracks the receptive field, parameter count and FLOPs, so the sampler's
validity check, the model builder, the cost model and the diagrams all read the same numbers.
This module imports nothing from torch, so it is cheap to call thousands of times.

Example:
    >>> conv_output_size(32, kernel=5, stride=1, padding=0)
    28
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from automl_cnn.arch import ArchSpec


class InfeasibleArchitecture(ValueError):
    """The architecture cannot run on this input: a kernel does not fit, or a map vanishes."""


def conv_output_size(size: int, *, kernel: int, stride: int, padding: int = 0) -> int:
    """Output length of a conv/pool window sliding over ``size`` inputs.

    Raises :class:`InfeasibleArchitecture` when the kernel does not fit the padded input.
    """
    padded = size + 2 * padding
    if kernel > padded:
        raise InfeasibleArchitecture(
            f"kernel {kernel} does not fit the padded input {size}+2×{padding}={padded}"
        )
    return (padded - kernel) // stride + 1


@dataclass(frozen=True)
class LayerInfo:
    """One row of a layer plan. ``out_shape`` is (C, H, W) for maps, (N,) for vectors."""

    name: str
    kind: str  # input | conv | pool | global_pool | flatten | linear
    out_shape: tuple[int, ...]
    receptive_field: int  # side of the input square one output unit sees (maps only)
    params: int
    flops: int  # 2 × multiply-accumulates of conv and linear layers
    kernel: int = 0
    stride: int = 0
    padding: int = 0

    @property
    def volume(self) -> str:
        """The classic ``W×H×D`` notation of the output volume."""
        if len(self.out_shape) == 3:
            c, h, w = self.out_shape
            return f"{w}×{h}×{c}"
        return f"{self.out_shape[0]}"


@dataclass(frozen=True)
class LayerPlan:
    """Every layer's output volume, receptive field, parameters and FLOPs."""

    layers: tuple[LayerInfo, ...]

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def flops(self) -> int:
        return sum(layer.flops for layer in self.layers)

    @property
    def receptive_field(self) -> int:
        """The network's receptive field: the side, in input pixels, of the square one unit
        of the conv stack's last feature map sees (the figure the CLI, ``best``,
        ``summary.json`` and MLflow report).

        It measures what the convolutions and pooling can relate, so it may be smaller than
        the image (one 3×3 conv: 3) or larger (deep stacks overhang the padding). The head's
        rows show at least the image side, since global pooling or flattening joins every
        position; that says nothing about the architecture, so it is not used here.

        Example:
            >>> from automl_cnn.arch import ConvBlock, HeadSpec
            >>> spec = ArchSpec(blocks=(ConvBlock(8, kernel=3, padding=1),), head=HeadSpec())
            >>> plan_layers(spec, (1, 32, 32), num_classes=10).receptive_field
            3
        """
        maps = [layer for layer in self.layers if len(layer.out_shape) == 3]
        return maps[-1].receptive_field

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """(C, H, W) leaving the conv stack, before the head."""
        maps = [layer for layer in self.layers if len(layer.out_shape) == 3]
        return maps[-1].out_shape  # type: ignore[return-value]

    def as_rows(self) -> list[dict[str, object]]:
        return [
            {
                "layer": layer.name,
                "kind": layer.kind,
                "output": layer.volume,
                "receptive_field": layer.receptive_field,
                "params": layer.params,
                "flops": layer.flops,
            }
            for layer in self.layers
        ]

    def format_table(self) -> str:
        """The plan as an aligned text table (what ``automl-cnn search`` and MLflow show)."""
        return format_plan_rows(self.as_rows())


def format_plan_rows(rows: list[dict[str, Any]] | tuple[Any, ...]) -> str:
    """Rows of :meth:`LayerPlan.as_rows` (as stored with a trial) as an aligned text table."""
    header = ("layer", "output W×H×D", "receptive field", "params", "FLOPs")
    lines = [(r["layer"], r["output"], str(r["receptive_field"]), f"{r['params']:,}",
              f"{r['flops']:,}") for r in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *lines)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 2 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join(["  " + fmt.format(*header)] + ["  " + fmt.format(*line) for line in lines])


@dataclass
class _Cursor:
    """Running state while walking the stack: shape, receptive field and jump (input stride)."""

    c: int
    h: int
    w: int
    rf: int = 1
    jump: int = 1

    def slide(self, name: str, *, kernel: int, stride: int, padding: int) -> None:
        try:
            self.h = conv_output_size(self.h, kernel=kernel, stride=stride, padding=padding)
            self.w = conv_output_size(self.w, kernel=kernel, stride=stride, padding=padding)
        except InfeasibleArchitecture as exc:
            raise InfeasibleArchitecture(f"{name}: {exc}") from None
        self.rf += (kernel - 1) * self.jump
        self.jump *= stride


def plan_layers(
    spec: ArchSpec, input_shape: tuple[int, int, int], num_classes: int
) -> LayerPlan:
    """Walk ``spec`` over an input of shape (C, H, W) and describe every layer.

    Raises :class:`InfeasibleArchitecture` (with the layer and the reason) when any layer's
    window does not fit its input.
    """
    c, h, w = input_shape
    cur = _Cursor(c, h, w)
    rows = [LayerInfo("input", "input", (c, h, w), 1, 0, 0)]
    for i, block in enumerate(spec.blocks, start=1):
        c_in = cur.c
        cur.slide(f"block{i}.conv", kernel=block.kernel, stride=block.stride,
                  padding=block.padding)
        cur.c = block.filters
        weights = block.kernel * block.kernel * c_in * block.filters
        # With batch norm the conv bias is redundant (BN's shift replaces it): 2 params/channel.
        extra = 2 * block.filters if block.batch_norm else block.filters
        rows.append(LayerInfo(
            f"block{i}.conv", "conv", (cur.c, cur.h, cur.w), cur.rf, weights + extra,
            2 * weights * cur.h * cur.w, block.kernel, block.stride, block.padding,
        ))
        if block.pool != "none":
            cur.slide(f"block{i}.pool", kernel=block.pool_size, stride=block.pool_stride,
                      padding=0)
            rows.append(LayerInfo(
                f"block{i}.pool", "pool", (cur.c, cur.h, cur.w), cur.rf, 0, 0,
                block.pool_size, block.pool_stride, 0,
            ))
    # A head unit sees the whole image, or more: the stack's field can overhang the padding.
    rows.extend(_plan_head(spec, cur, num_classes, max(h, w, cur.rf)))
    return LayerPlan(tuple(rows))


def _plan_head(spec: ArchSpec, cur: _Cursor, num_classes: int, image_side: int) -> list[LayerInfo]:
    head = spec.head
    if head.global_pool == "avg":
        width = cur.c
        rows = [LayerInfo("head.pool", "global_pool", (width,), image_side, 0, 0)]
    else:
        width = cur.c * cur.h * cur.w
        rows = [LayerInfo("head.flatten", "flatten", (width,), image_side, 0, 0)]
    names = [f"head.fc{j}" for j in range(1, len(head.widths) + 1)] + ["head.out"]
    for name, out in zip(names, (*head.widths, num_classes)):
        rows.append(LayerInfo(name, "linear", (out,), image_side, width * out + out,
                              2 * width * out))
        width = out
    return rows


def check_feasible(
    spec: ArchSpec, input_shape: tuple[int, int, int], num_classes: int
) -> str | None:
    """The reason ``spec`` cannot run on ``input_shape``, or None when it can."""
    try:
        plan_layers(spec, input_shape, num_classes)
    except InfeasibleArchitecture as exc:
        return str(exc)
    return None
