"""Issue 13, item 14: infeasible trials (COMPLETE, worst value, no epoch) do not count toward
the pruner's start-up trials; trained trials do, exactly as before."""

from __future__ import annotations

import optuna
import pytest

from automl_cnn.pruning import TrainedTrialsOnly

optuna.logging.set_verbosity(optuna.logging.WARNING)


def study_with(infeasible: int, trained: list[float], pruner: optuna.pruners.BasePruner
               ) -> optuna.Study:
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for _ in range(infeasible):  # scored the worst value without training: no epoch
        study.add_trial(optuna.trial.create_trial(value=0.0))
    for acc in trained:
        study.add_trial(optuna.trial.create_trial(value=acc, intermediate_values={1: acc}))
    return study


def should_prune(study: optuna.Study, epoch_acc: float) -> bool:
    trial = study.ask()
    trial.report(epoch_acc, step=1)
    return bool(trial.should_prune())


@pytest.mark.parametrize("kind", ["median", "percentile"])
def test_infeasible_trials_do_not_end_the_pruners_start_up(kind: str) -> None:
    def make() -> optuna.pruners.BasePruner:
        return (optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
                if kind == "median" else
                optuna.pruners.PercentilePruner(25.0, n_startup_trials=5, n_warmup_steps=1))

    # Plain Optuna: five infeasible trials and one trained one already prune against it.
    assert should_prune(study_with(5, [0.9], make()), 0.5)
    # Wrapped: one trained trial is not five; the start-up goes on.
    assert not should_prune(study_with(5, [0.9], TrainedTrialsOnly(make())), 0.5)
    # After five trained trials it prunes exactly as the plain pruner does.
    trained = [0.9, 0.85, 0.8, 0.95, 0.9]
    for acc, plain in ((0.5, True), (0.99, False)):
        assert should_prune(study_with(5, trained, TrainedTrialsOnly(make())), acc) is plain
        assert should_prune(study_with(5, trained, make()), acc) is plain
