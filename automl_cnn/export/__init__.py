"""Ship a found architecture: one folder that works without automl-cnn installed.

The folder holds ``arch.json`` (the spec), ``meta.json``, ``model.safetensors`` (weights),
``model.py`` (automl-cnn's own torch-only network file, :mod:`automl_cnn.network`, copied
unchanged), ``README.md`` (the model card) and, for ``torchscript``/``onnx``, that file too.
It is also an automl-cnn checkpoint folder, so :func:`automl_cnn.checkpoint.load_checkpoint`
reads it back.

Example:
    >>> folder = export_model("runs/digits-tiny", "exported", rank=0, fmt="onnx")  # doctest: +SKIP
    >>> sorted(p.name for p in folder.iterdir())[:3]  # doctest: +SKIP
    ['README.md', 'arch.json', 'meta.json']
"""

from __future__ import annotations

from typing import Any

from automl_cnn.export.formats import FORMATS, format_for


def __getattr__(name: str) -> Any:
    """``export_model`` and ``without_password`` load torch and optuna: only when asked for."""
    if name in ("export_model", "without_password"):
        from automl_cnn.export import folder

        return getattr(folder, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FORMATS", "export_model", "format_for", "without_password"]
