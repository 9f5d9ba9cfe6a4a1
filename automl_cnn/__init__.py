"""automl-cnn: AutoML search over convolutional network architectures."""

from __future__ import annotations

from automl_cnn.arch import ArchSpec, ConvBlock, HeadSpec, SpecError, TrainSpec
from automl_cnn.shapes import InfeasibleArchitecture, LayerPlan, conv_output_size, plan_layers

__version__ = "0.1.0"


def build_model(spec, input_shape, num_classes):  # type: ignore[no-untyped-def]
    """Build ``spec`` as a plain torch module (see :func:`automl_cnn.model.build_model`)."""
    from automl_cnn.model import build_model as _build

    return _build(spec, input_shape, num_classes)


def load_best(source, rank=0, weights=True, **kwargs):  # type: ignore[no-untyped-def]
    """The ``rank``-th best model of a search (see :func:`automl_cnn.api.load_best`).

    Example: ``net = automl_cnn.load_best("runs/digits-default")``
    """
    from automl_cnn.api import load_best as _load_best

    return _load_best(source, rank, weights, **kwargs)


def top_architectures(source, k=5, **kwargs):  # type: ignore[no-untyped-def]
    """The ``k`` best specs with their metrics (see :func:`automl_cnn.api.top_architectures`)."""
    from automl_cnn.api import top_architectures as _top

    return _top(source, k, **kwargs)


__all__ = [
    "ArchSpec",
    "ConvBlock",
    "HeadSpec",
    "InfeasibleArchitecture",
    "LayerPlan",
    "SpecError",
    "TrainSpec",
    "build_model",
    "conv_output_size",
    "load_best",
    "plan_layers",
    "top_architectures",
]
