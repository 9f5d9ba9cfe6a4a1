"""Read a finished (or running) study: trial counts, ranking, the best architectures.

Pure functions over :class:`~automl_cnn.record.TrialRecord` values; the CLI, ``summary.json``,
dashboards and export all use these, so "best" means the same thing everywhere: the highest
final validation accuracy among trials that trained to their full epoch budget. Ranks are
0-based: rank 0 is the best.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from automl_cnn.arch import ArchSpec
from automl_cnn.record import OUTCOMES, Outcome, PlanSummary, TrialRecord

if TYPE_CHECKING:
    import optuna


def count_outcomes(outcomes: Iterable[Outcome | str]) -> dict[str, int]:
    """How many trials ended each way, every outcome listed (in :class:`Outcome` order)."""
    counts = dict.fromkeys(OUTCOMES, 0)
    for outcome in outcomes:
        counts[Outcome(outcome).value] += 1
    return counts


def study_counts(study: optuna.Study) -> dict[str, int]:
    """:func:`count_outcomes` of every trial of ``study`` that started: an enqueued baseline
    still waiting for a worker (a search stopped before it) is not a trial that ran."""
    from optuna.trial import TrialState

    from automl_cnn.record import outcome_of

    return count_outcomes(outcome_of(t) for t in study.get_trials(deepcopy=False)
                          if t.state != TrialState.WAITING)


def limit_counts(study: optuna.Study) -> dict[str, int]:
    """Trials over each hard limit (``{"max_params": 3}``): infeasible, but not for shapes."""
    from automl_cnn.record import limit_of

    found: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        limit = limit_of(trial)
        if limit:
            found[limit] = found.get(limit, 0) + 1
    return found


def counts_apart(study: optuna.Study) -> dict[str, int]:
    """:func:`study_counts` with trials over a hard limit counted apart (``over_limit``) from
    the ``infeasible`` ones whose shapes do not fit."""
    counts, over = study_counts(study), sum(limit_counts(study).values())
    out: dict[str, int] = {}
    for key, value in counts.items():
        out[key] = value - over if key == "infeasible" else value
        if key == "infeasible":
            out["over_limit"] = over
    return out


RankKey = tuple[int, float, float, int]


def rank_key(val_acc: float, val_loss: float | None, number: int, rung: int = 0) -> RankKey:
    """Sort key, best first: the higher fidelity-ladder rung (scores compare like with like:
    the same training images and epochs); then higher validation accuracy; on a tie (a small
    validation set often has several perfect scores) lower validation loss; then the earlier
    trial. The one ranking rule: trials, kept checkpoints and the champion all use it."""
    loss = float("inf") if val_loss is None or val_loss != val_loss else val_loss
    return (-rung, -val_acc, loss, number)


def rung_of(record: TrialRecord) -> int:
    """The ladder rung ``record``'s score was earned at (0 outside a ladder; -1 for an
    in-sample score, which ranks below every held-out one)."""
    if record.in_sample:
        return -1
    fidelity = record.fidelity
    return int(fidelity.rung or 0) if fidelity is not None else 0


def record_key(record: TrialRecord) -> RankKey:
    """:func:`rank_key` of a ranked trial's record."""
    return rank_key(record.val_acc if record.val_acc is not None else float("nan"),
                    record.val_loss, record.number, rung_of(record))


def finished_a_rung(record: TrialRecord) -> bool:
    """Whether ``record`` holds a comparable score: it completed, or it stopped on a ladder
    rung (not promoted, or the budget ran out on the next one) after training all of it."""
    if record.outcome == Outcome.COMPLETE:
        return True
    fidelity = record.fidelity
    return (record.outcome in (Outcome.PRUNED, Outcome.INTERRUPTED) and fidelity is not None
            and fidelity.epochs is not None and record.epochs_trained == fidelity.epochs)


def rank(records: Iterable[TrialRecord]) -> list[TrialRecord]:
    """Completed records, and on a ladder every record that finished a rung, best first (see
    :func:`rank_key`)."""
    return sorted((r for r in records if finished_a_rung(r)), key=record_key)


def ranked_trials(study: optuna.Study) -> list[TrialRecord]:
    """The study's ranked trials as records, best first (index = rank)."""
    from optuna.trial import TrialState

    from automl_cnn.record import record_of

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    return rank(record_of(t) for t in done)


@dataclass(frozen=True)
class RankedArchitecture:
    """One of the best architectures, with the numbers that rank it."""

    rank: int  # 0 = the best
    trial: int
    val_acc: float
    spec: ArchSpec
    params: int  # parameter count
    flops: int
    receptive_field: int
    layer_plan: list[dict[str, Any]]
    hyperparameters: dict[str, Any]


def ranked_architecture(rank: int, record: TrialRecord) -> RankedArchitecture:
    plan = record.plan or PlanSummary(0, 0, 0, 0)
    assert record.spec is not None, f"trial {record.number} completed without a spec"
    return RankedArchitecture(
        rank=rank, trial=record.number, val_acc=float(record.val_acc or 0.0),
        spec=record.spec, params=plan.params, flops=plan.flops,
        receptive_field=plan.receptive_field, layer_plan=[dict(r) for r in plan.layer_plan],
        hyperparameters=dict(record.hyperparameters))


def top_from_study(study: optuna.Study, k: int) -> list[RankedArchitecture]:
    return [ranked_architecture(i, r) for i, r in enumerate(ranked_trials(study)[:k])]


def summarize(study: optuna.Study) -> dict[str, Any]:
    """The machine-readable core of ``summary.json`` (without test accuracy and timings)."""
    ranked = ranked_trials(study)
    counts = counts_apart(study)
    best = ranked[0] if ranked else None
    return {
        "study_name": study.study_name,
        "trials": sum(counts.values()),
        "counts": counts,
        "over_limit": limit_counts(study),
        "best": None if best is None else best_summary(best),
    }


def best_summary(best: TrialRecord) -> dict[str, Any]:
    """``summary.json``'s ``best``: ``params`` is the parameter COUNT; the sampled values are
    ``hyperparameters``."""
    plan = best.plan
    return {
        "trial": best.number,
        "value": best.val_acc,
        "values": list(best.values or ([best.val_acc] if best.val_acc is not None else [])),
        "rung": max(0, rung_of(best)),
        # Trained on the validation images too (a budget too short to search): not held out.
        "in_sample": best.in_sample,
        "epochs_trained": best.epochs_trained,
        "hyperparameters": dict(best.hyperparameters),
        "arch": best.spec.to_dict() if best.spec else None,
        "layer_plan": [dict(r) for r in plan.layer_plan] if plan else None,
        "params": plan.params if plan else None,
        "flops": plan.flops if plan else None,
        "receptive_field": plan.receptive_field if plan else None,
        "latency_ms": plan.latency_ms if plan else None,
        "latency_device": plan.latency_device if plan else None,
    }
