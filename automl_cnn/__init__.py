"""automl-cnn: AutoML search over convolutional network architectures."""

from __future__ import annotations

from automl_cnn.arch import ArchSpec, ConvBlock, HeadSpec, SpecError, TrainSpec
from automl_cnn.shapes import InfeasibleArchitecture, LayerPlan, conv_output_size, plan_layers

__version__ = "0.1.0"


def build_model(spec, input_shape, num_classes):  # type: ignore[no-untyped-def]
    """Build ``spec`` as a plain torch module (see :func:`automl_cnn.model.build_model`)."""
    from automl_cnn.model import build_model as _build

    return _build(spec, input_shape, num_classes)


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
    "plan_layers",
]
