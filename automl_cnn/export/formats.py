"""Export formats by name: the extra file each writes beside the safetensors weights.

:data:`FORMATS` maps ``--format`` names to writers ``(model, input_shape, folder) -> file or
None``; :func:`format_for` looks one up, listing the valid names. Writers take the CPU model in
eval mode. torch is imported inside the writers, so the CLI reads the names without it.

Example:
    >>> format_for("onnx")(model, (1, 8, 8), Path("out"))  # doctest: +SKIP
    PosixPath('out/model.onnx')
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from automl_cnn.errors import UserError

if TYPE_CHECKING:
    from torch import nn

FILES = {"torchscript": "model.torchscript.pt", "onnx": "model.onnx"}
INPUT_NAME, OUTPUT_NAME = "images", "logits"


def write_torchscript(model: nn.Module, path: Path) -> Path:
    """``torch.jit.script`` keeps the batch size free; load with ``torch.jit.load(path)``.

    torch 2.13 marks TorchScript deprecated (in favour of ``torch.export``) but still runs and
    loads it; it stays here for runtimes that read nothing else (C++ libtorch, older mobile).
    """
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(model).save(str(path))
    return path


def write_onnx(model: nn.Module, input_shape: tuple[int, int, int], path: Path) -> Path:
    """ONNX via torch's ``torch.export``-based exporter, with a dynamic batch dimension.

    The weights are embedded (one self-contained file).
    """
    import torch

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


Writer = Callable[["nn.Module", tuple[int, int, int], Path], "Path | None"]

#: ``--format`` name -> writer of its extra file (safetensors: the weights are the file).
FORMATS: dict[str, Writer] = {
    "safetensors": lambda model, shape, folder: None,
    "torchscript": lambda model, shape, folder: write_torchscript(model,
                                                                  folder / FILES["torchscript"]),
    "onnx": lambda model, shape, folder: write_onnx(model, shape, folder / FILES["onnx"]),
}


def format_for(name: str) -> Writer:
    """The writer of export format ``name``; the error lists the valid names."""
    if name not in FORMATS:
        raise UserError(f"unknown export format {name!r}. Valid formats: {', '.join(FORMATS)}.")
    return FORMATS[name]
