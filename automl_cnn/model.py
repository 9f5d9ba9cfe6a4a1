"""Turn an :class:`ArchSpec` into a plain ``torch.nn.Module``.

The layers are built by :mod:`automl_cnn.network`, a torch-only file that every export ships
unchanged as ``model.py``; this module checks the shapes first with the one shape rule
(:func:`automl_cnn.shapes.plan_layers`), so an impossible input raises
``InfeasibleArchitecture`` with the layer that breaks.

Example:
    >>> from automl_cnn.arch import ArchSpec, ConvBlock
    >>> model = build_model(ArchSpec(blocks=(ConvBlock(8),)), (1, 8, 8), num_classes=10)
    >>> model(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import torch  # noqa: F401  (the example above uses it)
from torch import nn

from automl_cnn.arch import ArchSpec
from automl_cnn.network import ACTIVATIONS, POOLS, L2Pool2d, build
from automl_cnn.errors import UserError
from automl_cnn.shapes import InfeasibleArchitecture, plan_layers


def build_model(
    spec: ArchSpec, input_shape: tuple[int, int, int], num_classes: int
) -> nn.Module:
    """Build the network ``spec`` describes for inputs of shape (C, H, W).

    The result is ``Sequential(features=Sequential(block1, block2, ...), head=Sequential(...))``
    and maps (B, C, H, W) floats in [0, 1]-normalised space to (B, num_classes) logits.
    Raises ``InfeasibleArchitecture`` when the input is too small for the stack.
    """
    plan_layers(spec, input_shape, num_classes)  # the clear error for an impossible input
    return build(spec.to_dict(), tuple(input_shape), num_classes)  # type: ignore[arg-type]


def build_for(spec: ArchSpec, input_shape: tuple[int, int, int], num_classes: int, *,
              searched_on: tuple[int, int, int] | None = None) -> nn.Module:
    """:func:`build_model`, with a clear error (a ``UserError``) for an input it cannot take."""
    shape = tuple(int(v) for v in input_shape)
    try:
        if len(shape) != 3:
            raise InfeasibleArchitecture(f"it has {len(shape)} dimensions, not 3 (C, H, W)")
        plan_layers(spec, shape, num_classes)  # type: ignore[arg-type]
    except InfeasibleArchitecture as exc:
        where = f"; it was searched on {searched_on}" if searched_on else ""
        raise UserError(f"this architecture cannot take input shape {shape}: {exc}{where}. "
                        "Pass an input (C, H, W) at least as large as the one searched on."
                        ) from None
    return build_model(spec, shape, num_classes)  # type: ignore[arg-type]


__all__ = ["ACTIVATIONS", "POOLS", "L2Pool2d", "build_for", "build_model"]
