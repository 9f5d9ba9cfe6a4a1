"""MLflow tracking when things go wrong: an unreachable or lost server, values and models MLflow
cannot store, a process that exits early. The search and its study always carry on."""

from __future__ import annotations

import logging
import math
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow import MlflowClient

from automl_cnn.cli import main
from automl_cnn.config import SearchConfig
from automl_cnn.errors import UserError
from automl_cnn.record import Outcome, TrialRecord, outcome_of
from automl_cnn.rundir import RunDir
from automl_cnn.tracking.mlflow_tracker import MlflowTracker
from tracking_server import (  # noqa: F401 - fixtures are found by name
    TRACKER_LOG, Server, free_port, mlflow_server, runs_of)


# -- faults ----------------------------------------------------------------------------------
def test_unreachable_server_fails_before_anything_is_made(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    from automl_cnn.runners.search import run_search

    url = f"http://127.0.0.1:{free_port()}"
    out = tmp_path / "run"
    with pytest.raises(UserError) as caught:
        run_search(SearchConfig(trials=1, space="tiny", out=str(out), tracking_uri=url))
    assert url in str(caught.value) and "automl-cnn ui" in str(caught.value)
    assert not out.exists()
    code = main(["search", "--trials", "1", "--space", "tiny", "--out", str(out),
                 "--tracking-uri", url])
    assert code == 2 and url in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_values_mlflow_cannot_store_are_handled(mlflow_server: Server,
                                                caplog: pytest.LogCaptureFixture) -> None:
    config = SearchConfig(space="tiny", study_name="odd-values", tracking_uri=mlflow_server.url)
    tracker = MlflowTracker(config)
    with caplog.at_level(logging.WARNING, logger=TRACKER_LOG):
        tracker.start_search(config, settings={"note": "n" * 10_000, "timeout": None})
        tracker.start_trial(0, {"block1.kernel": 3, "long": "p" * 10_000})
        tracker.log_epoch(0, 0, {"train_loss": math.nan, "val_loss": math.inf,
                                 "val_acc": 0.5})
        tracker.end_trial(TrialRecord(0, Outcome.FAILED, reason="r" * 20_000))
        tracker.end_search(status="FINISHED", summary={})
    assert [r for r in caplog.records if r.name == TRACKER_LOG] == []
    client = MlflowClient(mlflow_server.url)
    (run,) = [r for r in runs_of(client, "odd-values")
              if r.data.tags["automl_cnn.role"] == "trial"]
    assert run.info.status == "FAILED" and run.data.tags["automl_cnn.state"] == "failed"
    assert run.data.tags["automl_cnn.reason"].startswith("rrr")
    assert len(run.data.tags["automl_cnn.reason"]) < 20_000
    assert run.data.params["block1.kernel"] == "3" and len(run.data.params["long"]) < 10_000
    assert math.isnan(run.data.metrics["train_loss"]) and run.data.metrics["val_acc"] == 0.5


class Branchy(torch.nn.Module):
    """A network torch.export refuses (control flow on the data)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = x.flatten(1)[:, :10]
        return logits if x.sum() > 0 else -logits


@pytest.mark.slow
def test_a_model_mlflow_cannot_log_does_not_stop_tracking(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = SearchConfig(space="tiny", study_name="branchy", tracking_uri=uri)
    tracker = MlflowTracker(config)
    with caplog.at_level(logging.WARNING, logger=TRACKER_LOG):
        tracker.start_search(config, settings={})
        tracker.start_trial(0, {"depth": 1})
        tracker.new_best(0, 0.9, Branchy(), torch.rand(4, 1, 8, 8))
        tracker.log_epoch(0, 0, {"val_acc": 0.9})
        tracker.end_trial(TrialRecord(0, Outcome.COMPLETE))
        tracker.end_search(status="FINISHED", summary={})
    (warning,) = [r for r in caplog.records if r.name == TRACKER_LOG]
    assert "model" in warning.getMessage() and "Tracking goes on" in warning.getMessage()
    runs = runs_of(MlflowClient(uri), "branchy")
    assert {r.info.status for r in runs} == {"FINISHED"}
    (trial,) = [r for r in runs if r.data.tags["automl_cnn.role"] == "trial"]
    assert trial.data.metrics["val_acc"] == 0.9


@pytest.mark.slow
def test_a_process_that_exits_early_leaves_no_running_run(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    script = (
        "from automl_cnn.config import SearchConfig\n"
        "from automl_cnn.tracking.mlflow_tracker import MlflowTracker\n"
        f"c = SearchConfig(space='tiny', study_name='exits', tracking_uri={uri!r})\n"
        "t = MlflowTracker(c)\n"
        "t.start_search(c, settings={'seed': 0})\n"
        "t.start_trial(0, {'depth': 1})\n"
        "raise SystemExit(3)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 3, done.stderr
    runs = runs_of(MlflowClient(uri), "exits")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"KILLED"}


@pytest.mark.slow
def test_server_lost_mid_search_warns_once_and_the_study_completes(
        mlflow_server: Server, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Kills the module's server, so it is the last test in this file that uses it."""
    from automl_cnn.runners.search import run_search

    server, out = mlflow_server, tmp_path / "run"

    def kill_after_first_trial() -> None:
        while not (RunDir(out).trial_folder(0) / "meta.json").exists():
            time.sleep(0.05)
        server.stop(signal.SIGKILL)

    killer = threading.Thread(target=kill_after_first_trial, daemon=True)
    killer.start()
    try:
        with caplog.at_level(logging.WARNING, logger=TRACKER_LOG):
            outcome = run_search(SearchConfig(trials=2, space="tiny", out=str(out),
                                              study_name="lost", tracking_uri=server.url),
                                 progress=False)
    finally:
        server.stop(signal.SIGKILL)
    warnings = [r for r in caplog.records if r.name == TRACKER_LOG]
    assert len(warnings) == 1 and server.url in warnings[0].getMessage()
    assert len(outcome.study.trials) == 2
    assert all(outcome_of(t) != "running" for t in outcome.study.trials)
    assert outcome.summary["best"] is not None


def test_epoch_metrics_of_a_long_trial_show_before_it_ends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Short trials send their epochs with the last call; slow epochs go out as they end."""
    from automl_cnn.tracking import mlflow_tracker

    monkeypatch.setattr(mlflow_tracker, "SEND_EVERY", 0.0)  # every epoch counts as slow
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = SearchConfig(space="tiny", study_name="live", tracking_uri=uri)
    tracker = MlflowTracker(config)
    tracker.start_search(config, settings={})
    tracker.start_trial(0, {"depth": 1})
    tracker.log_epoch(0, 0, {"val_acc": 0.25})
    client = MlflowClient(uri)
    history = client.get_metric_history(tracker.runs[0], "val_acc")
    assert [(m.step, m.value) for m in history] == [(0, 0.25)]
    tracker.end_trial(TrialRecord(0, Outcome.COMPLETE))
    tracker.end_search(status="FINISHED", summary={})
