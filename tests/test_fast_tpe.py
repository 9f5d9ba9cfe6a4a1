"""CachedTPESampler suggests exactly what the stock TPESampler suggests, trial by trial."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from automl_cnn import search_spaces
from automl_cnn.fast_tpe import CachedTPESampler
from automl_cnn.strategies import CACHED_TPE_CHECKED_ON, make_sampler

SPACE = search_spaces.load_space("default")
ARGS: dict[str, Any] = {"multivariate": True, "group": True, "n_startup_trials": 10,
                        "constant_liar": True}


@pytest.fixture(autouse=True)
def _quiet() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        level = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        yield
        optuna.logging.set_verbosity(level)


def score(params: dict[str, Any]) -> float:
    """A deterministic function of the params."""
    total = 0.0
    for i, (name, value) in enumerate(sorted(params.items())):
        x = len(value) if isinstance(value, str) else float(value)
        total += math.sin(1.7 * i + x * (1 + len(name) % 5))
    return total


class Driver:
    """Asks and tells like a worker pool: some trials pruned, failed or infeasible, and a few
    left RUNNING for a while (so constant liar matters) and finished out of order."""

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        self.open: list[optuna.Trial] = []
        self.params: list[str] = []

    def step(self, i: int) -> None:
        trial = self.study.ask()
        SPACE.sample(trial, flip_ok=True)
        self.params.append(repr(sorted(trial.params.items())))
        if i % 9 == 4:
            self.open.append(trial)  # stays RUNNING for a few trials
        else:
            self.finish(trial, i)
        if len(self.open) > 2 or (self.open and i % 9 == 8):
            self.finish(self.open.pop(0), i + 1)

    def finish(self, trial: optuna.Trial, i: int) -> None:
        value = score(trial.params)
        if i % 7 == 3:
            trial.report(value, step=1 + i % 3)
            self.study.tell(trial, state=TrialState.PRUNED)
        elif i % 13 == 6:
            self.study.tell(trial, state=TrialState.FAIL)
        else:
            trial.set_constraint("latency", 1.0 if i % 10 == 2 else -1.0)
            self.study.tell(trial, value)


def run(sampler: optuna.samplers.BaseSampler, n: int,
        storage: Any = None, name: str | None = None) -> Driver:
    study = optuna.create_study(sampler=sampler, direction="maximize", storage=storage,
                                study_name=name)
    driver = Driver(study)
    for i in range(n):
        driver.step(i)
    return driver


def test_same_suggestions_as_stock_tpe() -> None:
    stock = run(optuna.samplers.TPESampler(seed=3, **ARGS), 60)
    fast = run(CachedTPESampler(seed=3, **ARGS), 60)
    assert fast.params == stock.params
    states = {t.state for t in fast.study.get_trials()}
    assert {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL,
            TrialState.RUNNING} <= states
    assert len(set(fast.params)) == 60


def test_same_suggestions_after_reload(tmp_path: Path) -> None:
    """A second sampler object picks up a study half-way, with RUNNING trials left open, on a
    storage shared by both studies (the caches are per study)."""
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "study.journal")))
    params = {}
    for label, cls in (("stock", optuna.samplers.TPESampler), ("fast", CachedTPESampler)):
        first = run(cls(seed=5, **ARGS), 25, storage, label)
        study = optuna.load_study(study_name=label, storage=storage,
                                  sampler=cls(seed=6, **ARGS))
        second = Driver(study)
        second.open = [optuna.Trial(study, t._trial_id) for t in first.open]
        for i in range(25, 45):
            second.step(i)
        params[label] = first.params + second.params
    assert params["fast"] == params["stock"]


@pytest.mark.parametrize("release", ["5.0.0", "5.0.1"])
def test_the_default_strategy_uses_it_on_the_optuna_it_was_proved_on(
        monkeypatch: pytest.MonkeyPatch, release: str) -> None:
    monkeypatch.setattr(optuna, "__version__", release)
    sampler = make_sampler("tpe", seed=0)
    assert isinstance(sampler, CachedTPESampler)
    assert sampler._constant_liar and sampler._group and sampler._n_startup_trials == 10
    assert release.startswith(CACHED_TPE_CHECKED_ON)


def test_another_optuna_release_gets_the_stock_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    # The cache copies one release's internals; a release it was not proved on must not use it.
    monkeypatch.setattr(optuna, "__version__", "5.1.0")
    sampler = make_sampler("tpe", seed=0)
    assert type(sampler) is optuna.samplers.TPESampler and sampler._constant_liar
