"""Pruners that learn only from trials that trained.

An infeasible architecture is told to Optuna as COMPLETE with the worst value, so the sampler
learns to avoid it; but it never trained and reported no epoch. Optuna's median and percentile
pruners count every COMPLETE trial toward their start-up trials, so a burst of infeasible
samples would switch pruning on after a single trained trial, against a "median" of one.
:class:`TrainedTrialsOnly` hides trials without an epoch from the pruner it wraps.

Example:
    >>> pruner = TrainedTrialsOnly(optuna.pruners.MedianPruner(n_startup_trials=5))
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState


class TrainedTrialsOnly(optuna.pruners.BasePruner):
    """``pruner`` deciding as if COMPLETE trials that reported no epoch did not exist."""

    def __init__(self, pruner: optuna.pruners.BasePruner) -> None:
        self.pruner = pruner

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        return self.pruner.prune(_TrainedView(study), trial)  # type: ignore[arg-type]


class _TrainedView:
    """The study as the wrapped pruner sees it: ``get_trials`` leaves out trials that
    completed without an intermediate value; everything else is the study's own."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        return [t for t in self._study.get_trials(deepcopy=deepcopy, states=states)
                if t.state != TrialState.COMPLETE or t.intermediate_values]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


__all__ = ["TrainedTrialsOnly"]
