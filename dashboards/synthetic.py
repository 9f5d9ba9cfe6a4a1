"""Synthetic studies that look like real searches, for benchmarks and tests of the report.

Architectures are sampled from a real search space (``default``) and planned with the real
shape planner, so every trial carries the :class:`~automl_cnn.record.TrialRecord` a real trial
records (spec, plan summary, history, outcome ...); only the accuracies are made up (a
saturating curve that grows with the log of the parameter count).

Example:
    >>> study = synthetic_study(1000, seed=0)
    >>> len(study.trials)
    1000
"""

from __future__ import annotations

import logging
import math
import random
from datetime import datetime, timedelta
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from automl_cnn.record import (
    DatasetInfo,
    Outcome,
    PlanSummary,
    Timings,
    TrialRecord,
    record_attrs,
    write_study_info,
)
from automl_cnn.search_spaces import load_space
from automl_cnn.shapes import InfeasibleArchitecture, plan_layers

INPUT_SHAPE, CLASSES = (3, 32, 32), 10


class RandomTrial:
    """Just enough of ``optuna.Trial`` for ``SearchSpace.sample``: draws uniformly (log-uniformly
    on log ranges) and records each parameter's distribution, as Optuna would."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.params: dict[str, Any] = {}
        self.distributions: dict[str, Any] = {}

    def _set(self, name: str, value: Any, dist: Any) -> Any:
        self.params[name], self.distributions[name] = value, dist
        return value

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        return self._set(name, self.rng.choice(choices), CategoricalDistribution(choices))

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False,
                    step: int = 1) -> int:
        value = self.rng.randrange(low, high + 1, step)
        return self._set(name, value, IntDistribution(low, high, log=log, step=step))

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False,
                      step: float | None = None) -> float:
        value = (math.exp(self.rng.uniform(math.log(low), math.log(high))) if log
                 else self.rng.uniform(low, high))
        return self._set(name, value, FloatDistribution(low, high, log=log, step=step))


def _curve(final: float, epochs: int, rng: random.Random) -> list[float]:
    return [max(0.0, min(1.0, final * (1 - math.exp(-3 * (e + 1) / epochs))
                         + rng.gauss(0, 0.01))) for e in range(epochs)]


def _history(curve: list[float], seconds: float) -> tuple[dict[str, float], ...]:
    return tuple({"epoch": e, "train_loss": 2.3 * (1 - a), "val_loss": 2.3 * (1 - a),
                  "val_acc": a, "seconds": seconds * (e + 1) / len(curve)}
                 for e, a in enumerate(curve))


def synthetic_trial(number: int, spec: Any, params: dict, dists: dict, start: datetime,
                    rng: random.Random, *, running: bool = False) -> FrozenTrial:
    """One trial as a search would record it: infeasible, pruned, complete or running."""
    record = TrialRecord(number, Outcome.RUNNING, spec=spec)
    try:
        plan = plan_layers(spec, INPUT_SHAPE, CLASSES)
    except InfeasibleArchitecture as exc:
        record = record.replace(outcome=Outcome.INFEASIBLE, reason=str(exc))
        return _frozen(record, TrialState.COMPLETE, [0.0], params, dists, {}, start,
                       start + timedelta(milliseconds=50))
    record = record.replace(plan=PlanSummary.of(spec, plan))
    final = min(0.97, 0.35 + 0.06 * math.log(plan.params + 1) + rng.gauss(0, 0.05))
    budget = spec.train.epochs
    pruned = not running and rng.random() < 0.55
    epochs = rng.randint(1, budget - 1) if pruned else budget
    if running:
        epochs = rng.randint(0, budget - 1)
    curve = _curve(final, budget, rng)[:epochs]
    seconds = epochs * (0.5 + plan.flops / 2e7)
    end = start + timedelta(seconds=seconds + 0.2)
    steps = dict(enumerate(curve))
    if running:  # the partial record a running trial holds; its curve is in `steps`
        return _frozen(record, TrialState.RUNNING, None, params, dists, steps, start, None)
    record = record.replace(outcome=Outcome.PRUNED if pruned else Outcome.COMPLETE,
                            history=_history(curve, round(seconds, 3)),
                            timings=Timings(round(seconds, 3), round(seconds + 0.2, 3)))
    if pruned:
        record = record.replace(pruned_epoch=len(curve) - 1, reason=(
            f"pruned at epoch {len(curve) - 1}: val_acc below the pruner's bar"))
    state = TrialState.PRUNED if pruned else TrialState.COMPLETE
    return _frozen(record, state, [curve[-1]], params, dists, steps, start, end)


def _frozen(record: TrialRecord, state: TrialState, values: list[float] | None, params: dict,
            dists: dict, steps: dict, start: datetime, end: datetime | None) -> FrozenTrial:
    return FrozenTrial(number=record.number, state=state, value=None, values=values,
                       datetime_start=start, datetime_complete=end, params=params,
                       distributions=dists, user_attrs=record_attrs(record), system_attrs={},
                       intermediate_values=steps, trial_id=record.number)


def synthetic_study(n_trials: int, *, seed: int = 0, running: int = 0,
                    name: str = "synthetic") -> optuna.Study:
    """An in-memory study of ``n_trials`` finished trials plus ``running`` unfinished ones."""
    rng = random.Random(seed)
    space = load_space("default")
    quiet = logging.getLogger("optuna")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        study = optuna.create_study(study_name=name, direction="maximize")
    finally:
        quiet.setLevel(level)
    write_study_info(study, dataset=DatasetInfo(
        "synthetic", tuple(str(c) for c in range(CLASSES)), INPUT_SHAPE, CLASSES,
        {"train": 45000, "val": 5000, "test": 10000}))
    clock = datetime(2026, 1, 1, 12, 0, 0)
    trials = []
    for number in range(n_trials + running):
        sampler = RandomTrial(rng)
        spec = space.sample(sampler)
        params, dists = sampler.params, sampler.distributions
        trial = synthetic_trial(number, spec, params, dists, clock, rng,
                                running=number >= n_trials)
        trials.append(trial)
        clock = trial.datetime_complete or clock
    # Shift the clock so the last trial started a minute ago: a running trial's bar then ends
    # "now" on the timeline, as it does in a real search.
    shift = datetime.now() - timedelta(minutes=1) - max((t.datetime_start for t in trials),
                                                        default=clock)
    for t in trials:
        t.datetime_start += shift
        if t.datetime_complete is not None:
            t.datetime_complete += shift
    study.add_trials(trials)
    return study
