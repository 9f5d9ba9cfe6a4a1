"""The study's data as typed values: one :class:`TrialRecord` per trial, one :class:`StudyInfo`
per study. This module is the only code that writes or reads Optuna user attributes.

A trial keeps its record as ONE user attribute (:data:`RECORD_ATTR`, a JSON-able dict); what
Optuna needs natively stays native (``trial.params`` are the hyperparameters, ``trial.values``
the objective values, intermediate values the per-epoch ``val_acc`` the pruner reads). A trial
gets a partial record (outcome ``running``) when it starts, so a report drawn mid-search shows
its architecture; the runner replaces it with the final record when the trial ends.

Example:
    >>> record = TrialRecord.from_trial(study.trials[0])
    >>> record.outcome, record.plan.params if record.plan else None
    (<Outcome.COMPLETE: 'complete'>, 10426)
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from automl_cnn.arch import ArchSpec, SpecError
from automl_cnn.config import SearchConfig
from automl_cnn.dataset_info import DatasetInfo
from automl_cnn.errors import UserError
from automl_cnn.record_fields import Fidelity, PlanSummary, Promotion, Timings, Worker

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial


RECORD_ATTR = "automl_cnn.record"  # trial user attribute: TrialRecord.to_attrs()
CONFIG_ATTR = "automl_cnn.config"  # study user attribute: SearchConfig.to_dict()
DATASET_ATTR = "automl_cnn.dataset"  # study user attribute: DatasetInfo.to_dict()
IDENTITY_ATTR = "automl_cnn.identity"  # study: what a joining worker must match (runners/join)
TARGET_ATTR = "automl_cnn.target_trials"  # study: finished trials the workers aim for
BASELINE_ATTR = "baseline"  # set when a baseline is enqueued, before the trial runs
PROMOTION_ATTR = "automl_cnn.promotion"  # set when a late promotion is enqueued (Promotion)
NEIGHBOUR_ATTR = "automl_cnn.neighbour_of"  # set when the ladder queues a neighbour (number)


class Outcome(str, Enum):
    """How a trial ended (``running`` while it has not)."""

    COMPLETE = "complete"  # trained its whole budget; the only outcome that ranks
    PRUNED = "pruned"  # stopped early by the pruner
    INFEASIBLE = "infeasible"  # a shape does not fit, or a hard limit is broken: never trained
    FAILED = "failed"  # raised (a bug, CUDA out of memory), or its worker died
    INTERRUPTED = "interrupted"  # Ctrl-C / SIGTERM stopped it
    RUNNING = "running"

    def __str__(self) -> str:
        return self.value


OUTCOMES = tuple(o.value for o in Outcome)


@dataclass(frozen=True)
class TrialRecord:
    """Everything a trial left: written once by the runner, read by every report."""

    number: int
    outcome: Outcome
    reason: str | None = None
    values: tuple[float, ...] | None = None
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)  # sampled, readable names
    spec: ArchSpec | None = None
    plan: PlanSummary | None = None  # None: not planned (infeasible shapes)
    history: tuple[Mapping[str, float], ...] = ()  # epoch, train_loss, val_loss, val_acc, seconds
    pruned_epoch: int | None = None
    fidelity: Fidelity | None = None  # None: the full training split and the spec's epochs
    timings: Timings = Timings()
    worker: Worker | None = None
    baseline: str | None = None  # the baseline recipe this trial ran, if any
    limit: str | None = None  # the hard limit an infeasible trial broke ("max_params")
    promotion: Promotion | None = None  # it continues another trial's climb (late promotion)
    neighbour_of: int | None = None  # the ladder's local search queued it near this trial
    # Read from Optuna's own bookkeeping (never written by to_attrs):
    distributions: Mapping[str, Any] = field(default_factory=dict, compare=False)
    started: datetime | None = field(default=None, compare=False)
    finished: datetime | None = field(default=None, compare=False)

    # -- derived values -------------------------------------------------------------------------
    @property
    def val_acc(self) -> float | None:
        """Final (complete) or last reported validation accuracy; None before the first epoch."""
        if self.outcome == Outcome.COMPLETE and self.values:
            return float(self.values[0])
        return next((float(r["val_acc"]) for r in reversed(self.history) if "val_acc" in r), None)

    @property
    def in_sample(self) -> bool:
        """Whether it trained on the validation images too (see :class:`Fidelity`)."""
        return self.fidelity is not None and self.fidelity.with_val

    @property
    def val_loss(self) -> float | None:
        last = self.history[-1] if self.history else {}
        return float(last["val_loss"]) if "val_loss" in last else None

    @property
    def epochs_trained(self) -> int:
        return len(self.history)

    @property
    def epochs_budget(self) -> int:
        """The epochs this trial would train unpruned."""
        if self.fidelity is not None and self.fidelity.epochs is not None:
            return self.fidelity.epochs
        return self.spec.train.epochs if self.spec is not None else 0

    def replace(self, **changes: Any) -> TrialRecord:
        return replace(self, **changes)

    # -- storage --------------------------------------------------------------------------------
    def to_attrs(self) -> dict[str, Any]:
        """The JSON-able dict stored under :data:`RECORD_ATTR` (without what Optuna keeps)."""
        out: dict[str, Any] = {
            "outcome": self.outcome.value, "reason": self.reason,
            "spec": self.spec.to_dict() if self.spec else None,
            "plan": _plain(self.plan), "history": [dict(r) for r in self.history],
            "pruned_epoch": self.pruned_epoch, "fidelity": _plain(self.fidelity),
            "timings": asdict(self.timings), "worker": _plain(self.worker),
            "baseline": self.baseline, "limit": self.limit,
            "promotion": _plain(self.promotion), "neighbour_of": self.neighbour_of,
        }
        return out

    @classmethod
    def from_trial(cls, trial: FrozenTrial) -> TrialRecord:
        """The record of any trial of any automl-cnn study, finished or running."""
        from automl_cnn.record_legacy import legacy_attrs

        attrs = trial.user_attrs.get(RECORD_ATTR) or legacy_attrs(trial.user_attrs)
        history = tuple(attrs.get("history") or ())
        if not history and trial.intermediate_values:  # a running trial: the pruner's values
            history = tuple({"epoch": int(s), "val_acc": float(v)}
                            for s, v in sorted(trial.intermediate_values.items()))
        return cls(
            number=trial.number, outcome=_outcome(trial, attrs.get("outcome")),
            reason=attrs.get("reason"), values=tuple(trial.values) if trial.values else None,
            hyperparameters=dict(trial.params), spec=_spec(attrs.get("spec")),
            plan=_build(PlanSummary, attrs.get("plan"), layer_plan=tuple),
            history=history, pruned_epoch=attrs.get("pruned_epoch"),
            fidelity=_build(Fidelity, attrs.get("fidelity")),
            timings=_build(Timings, attrs.get("timings")) or Timings(),
            worker=_build(Worker, attrs.get("worker")),
            baseline=attrs.get("baseline") or trial.user_attrs.get(BASELINE_ATTR),
            limit=attrs.get("limit"),
            promotion=_build(Promotion, attrs.get("promotion")) or promotion_of(trial),
            neighbour_of=attrs.get("neighbour_of", neighbour_of(trial)),
            distributions=dict(trial.distributions),
            started=trial.datetime_start, finished=trial.datetime_complete)


def write_record(trial: optuna.Trial, record: TrialRecord) -> None:
    """Store ``record`` in ``trial`` (the one writer of a trial's attributes)."""
    trial.set_user_attr(RECORD_ATTR, record.to_attrs())


def record_attrs(record: TrialRecord) -> dict[str, Any]:
    """The user attributes of a trial holding ``record`` (for a ``FrozenTrial`` built by hand,
    as synthetic studies and tests do)."""
    return {RECORD_ATTR: record.to_attrs()}


def mark_interrupted(storage: optuna.storages.BaseStorage, trial_id: int,
                     reason: str) -> None:
    """Record a trial whose worker was lost as interrupted (not a failure of the architecture),
    keeping what its partial record says about it."""
    attrs = dict(storage.get_trial(trial_id).user_attrs.get(RECORD_ATTR) or {})
    attrs.update(outcome=Outcome.INTERRUPTED.value, reason=reason[:2000])
    storage.set_trial_user_attr(trial_id, RECORD_ATTR, attrs)


def enqueue_baseline(study: optuna.Study, params: dict[str, Any], name: str) -> None:
    """Queue a known-good recipe as a trial; its record names the baseline."""
    study.enqueue_trial(params, user_attrs={BASELINE_ATTR: name}, skip_if_exists=True)


def baseline_of(trial: optuna.Trial | FrozenTrial) -> str | None:
    """The baseline a trial was enqueued as (readable before its record is written)."""
    return trial.user_attrs.get(BASELINE_ATTR)


def enqueue_promotion(study: optuna.Study, source: FrozenTrial, rung: int) -> None:
    """Queue a trial that trains ``source``'s parameters from ``rung`` up (see
    :class:`Promotion`); it keeps the baseline name ``source`` ran as."""
    first = promotion_of(source)
    attrs: dict[str, Any] = {PROMOTION_ATTR: asdict(Promotion(
        source.number, rung, first.first if first is not None else source.number))}
    name = baseline_of(source)
    if name is not None:
        attrs[BASELINE_ATTR] = name
    study.enqueue_trial(dict(source.params), user_attrs=attrs)


def enqueue_neighbour(study: optuna.Study, params: dict[str, Any], of: int) -> None:
    """Queue ``params`` (a partial trial: the sampler draws the rest) as a neighbour of trial
    ``of`` (the ladder's local search)."""
    study.enqueue_trial(params, user_attrs={NEIGHBOUR_ATTR: of})


def neighbour_of(trial: optuna.Trial | FrozenTrial) -> int | None:
    """The trial the ladder's local search queued ``trial`` near, if it did."""
    return trial.user_attrs.get(NEIGHBOUR_ATTR)


def promotion_of(trial: optuna.Trial | FrozenTrial) -> Promotion | None:
    """The late promotion a trial was enqueued as (readable while it waits), if any."""
    return _build(Promotion, trial.user_attrs.get(PROMOTION_ATTR))


def records(study: optuna.Study) -> list[TrialRecord]:
    """The record of every trial that started, in trial-number order: a queued trial still
    waiting for a worker (a baseline, a neighbour or a late promotion the search ended before)
    never ran."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    return [record_of(t) for t in trials if t.state.name != "WAITING"]


#: Records of finished trials, by the FrozenTrial object the storage hands back (the in-memory
#: and journal storages return the same objects until a trial changes; a finished one never
#: does). Rebuilding every record after every trial (progress bar, kept weights) grew to most
#: of a 1,000-trial study's per-trial cost. A weak reference tells a reused id apart.
_FINISHED: dict[int, tuple[weakref.ref[FrozenTrial], TrialRecord]] = {}
_FINISHED_MAX = 50_000


def record_of(trial: FrozenTrial) -> TrialRecord:
    """:meth:`TrialRecord.from_trial`, built once per finished (complete or pruned) trial."""
    if trial.state.name not in ("COMPLETE", "PRUNED"):
        return TrialRecord.from_trial(trial)
    found = _FINISHED.get(id(trial))
    if found is not None and found[0]() is trial:
        return found[1]
    if len(_FINISHED) >= _FINISHED_MAX:
        _FINISHED.clear()
    record = TrialRecord.from_trial(trial)
    _FINISHED[id(trial)] = (weakref.ref(trial), record)
    return record


def outcome_of(trial: FrozenTrial) -> Outcome:
    """A trial's outcome alone (cheaper than its whole record: for counting every trial)."""
    attrs = trial.user_attrs.get(RECORD_ATTR) or trial.user_attrs
    return _outcome(trial, attrs.get("outcome"))


def limit_of(trial: FrozenTrial) -> str | None:
    """The hard limit an infeasible trial broke (cheaper than its whole record)."""
    return (trial.user_attrs.get(RECORD_ATTR) or {}).get("limit")


def _outcome(trial: FrozenTrial, recorded: str | None) -> Outcome:
    state = trial.state.name
    if state in ("RUNNING", "WAITING"):
        return Outcome.RUNNING
    if state == "PRUNED":  # a trial the budget stopped is pruned to Optuna, interrupted here
        return Outcome.INTERRUPTED if recorded == Outcome.INTERRUPTED.value else Outcome.PRUNED
    if recorded in OUTCOMES and recorded != Outcome.RUNNING.value:
        return Outcome(recorded)
    return Outcome.COMPLETE if state == "COMPLETE" else Outcome.FAILED


def _spec(raw: dict[str, Any] | None) -> ArchSpec | None:
    try:
        return ArchSpec.from_dict(raw) if raw else None
    except SpecError:
        return None


def _plain(value: Any) -> dict[str, Any] | None:
    return None if value is None else asdict(value)


def _build(cls: type, raw: dict[str, Any] | None, **convert: Any) -> Any:
    if not raw:
        return None
    known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
    for key, fn in convert.items():
        if key in known:
            known[key] = fn(known[key])
    return cls(**known)


# -- the study ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class StudyInfo:
    """The study-level record: its settings, its dataset, and what workers sharing it need."""

    config: SearchConfig | None
    dataset: DatasetInfo | None
    identity: Mapping[str, Any] | None = None  # what a joining worker must match
    target: int | None = None  # finished trials the workers aim for; None: no cap


def write_study_info(study: optuna.Study, *, config: SearchConfig | None = None,
                     dataset: DatasetInfo | None = None,
                     identity: Mapping[str, Any] | None = None,
                     target: int | None = None) -> None:
    """Store the parts given (the others stay as they are) in ``study``."""
    parts = {CONFIG_ATTR: config.public().to_dict() if config is not None else None,
             DATASET_ATTR: dataset.to_dict() if dataset is not None else None,
             IDENTITY_ATTR: dict(identity) if identity is not None else None,
             TARGET_ATTR: target}
    for key, value in parts.items():
        if value is not None:
            study.set_user_attr(key, value)


def read_study_info(study: optuna.Study) -> StudyInfo:
    """What ``study`` records; None for a part it lacks (a study not made by automl-cnn)."""
    attrs = study.user_attrs
    config, dataset, target = (attrs.get(k) for k in (CONFIG_ATTR, DATASET_ATTR, TARGET_ATTR))
    return StudyInfo(SearchConfig.from_dict(config) if config is not None else None,
                     DatasetInfo.from_dict(dataset) if dataset else None,
                     attrs.get(IDENTITY_ATTR), int(target) if target is not None else None)


def load_config(study: optuna.Study) -> SearchConfig:
    """The settings a study was created with (for workers and dashboards)."""
    config = read_study_info(study).config
    if config is None:
        raise UserError(f"study {study.study_name!r} was not created by automl-cnn "
                        "(it has no search settings).")
    return config


__all__ = ["CONFIG_ATTR", "DATASET_ATTR", "IDENTITY_ATTR", "NEIGHBOUR_ATTR", "OUTCOMES",
           "PROMOTION_ATTR", "RECORD_ATTR", "TARGET_ATTR", "DatasetInfo", "Fidelity", "Outcome",
           "PlanSummary", "Promotion", "StudyInfo", "Timings", "TrialRecord", "Worker",
           "baseline_of", "enqueue_baseline", "enqueue_neighbour", "enqueue_promotion",
           "limit_of", "load_config", "mark_interrupted", "neighbour_of", "outcome_of",
           "promotion_of", "read_study_info", "record_attrs", "record_of", "records",
           "write_record", "write_study_info"]
