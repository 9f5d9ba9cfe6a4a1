"""Which hyperparameters mattered: Optuna's importance evaluators over completed trials.

Only trials that trained to their full budget count, scored by final validation accuracy (so
infeasible trials' stand-in zeros and multi-objective studies do not skew it). The default
evaluator is PED-ANOVA: on a 1,000-trial study it takes a fraction of a second where fANOVA
(a random forest) takes several (see ``benchmarks/bench_dashboard.py``), and it handles the
conditional parameters of deeper blocks.

Example:
    >>> imp = param_importances(trial_rows(study.get_trials()))
    >>> imp.names[:3], imp.method
    (['optim.lr', 'block1.filters', 'depth'], 'PED-ANOVA')
"""

from __future__ import annotations

import logging
import warnings

import optuna
from optuna.importance import (
    BaseImportanceEvaluator,
    FanovaImportanceEvaluator,
    MeanDecreaseImpurityImportanceEvaluator,
    PedAnovaImportanceEvaluator,
)

from .data import Importances, TrialRow, completed

log = logging.getLogger(__name__)

EVALUATORS = {"ped-anova": "PED-ANOVA", "fanova": "fANOVA", "mdi": "mean decrease impurity"}


def make_evaluator(name: str, *, seed: int = 0) -> BaseImportanceEvaluator:
    if name == "fanova":
        return FanovaImportanceEvaluator(seed=seed)
    if name == "mdi":
        return MeanDecreaseImpurityImportanceEvaluator(seed=seed)
    if name == "ped-anova":
        return PedAnovaImportanceEvaluator()
    raise ValueError(f"evaluator must be one of {', '.join(EVALUATORS)}, but got {name=}.")


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
        optuna.trial.create_trial(params=r.params, distributions=r.distributions,
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
                       EVALUATORS[evaluator])
