"""Study → plain data: the numbers behind every search-level figure of the report.

Each function here is pure: it reads :class:`TrialRow` values (one per trial, read once from
its :class:`~automl_cnn.record.TrialRecord` by :func:`trial_rows`) and returns lists and dataclasses that :mod:`.figures` draws. Tests
check these numbers, not pixels.

Example:
    >>> rows = trial_rows(study.get_trials(deepcopy=False))
    >>> history = optimization_history(rows)
    >>> history.best_so_far == sorted(history.best_so_far)
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial

from automl_cnn import pareto
from automl_cnn.record import OUTCOMES, Outcome, TrialRecord

#: Report colours for each trial outcome (also the legend order).
OUTCOME_COLORS = dict(zip(OUTCOMES, (
    "#2a9d8f", "#e76f51", "#8d99ae", "#9d0208", "#f4a261", "#457b9d")))


@dataclass(frozen=True)
class TrialRow:
    """What the report needs from one trial, read once from its :class:`TrialRecord`."""

    number: int
    outcome: str
    val_acc: float | None  # final (complete) or last reported (pruned) validation accuracy
    hyperparameters: dict[str, Any]
    distributions: dict[str, BaseDistribution]
    curve: tuple[tuple[int, float], ...]  # (epoch, val_acc) per trained epoch
    epochs_budget: int
    epochs_trained: int
    train_seconds: float
    params: int | None  # parameter count of the network
    flops: int | None
    start: datetime | None
    end: datetime | None


def trial_row(record: TrialRecord) -> TrialRow:
    plan = record.plan
    return TrialRow(
        number=record.number, outcome=record.outcome.value,
        val_acc=record.val_acc,
        hyperparameters=dict(record.hyperparameters),
        distributions=dict(record.distributions),
        curve=tuple((int(r["epoch"]), float(r["val_acc"])) for r in record.history
                    if "val_acc" in r),
        epochs_budget=record.epochs_budget, epochs_trained=record.epochs_trained,
        train_seconds=record.timings.train_seconds,
        params=plan.params if plan else None, flops=plan.flops if plan else None,
        start=record.started, end=record.finished,
    )


def trial_rows(trials: list[FrozenTrial] | list[TrialRecord]) -> list[TrialRow]:
    """One :class:`TrialRow` per trial (Optuna's or already a record), in trial-number order."""
    recs = [t if isinstance(t, TrialRecord) else TrialRecord.from_trial(t) for t in trials]
    return [trial_row(r) for r in sorted(recs, key=lambda r: r.number)]


def completed(rows: list[TrialRow]) -> list[TrialRow]:
    """Trials that trained to their full budget (the ones that rank), as in ``results``."""
    return [r for r in rows if r.outcome == Outcome.COMPLETE and r.val_acc is not None]


# -- optimisation history ---------------------------------------------------------------------
@dataclass(frozen=True)
class History:
    """Each trained trial's accuracy, and the best completed accuracy so far."""

    numbers: list[int]
    values: list[float]
    outcomes: list[str]
    best_numbers: list[int]  # trial numbers of completed trials, ascending
    best_so_far: list[float]  # running maximum over completed trials (non-decreasing)


def optimization_history(rows: list[TrialRow]) -> History:
    shown = [r for r in rows
             if r.val_acc is not None and r.outcome in (Outcome.COMPLETE, Outcome.PRUNED)]
    best, best_numbers, best_values = -math.inf, [], []
    for r in completed(rows):
        best = max(best, r.val_acc)  # type: ignore[type-var]
        best_numbers.append(r.number)
        best_values.append(best)
    return History([r.number for r in shown], [float(r.val_acc) for r in shown],  # type: ignore
                   [r.outcome for r in shown], best_numbers, best_values)


# -- learning curves --------------------------------------------------------------------------
@dataclass(frozen=True)
class Curve:
    number: int
    outcome: str
    epochs: list[int]
    val_acc: list[float]
    stopped_epoch: int | None  # where the pruner stopped it; None when it was not pruned


def learning_curves(rows: list[TrialRow]) -> list[Curve]:
    return [
        Curve(r.number, r.outcome, [e for e, _ in r.curve], [a for _, a in r.curve],
              r.curve[-1][0] if r.outcome == Outcome.PRUNED else None)
        for r in rows if r.curve
    ]


# -- accuracy vs cost -------------------------------------------------------------------------
def pareto_front(costs: list[float], accuracies: list[float]) -> list[int]:
    """Indices of the points no other point beats (lower or equal cost and higher or equal
    accuracy, better in at least one), cheapest first; of exact duplicates, the first counts.
    """
    return pareto.pareto_front(list(zip(costs, accuracies)), ["minimize", "maximize"])


@dataclass(frozen=True)
class Tradeoff:
    cost_name: str
    numbers: list[int]
    costs: list[float]
    accuracies: list[float]
    front: list[int]  # indices into the lists above, cheapest first


def tradeoff(rows: list[TrialRow], cost: str) -> Tradeoff:
    """Accuracy against ``cost`` ("params", the parameter count, or "flops") of completed
    trials."""
    done = [r for r in completed(rows) if getattr(r, cost) is not None]
    costs = [float(getattr(r, cost)) for r in done]
    accs = [float(r.val_acc) for r in done]  # type: ignore[arg-type]
    return Tradeoff(cost, [r.number for r in done], costs, accs, pareto_front(costs, accs))


# -- timeline and compute ---------------------------------------------------------------------
@dataclass(frozen=True)
class Span:
    number: int
    outcome: str
    start: datetime
    end: datetime  # "now" for a trial still running


def timeline(rows: list[TrialRow], *, now: datetime) -> list[Span]:
    return [Span(r.number, r.outcome, r.start, r.end or now) for r in rows if r.start]


@dataclass(frozen=True)
class PruningSavings:
    """Epochs actually trained against what the same trials would have cost unpruned."""

    trained: dict[str, int]  # epochs trained, by outcome
    saved: int  # epochs the pruned trials did not train
    seconds_saved: float  # estimated from each pruned trial's own seconds per epoch
    pruned_trials: int

    @property
    def total_trained(self) -> int:
        return sum(self.trained.values())

    @property
    def without_pruning(self) -> int:
        return self.total_trained + self.saved

    @property
    def saved_fraction(self) -> float:
        return self.saved / self.without_pruning if self.without_pruning else 0.0


def pruning_savings(rows: list[TrialRow]) -> PruningSavings:
    """Only pruning changes a trial's length: a pruned trial would have trained its whole
    ``epochs_budget``; every other trial (infeasible ones train 0 epochs) costs what it cost."""
    trained = {o: 0 for o in OUTCOME_COLORS}
    saved, seconds = 0, 0.0
    pruned = [r for r in rows if r.outcome == Outcome.PRUNED]
    for r in rows:
        trained[r.outcome] += r.epochs_trained
    for r in pruned:
        left = max(r.epochs_budget - r.epochs_trained, 0)
        saved += left
        if r.epochs_trained:
            seconds += left * r.train_seconds / r.epochs_trained
    return PruningSavings({o: n for o, n in trained.items() if n}, saved, seconds, len(pruned))


# -- parameters -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParamAxis:
    """How one hyperparameter is shown: on a log axis, a linear one, or as categories."""

    name: str
    kind: str  # log | linear | categorical
    choices: tuple[str, ...] = ()

    def encode(self, value: Any) -> float:
        if self.kind == "categorical":
            return float(self.choices.index(str(value)))
        return math.log10(value) if self.kind == "log" else float(value)


def param_axes(rows: list[TrialRow]) -> dict[str, ParamAxis]:
    """One axis per parameter seen in any trial (the last distribution seen wins)."""
    dists: dict[str, BaseDistribution] = {}
    for r in rows:
        dists.update(r.distributions)
    axes = {}
    for name, dist in sorted(dists.items()):
        if isinstance(dist, CategoricalDistribution):
            axes[name] = ParamAxis(name, "categorical", tuple(str(c) for c in dist.choices))
        elif isinstance(dist, (FloatDistribution, IntDistribution)) and dist.log:
            axes[name] = ParamAxis(name, "log")
        else:
            axes[name] = ParamAxis(name, "linear")
    return axes


@dataclass(frozen=True)
class ParallelData:
    axes: list[ParamAxis]
    columns: list[list[float]]  # encoded values, one column per axis, rows = trials
    numbers: list[int]
    accuracies: list[float]


def parallel_coordinates(rows: list[TrialRow], names: list[str]) -> ParallelData:
    """Completed trials that set every parameter in ``names`` (conditional ones may be absent)."""
    axes = param_axes(rows)
    chosen = [axes[n] for n in names if n in axes]
    done = [r for r in completed(rows) if all(a.name in r.hyperparameters for a in chosen)]
    columns = [[a.encode(r.hyperparameters[a.name]) for r in done] for a in chosen]
    return ParallelData(chosen, columns, [r.number for r in done],
                        [float(r.val_acc) for r in done])  # type: ignore[arg-type]


@dataclass(frozen=True)
class SliceData:
    axis: ParamAxis
    values: list[Any]  # raw values (strings for categories)
    accuracies: list[float]
    numbers: list[int]


def slices(rows: list[TrialRow], names: list[str]) -> list[SliceData]:
    axes, done, out = param_axes(rows), completed(rows), []
    for name in names:
        if name not in axes:
            continue
        have = [r for r in done if name in r.hyperparameters]
        values = [str(r.hyperparameters[name]) if axes[name].kind == "categorical"
                  else r.hyperparameters[name] for r in have]
        out.append(SliceData(axes[name], values, [float(r.val_acc) for r in have],  # type: ignore
                             [r.number for r in have]))
    return out


@dataclass(frozen=True)
class Importances:
    names: list[str] = field(default_factory=list)  # most important first
    values: list[float] = field(default_factory=list)  # normalised to sum to 1
    method: str = ""
    notice: str | None = None  # why there are none

    def head(self, n: int) -> Importances:
        return Importances(self.names[:n], self.values[:n], self.method, self.notice)
