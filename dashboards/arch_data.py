"""Architecture → plain data: the best networks' tables, volume diagrams and weight-sharing cards.

Every shape, receptive field and parameter count comes from :func:`automl_cnn.shapes.plan_layers`
(the one shape formula); this module only arranges those numbers for drawing.

Example:
    >>> spec = ArchSpec(blocks=(ConvBlock(16, kernel=3, padding=1),))
    >>> [c.dense_params for c in weight_sharing(spec, (1, 8, 8), 10)]
    [66560]
"""

from __future__ import annotations

from dataclasses import dataclass

from automl_cnn.arch import ArchSpec
from automl_cnn.record import TrialRecord
from automl_cnn.results import rank, ranked_architecture
from automl_cnn.shapes import LayerInfo, plan_layers


@dataclass(frozen=True)
class TopArchitecture:
    """One row of the top-k table, with what the diagrams need."""

    rank: int  # 0 = the best (the report shows #1)
    trial: int
    val_acc: float
    params: int  # parameter count
    flops: int
    receptive_field: int
    summary: str  # e.g. "16c3 mp → 32c3 → fc64 → 10"
    spec: ArchSpec
    hyperparameters: dict[str, object]


def describe(spec: ArchSpec) -> str:
    """A compact one-line notation: ``<filters>c<kernel>[/s<stride>]`` per conv block, the pool
    after it, then the head (``gap`` global average pool, ``fc<width>`` dense layers)."""
    parts = []
    for b in spec.blocks:
        text = f"{b.filters}c{b.kernel}" + (f"/s{b.stride}" if b.stride > 1 else "")
        text += f" {b.activation}" + (" bn" if b.batch_norm else "")
        parts.append(text + ("" if b.pool == "none" else f" {b.pool}pool"))
    head = ["gap" if spec.head.global_pool == "avg" else "flatten"]
    head += [f"fc{w}" for w in spec.head.widths]
    return " → ".join(parts + [" ".join(head)])


def top_architectures(records: list[TrialRecord], k: int) -> list[TopArchitecture]:
    """The ``k`` best completed trials, ranked as everywhere else (``results.rank``)."""
    best = [ranked_architecture(i, r) for i, r in enumerate(rank(records)[:k])]
    return [
        TopArchitecture(a.rank, a.trial, a.val_acc, a.params, a.flops, a.receptive_field,
                        describe(a.spec), a.spec, a.hyperparameters)
        for a in best
    ]


@dataclass(frozen=True)
class VolumeBox:
    """One layer's output drawn as a box: W×H×D for maps, a 1×1×N column for vectors."""

    name: str
    kind: str
    width: int
    height: int
    depth: int
    receptive_field: int
    params: int

    @property
    def volume(self) -> str:
        return f"{self.width}×{self.height}×{self.depth}" if self.kind not in VECTOR_KINDS \
            else f"{self.depth}"


VECTOR_KINDS = ("global_pool", "flatten", "linear")


def _box(layer: LayerInfo) -> VolumeBox:
    if len(layer.out_shape) == 3:
        c, h, w = layer.out_shape
        return VolumeBox(layer.name, layer.kind, w, h, c, layer.receptive_field, layer.params)
    return VolumeBox(layer.name, layer.kind, 1, 1, layer.out_shape[0], layer.receptive_field,
                     layer.params)


def volume_boxes(spec: ArchSpec, input_shape: tuple[int, int, int],
                 num_classes: int) -> list[VolumeBox]:
    """Every layer's output volume, input first, in the order data flows."""
    return [_box(layer) for layer in plan_layers(spec, input_shape, num_classes).layers]


@dataclass(frozen=True)
class SharingCard:
    """A conv layer against the fully connected layer that joins the same two volumes."""

    layer: str
    in_volume: str
    out_volume: str
    kernel: int
    conv_params: int  # the conv layer's parameters, as the layer plan counts them
    dense_params: int  # in_units × out_units weights + out_units biases

    @property
    def ratio(self) -> float:
        """How many times more parameters the dense layer would need."""
        return self.dense_params / self.conv_params if self.conv_params else float("inf")


def weight_sharing(spec: ArchSpec, input_shape: tuple[int, int, int],
                   num_classes: int) -> list[SharingCard]:
    """One card per conv layer: weight sharing (one K×K×C_in filter slides over every position)
    against a dense layer with its own weight for every input-unit/output-unit pair."""
    layers = plan_layers(spec, input_shape, num_classes).layers
    cards, previous = [], layers[0]
    for layer in layers[1:]:
        if layer.kind == "conv":
            n_in = _units(previous.out_shape)
            n_out = _units(layer.out_shape)
            cards.append(SharingCard(layer.name, previous.volume, layer.volume, layer.kernel,
                                     layer.params, n_in * n_out + n_out))
        if len(layer.out_shape) == 3:
            previous = layer
    return cards


def _units(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
