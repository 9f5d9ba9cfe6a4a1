"""Issue 13, item 14: weights that cannot be written (a full disk, a read-only or broken
models/ path) cost a warning; the trial stays COMPLETE and the search, summary and report go
on. Simulated with a real unwritable path: ``models`` is a file, so no folder fits under it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from automl_cnn.cli import main


def test_weights_that_cannot_be_saved_cost_a_warning_not_the_search(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "models").write_text("a file where the models folder should be")
    with caplog.at_level(logging.WARNING):
        code = main(["search", "--space", "tiny", "--trials", "2", "--no-mlflow",
                     "--no-progress", "--out", str(run)])
    assert code == 0, capsys.readouterr().err
    assert "Traceback" not in capsys.readouterr().err
    assert "weights could not be saved" in caplog.text
    summary = json.loads((run / "summary.json").read_text())
    assert summary["counts"].get("failed", 0) == 0
    # No trial's weights were kept; the final fit (its own folder) still gives a tested model.
    assert summary["kept_models"] == [] and summary["search_test"] is None
    assert summary["test"]["model"] == "final"
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(run / "study.journal")))
    study = optuna.load_study(study_name=summary["study_name"], storage=storage)
    states = [t.state for t in study.trials]
    assert len(states) == 2 and TrialState.COMPLETE in states and TrialState.FAIL not in states
