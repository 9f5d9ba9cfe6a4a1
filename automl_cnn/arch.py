"""The one currency of automl-cnn: a typed, immutable, JSON-serialisable architecture.

An :class:`ArchSpec` is built by a search space from an Optuna trial and read by everything
downstream (shape planner, model builder, trainer, tracker, dashboards, export). Nothing
re-derives it from trial parameters.

Example:
    >>> spec = ArchSpec(blocks=(ConvBlock(filters=16, kernel=3, padding=1, pool="max"),))
    >>> ArchSpec.from_json(spec.to_json()) == spec
    True
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

#: Bumped when a field changes meaning; ``from_dict`` refuses other versions.
SPEC_VERSION = 1

ACTIVATIONS = ("relu", "leaky_relu", "gelu", "sigmoid", "tanh")
POOLS = ("max", "avg", "l2", "none")
GLOBAL_POOLS = ("flatten", "avg")
TTAS = ("none", "flip")  # test-time augmentation of a network's eval-mode forward
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "onecycle")


class SpecError(ValueError):
    """A spec (or its JSON) that cannot describe a network."""


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SpecError(f"{name} must be one of {', '.join(allowed)}, but got {value!r}.")


def _check_positive(name: str, value: int, *, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise SpecError(f"{name} must be an integer >= {minimum}, but got {value!r}.")


@dataclass(frozen=True)
class ConvBlock:
    """conv(K×K, stride S, zero padding P) → [batch norm] → activation → [pool]."""

    filters: int
    kernel: int = 3
    stride: int = 1
    padding: int = 1
    activation: str = "relu"
    batch_norm: bool = True
    pool: str = "none"
    pool_size: int = 2
    pool_stride: int = 2

    def __post_init__(self) -> None:
        _check_positive("filters", self.filters)
        _check_positive("kernel", self.kernel)
        _check_positive("stride", self.stride)
        _check_positive("padding", self.padding, minimum=0)
        _check_positive("pool_size", self.pool_size)
        _check_positive("pool_stride", self.pool_stride)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("pool", self.pool, POOLS)


@dataclass(frozen=True)
class HeadSpec:
    """Fully connected classifier head on top of the conv stack.

    ``global_pool="avg"`` averages each feature map to one number before the head (input-size
    independent); ``"flatten"`` keeps every position (more parameters, spatial detail kept).
    ``tta="flip"``: in eval mode the network averages its logits over each image and its
    mirror image (never sampled; set on the model a search hands over, see
    :func:`automl_cnn.final_fit.with_tta`).
    """

    widths: tuple[int, ...] = ()
    dropout: float = 0.0
    activation: str = "relu"
    global_pool: str = "avg"
    tta: str = "none"

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))
        for w in self.widths:
            _check_positive("head width", w)
        if not 0.0 <= self.dropout < 1.0:
            raise SpecError(f"head dropout must be in [0, 1), but got {self.dropout!r}.")
        _check_choice("head activation", self.activation, ACTIVATIONS)
        _check_choice("global_pool", self.global_pool, GLOBAL_POOLS)
        _check_choice("tta", self.tta, TTAS)


@dataclass(frozen=True)
class TrainSpec:
    """How the architecture is trained: optimiser, schedule, regularisation, augmentation."""

    optimizer: str = "adamw"
    lr: float = 3e-3
    momentum: float = 0.9  # only read by sgd
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    label_smoothing: float = 0.1
    batch_size: int = 64
    epochs: int = 10
    crop_padding: int = 0  # random-crop augmentation: pad by this many pixels, crop back
    flip: bool = False  # random horizontal flips (off for digits: a flipped 2 is not a 2)

    def __post_init__(self) -> None:
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        if not self.lr > 0:
            raise SpecError(f"lr must be > 0, but got {self.lr!r}.")
        _check_positive("batch_size", self.batch_size)
        _check_positive("epochs", self.epochs)
        _check_positive("crop_padding", self.crop_padding, minimum=0)
        if not 0.0 <= self.label_smoothing < 1.0:
            raise SpecError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}.")


@dataclass(frozen=True)
class ArchSpec:
    """A whole candidate: conv blocks, head and training recipe.

    ``members``: further networks (each with its own recipe) whose log-probabilities the model
    averages with this one's — the ensemble a search hands over when near-tied candidates are
    averaged rather than picked by chance (never sampled; see :mod:`automl_cnn.finalists`).
    """

    blocks: tuple[ConvBlock, ...]
    head: HeadSpec = field(default_factory=HeadSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    members: tuple[ArchSpec, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))
        object.__setattr__(self, "members", tuple(self.members))
        if not self.blocks:
            raise SpecError("an architecture needs at least one conv block, but got none.")
        if any(m.members for m in self.members):
            raise SpecError("an ensemble member cannot itself hold members.")

    @property
    def depth(self) -> int:
        return len(self.blocks)

    @property
    def lead(self) -> ArchSpec:
        """This network alone (without its ensemble members)."""
        return replace(self, members=()) if self.members else self

    @property
    def networks(self) -> tuple[ArchSpec, ...]:
        """Every network of the model: this one, then its ensemble members."""
        return (self.lead, *self.members)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self.lead)
        data.pop("members")
        if self.members:  # a single network's dict keeps its 0.1 shape
            data["members"] = [m.to_dict() for m in self.members]
        data["version"] = SPEC_VERSION
        return data

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchSpec:
        data = dict(data)
        version = data.pop("version", None)
        if version != SPEC_VERSION:
            raise SpecError(
                f"this spec has version {version!r} but automl-cnn reads version {SPEC_VERSION}; "
                "re-export it with a matching automl-cnn release."
            )
        try:
            return cls(
                blocks=tuple(_build(ConvBlock, b, "blocks[]") for b in data.pop("blocks")),
                head=_build(HeadSpec, data.pop("head", {}), "head"),
                train=_build(TrainSpec, data.pop("train", {}), "train"),
                members=tuple(cls.from_dict(m) for m in data.pop("members", ())),
                **_no_extra(data, "spec"),
            )
        except KeyError as exc:
            raise SpecError(f"the spec has no {exc.args[0]!r} entry.") from None

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"the spec is not valid JSON ({exc}).") from None
        if not isinstance(data, dict):
            raise SpecError(f"the spec JSON must be an object, but got {type(data).__name__}.")
        return cls.from_dict(data)


def _no_extra(data: dict[str, Any], where: str) -> dict[str, Any]:
    if data:
        raise SpecError(f"unknown {where} keys: {', '.join(sorted(data))}.")
    return data


def _build(kind: type, data: dict[str, Any], where: str) -> Any:
    known = {f.name for f in fields(kind)}
    _no_extra({k: v for k, v in data.items() if k not in known}, where)
    values = dict(data)
    if kind is HeadSpec and "widths" in values:
        values["widths"] = tuple(values["widths"])
    return kind(**values)
