"""Read a finished (or running) study: trial counts, ranking, the best architectures.

Pure functions over Optuna's records; the CLI, ``summary.json``, dashboards and export all use
these, so "best" means the same thing everywhere: the highest final validation accuracy among
trials that trained to their full epoch budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl_cnn.arch import ArchSpec

OUTCOMES = ("complete", "pruned", "infeasible", "failed", "interrupted", "running")


def outcome_of(trial: FrozenTrial) -> str:
    """complete | pruned | infeasible | failed | interrupted | running, for any trial."""
    if trial.state in (TrialState.RUNNING, TrialState.WAITING):
        return "running"
    if trial.state == TrialState.PRUNED:
        return "pruned"
    recorded = trial.user_attrs.get("outcome")
    if recorded in OUTCOMES:
        return recorded
    return "complete" if trial.state == TrialState.COMPLETE else "failed"


def count_outcomes(trials: list[FrozenTrial]) -> dict[str, int]:
    counts = dict.fromkeys(OUTCOMES, 0)
    for trial in trials:
        counts[outcome_of(trial)] += 1
    return counts


def val_acc_of(trial: FrozenTrial) -> float:
    """The final validation accuracy (the first objective)."""
    return float(trial.values[0]) if trial.values else float("nan")


def rank_key(val_acc: float, val_loss: float | None, number: int) -> tuple[float, float, int]:
    """Sort key, best first: higher validation accuracy; on a tie (a small validation set often
    has several perfect scores) lower validation loss; then the earlier trial."""
    loss = float("inf") if val_loss is None or val_loss != val_loss else val_loss
    return (-val_acc, loss, number)


def final_val_loss(trial: FrozenTrial) -> float | None:
    history = trial.user_attrs.get("history") or []
    return history[-1].get("val_loss") if history else None


def ranked_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Fully trained trials, best first (see :func:`rank_key`)."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if outcome_of(t) == "complete"]
    return sorted(done, key=lambda t: rank_key(val_acc_of(t), final_val_loss(t), t.number))


@dataclass(frozen=True)
class RankedArchitecture:
    """One of the best architectures, with the numbers that rank it."""

    rank: int
    trial: int
    val_acc: float
    spec: ArchSpec
    params: int
    flops: int
    receptive_field: int
    layer_plan: list[dict[str, Any]]
    hyperparameters: dict[str, Any]


def top_from_study(study: optuna.Study, k: int) -> list[RankedArchitecture]:
    return [
        RankedArchitecture(
            rank=i, trial=t.number, val_acc=val_acc_of(t),
            spec=ArchSpec.from_dict(t.user_attrs["arch"]),
            params=int(t.user_attrs.get("params", 0)), flops=int(t.user_attrs.get("flops", 0)),
            receptive_field=int(t.user_attrs.get("receptive_field", 0)),
            layer_plan=list(t.user_attrs.get("layer_plan", [])),
            hyperparameters=dict(t.params),
        )
        for i, t in enumerate(ranked_trials(study)[:k])
    ]


def summarize(study: optuna.Study) -> dict[str, Any]:
    """The machine-readable core of ``summary.json`` (without test accuracy and timings)."""
    trials = study.get_trials(deepcopy=False)
    ranked = ranked_trials(study)
    best = ranked[0] if ranked else None
    return {
        "study_name": study.study_name,
        "trials": len(trials),
        "counts": count_outcomes(trials),
        "best": None if best is None else {
            "trial": best.number,
            "value": val_acc_of(best),
            "values": list(best.values),
            "params": dict(best.params),
            "arch": best.user_attrs.get("arch"),
            "layer_plan": best.user_attrs.get("layer_plan"),
            "parameters": best.user_attrs.get("params"),
            "flops": best.user_attrs.get("flops"),
            "receptive_field": best.user_attrs.get("receptive_field"),
        },
    }
