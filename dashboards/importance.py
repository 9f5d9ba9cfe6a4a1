"""Which hyperparameters mattered: Optuna's importance evaluators over completed trials.

Only trials that trained to their full budget count, scored by final validation accuracy (so
infeasible trials' stand-in zeros and multi-objective studies do not skew it). The default
evaluator is mean decrease impurity (``mdi``, the impurity drop of a random forest), the one the
report and ``automl-cnn dashboard --importance`` use unless told otherwise; ``ped-anova`` and
``fanova`` are the alternatives in :data:`EVALUATORS` (``benchmarks/bench_dashboard.py`` times
all three at 1,000 trials; fANOVA is the slow one).

Example:
    >>> imp = param_importances(trial_rows(study.get_trials()))  # doctest: +SKIP
    >>> imp.names[:3], imp.method  # doctest: +SKIP
    (['optim.lr', 'block1.filters', 'depth'], 'mean decrease impurity')
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import optuna
from optuna.importance import (
    BaseImportanceEvaluator,
    FanovaImportanceEvaluator,
    MeanDecreaseImpurityImportanceEvaluator,
    PedAnovaImportanceEvaluator,
)

from .data import Importances, TrialRow, completed

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Evaluator:
    """One of Optuna's importance evaluators, by the name the report shows."""

    label: str
    make: Callable[[int], BaseImportanceEvaluator]  # seed -> evaluator


#: ``--importance`` name -> evaluator.
EVALUATORS: dict[str, Evaluator] = {
    "mdi": Evaluator("mean decrease impurity",
                     lambda seed: MeanDecreaseImpurityImportanceEvaluator(seed=seed)),
    "ped-anova": Evaluator("PED-ANOVA", lambda seed: PedAnovaImportanceEvaluator()),
    "fanova": Evaluator("fANOVA", lambda seed: FanovaImportanceEvaluator(seed=seed)),
}


def evaluator_for(name: str) -> Evaluator:
    """The evaluator named ``name``; the error lists the valid names."""
    if name not in EVALUATORS:
        raise ValueError(f"evaluator must be one of {', '.join(EVALUATORS)}, but got {name=}.")
    return EVALUATORS[name]


def make_evaluator(name: str, *, seed: int = 0) -> BaseImportanceEvaluator:
    return evaluator_for(name).make(seed)


def accuracy_study(rows: list[TrialRow]) -> optuna.Study:
    """An in-memory, single-objective study holding the completed trials' accuracies."""
    quiet = logging.getLogger("optuna.storages._in_memory")  # "A new study created" is noise here
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        study = optuna.create_study(direction="maximize")
    finally:
        quiet.setLevel(level)
    study.add_trials([
        optuna.trial.create_trial(params=r.hyperparameters, distributions=r.distributions,
                                  value=r.val_acc)
        for r in completed(rows)
    ])
    return study


def param_importances(rows: list[TrialRow], *, evaluator: str = "mdi",
                      seed: int = 0) -> Importances:
    """Normalised importances, most important first, or a notice saying why there are none."""
    done = completed(rows)
    if len(done) < 2:
        return Importances(notice=f"Parameter importances need at least 2 completed trials; "
                                  f"this study has {len(done)}.")
    if len({r.val_acc for r in done}) < 2:
        return Importances(notice="Every completed trial reached the same accuracy, so no "
                                  "parameter explains a difference.")
    study = accuracy_study(rows)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental-feature warnings
            raw = optuna.importance.get_param_importances(
                study, evaluator=make_evaluator(evaluator, seed=seed))
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        log.warning("parameter importances failed: %s", exc)
        return Importances(notice=f"Optuna could not compute importances here ({exc}).")
    ranked = sorted(raw.items(), key=lambda kv: (-kv[1], kv[0]))
    return Importances([k for k, _ in ranked], [float(v) for _, v in ranked],
                       evaluator_for(evaluator).label)
