"""The small values a :class:`~automl_cnn.record.TrialRecord` is made of (import them from
:mod:`automl_cnn.record`).

Example:
    >>> Timings(train_seconds=1.5, total_seconds=2.0).total_seconds
    2.0
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from automl_cnn.arch import ArchSpec
    from automl_cnn.shapes import LayerPlan


@dataclass(frozen=True)
class PlanSummary:
    """The numbers of a trial's :class:`~automl_cnn.shapes.LayerPlan` (``params`` = count)."""

    params: int
    flops: int
    receptive_field: int
    depth: int
    layer_plan: tuple[Mapping[str, Any], ...] = ()  # LayerPlan.as_rows()
    latency_ms: float | None = None
    latency_device: str | None = None
    memory_mb: float | None = None  # peak inference memory, when --max-memory-mb asked for it
    train_memory_mb: float | None = None  # one training step's, when --max-train-memory-mb did

    @classmethod
    def of(cls, spec: ArchSpec, plan: LayerPlan) -> PlanSummary:
        return cls(plan.params, plan.flops, plan.receptive_field, spec.depth,
                   tuple(plan.as_rows()))


@dataclass(frozen=True)
class Fidelity:
    """What a trial trained on under a time budget: a rung of a fidelity ladder, or (``whole``)
    the one trial of a budget too short to search (``epochs``: what it trained by the deadline).
    ``with_val``: it trained on the validation images too (a budget too short to search has
    nothing to select), so its validation score is in-sample and ranks below any held-out one."""

    train_images: int | None = None  # None: the whole training split
    epochs: int | None = None  # None: the spec's epochs
    rung: int | None = None
    whole: bool = False
    with_val: bool = False


@dataclass(frozen=True)
class Promotion:
    """A trial that continues another's climb: trial ``source`` finished rung ``rung - 1``
    and was stopped there, then rose into the top ``1/eta`` as more trials finished that rung
    (a late promotion, as in asynchronous successive halving). This trial trains the same
    parameters from rung ``rung`` up, seeded as trial ``first`` (the one that trained rung 0)
    would have been, so its scores are the ones the source would have earned going on."""

    source: int
    rung: int
    first: int


@dataclass(frozen=True)
class Timings:
    train_seconds: float = 0.0  # inside the trainer
    total_seconds: float = 0.0  # the whole trial: sampling, planning, training, saving


@dataclass(frozen=True)
class Worker:
    """Which process ran a trial."""

    host: str
    pid: int

    @classmethod
    def here(cls) -> Worker:
        return cls(socket.gethostname(), os.getpid())


__all__ = ["Fidelity", "PlanSummary", "Promotion", "Timings", "Worker"]
