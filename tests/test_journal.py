"""The default journal store syncs to disk per trial event, not per line, and reads back
exactly as Optuna's own journal would."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend

from automl_cnn.journal import TrialSyncedJournal
from automl_cnn.storage import make_storage


def _objective(trial: optuna.Trial) -> float:
    return sum(trial.suggest_float(f"x{i}", 0, 1) for i in range(12))


def _syncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    return calls


def test_a_trial_syncs_on_its_state_changes_not_on_each_parameter(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study = optuna.create_study(study_name="s", storage=make_storage(
        f"journal:{tmp_path / 'study.journal'}"))
    assert isinstance(study._storage._backend, TrialSyncedJournal)
    calls = _syncs(monkeypatch)
    study.optimize(_objective, n_trials=3)
    assert len(calls) == 3  # one per finished trial; Optuna's own backend: 3 x 14
    plain = optuna.create_study(study_name="s", storage=optuna.storages.JournalStorage(
        JournalFileBackend(str(tmp_path / "plain.journal"))))
    calls.clear()
    plain.optimize(_objective, n_trials=3)
    assert len(calls) >= 3 * 13


def test_what_it_writes_reads_back_with_optunas_own_backend(tmp_path: Path) -> None:
    path = tmp_path / "study.journal"
    study = optuna.create_study(study_name="s", storage=make_storage(f"journal:{path}"))
    study.set_user_attr("note", "kept")
    study.optimize(_objective, n_trials=4)
    again = optuna.load_study(study_name="s", storage=optuna.storages.JournalStorage(
        JournalFileBackend(str(path))))
    assert [t.params for t in again.trials] == [t.params for t in study.trials]
    assert again.best_value == study.best_value and again.user_attrs == {"note": "kept"}
