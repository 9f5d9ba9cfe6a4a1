"""The Pareto front of a search: the completed trials no other completed trial beats on every
objective at once. ``summary.json``'s ``pareto``, ``automl-cnn best --pareto``,
``load_best(run, pareto=i)``, ``automl-cnn export --pareto i``, the MLflow parent run and the
report all read this list, so point ``i`` is the same trial everywhere.

The objectives are the study's own (``--objective val_acc --objective latency``); a
single-objective search still gets a front to choose from: accuracy against parameters, and
against latency when latency was measured. Trials over a hard limit never completed, so they
are never on it.

Example:
    >>> [(p.index, p.trial, p.values["val_acc"]) for p in study_front(study)]
    [(0, 12, 0.99), (1, 3, 0.97), (2, 8, 0.91)]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from automl_cnn.config import OBJECTIVES, SearchConfig
from automl_cnn.pareto import pareto_front
from automl_cnn.record import Outcome, TrialRecord

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class ParetoPoint:
    """One point of the front; ``index`` is what ``--pareto i`` and ``pareto=i`` pick."""

    index: int
    trial: int
    values: dict[str, float]  # objective name -> value, in the front's objective order
    params: int
    flops: int
    latency_ms: float | None
    latency_device: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def front_objectives(config: SearchConfig) -> tuple[str, ...]:
    """The study's objectives; for a single-objective study, accuracy against parameters
    (and latency when it was measured)."""
    if config.multi_objective:
        return tuple(config.objectives)
    return ("val_acc", "params", *(("latency",) if config.measures_latency else ()))


def _value(record: TrialRecord, name: str) -> float | None:
    plan = record.plan
    if name == "val_acc":
        return record.val_acc
    if plan is None:
        return None
    return {"params": plan.params, "flops": plan.flops, "latency": plan.latency_ms}[name]


def pareto_points(records: Iterable[TrialRecord], config: SearchConfig) -> list[ParetoPoint]:
    """Completed, non-dominated trials: best accuracy first, then the next objective."""
    names = front_objectives(config)
    done: list[tuple[TrialRecord, list[float]]] = []
    for record in records:
        values = [_value(record, n) for n in names]
        if record.outcome == Outcome.COMPLETE and all(v is not None for v in values):
            done.append((record, [float(v) for v in values]))  # type: ignore[arg-type]
    front = pareto_front([v for _, v in done], [OBJECTIVES[n] for n in names])
    points = []
    for index, i in enumerate(front):
        record, values = done[i]
        plan = record.plan
        assert plan is not None
        points.append(ParetoPoint(index, record.number, dict(zip(names, values)), plan.params,
                                  plan.flops, plan.latency_ms, plan.latency_device))
    return points


def study_front(study: optuna.Study, config: SearchConfig | None = None) -> list[ParetoPoint]:
    """:func:`pareto_points` of every trial of ``study`` (``config``: the study's own)."""
    from automl_cnn.record import load_config, records

    return pareto_points(records(study), config or load_config(study))


def front_summary(study: optuna.Study, config: SearchConfig) -> dict[str, Any]:
    """``summary.json``'s ``pareto_objectives`` and ``pareto`` (the points, index order)."""
    return {"pareto_objectives": list(front_objectives(config)),
            "pareto": [p.to_dict() for p in study_front(study, config)]}


__all__ = ["ParetoPoint", "front_objectives", "front_summary", "pareto_points", "study_front"]
