"""Serialise a trained network as TorchScript or ONNX (dynamic batch axis).

Both take the CPU model in eval mode and an example input of shape (1, C, H, W).

Example:
    >>> write_onnx(model, (1, 8, 8), Path("out/model.onnx"))
    PosixPath('out/model.onnx')
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from automl_cnn.errors import UserError

FORMATS = ("safetensors", "torchscript", "onnx")
FILES = {"torchscript": "model.torchscript.pt", "onnx": "model.onnx"}
INPUT_NAME, OUTPUT_NAME = "images", "logits"


def write_torchscript(model: nn.Module, path: Path) -> Path:
    """``torch.jit.script`` keeps the batch size free; load with ``torch.jit.load(path)``.

    torch 2.13 marks TorchScript deprecated (in favour of ``torch.export``) but still runs and
    loads it; it stays here for runtimes that read nothing else (C++ libtorch, older mobile).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(model).save(str(path))
    return path


def write_onnx(model: nn.Module, input_shape: tuple[int, int, int], path: Path) -> Path:
    """ONNX via torch's ``torch.export``-based exporter, with a dynamic batch dimension.

    The weights are embedded (one self-contained file).
    """
    try:
        import onnxscript  # noqa: F401  (the exporter's dependency; fail here with a clear fix)
    except ImportError:
        raise UserError("--format onnx needs the onnx and onnxscript packages: "
                        "pip install 'automl-cnn[export]'.") from None
    example = torch.zeros(2, *input_shape)  # batch 2: a batch of 1 could be specialised away
    batch = torch.export.Dim("batch")
    loud = logging.getLogger("torch.onnx")
    level = loud.level
    loud.setLevel(logging.ERROR)  # "torchvision is not installed" and friends
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(path), input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], dynamo=True, external_data=False,
                              dynamic_shapes=({0: batch},), verbose=False)
    finally:
        loud.setLevel(level)
    return path


def write_format(fmt: str, model: nn.Module, input_shape: tuple[int, int, int],
                 folder: Path) -> Path | None:
    """Write ``fmt``'s extra file into ``folder`` (safetensors needs none beyond the weights)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}. Valid formats: {', '.join(FORMATS)}.")
    if fmt == "torchscript":
        return write_torchscript(model, folder / FILES[fmt])
    if fmt == "onnx":
        return write_onnx(model, input_shape, folder / FILES[fmt])
    return None
