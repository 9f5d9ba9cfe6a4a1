"""MLflow tracking against real stores: a real ``mlflow server`` (started by ``automl-cnn ui``)
and a local sqlite file. Each search is small (tiny space, a few trials)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mlflow
import pytest
import torch
from mlflow import MlflowClient

from automl_cnn.arch import ArchSpec
from automl_cnn.checkpoint import load_checkpoint
from automl_cnn.cli import main
from automl_cnn.config import SearchConfig
from automl_cnn.errors import UserError
from automl_cnn.record import Outcome, Promotion, TrialRecord, records
from automl_cnn.results import ranked_trials
from automl_cnn.rundir import RunDir
from automl_cnn.tracking import Tracker, make_tracker
from automl_cnn.tracking.mlflow_tracker import RUN_STATUS, MlflowTracker
from tracking_server import (  # noqa: F401 - fixtures are found by name
    Server, mlflow_server, runs_of, tracking_env, trial_run_started)


# -- what every tracked search must look like ------------------------------------------------
def check_tracked(client: MlflowClient, study: Any, *, experiment: str,
                  tmp_path: Path) -> dict[int, Any]:
    """One parent, one child per trial, right params, histories, states, tags, artifacts."""
    runs = runs_of(client, experiment)
    assert [r.info.status for r in runs if r.info.status == "RUNNING"] == []
    parents = [r for r in runs if r.data.tags.get("automl_cnn.role") == "parent"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.data.params["space"] == "tiny" and parent.data.params["sampler"] == "tpe"
    children = {int(r.data.tags["automl_cnn.trial"]): r for r in runs
                if r.data.tags.get("automl_cnn.role") == "trial"}
    assert sorted(children) == [t.number for t in study.trials]
    for trial in records(study):
        run, outcome = children[trial.number], trial.outcome
        assert run.info.run_name == f"trial-{trial.number:03d}"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["automl_cnn.state"] == outcome
        assert run.info.status == RUN_STATUS[outcome]
        assert run.data.params == {k: str(v) for k, v in trial.hyperparameters.items()}
        if outcome == "infeasible":
            assert run.data.tags["automl_cnn.reason"] == trial.reason
            assert "val_acc" not in run.data.metrics
            continue
        assert run.data.metrics["params"] == trial.plan.params
        assert run.data.metrics["flops"] == trial.plan.flops
        assert run.data.metrics["receptive_field"] == trial.plan.receptive_field
        epochs = trial.epochs_trained
        for key in ("train_loss", "val_loss", "val_acc"):
            history = client.get_metric_history(run.info.run_id, key)
            assert sorted(m.step for m in history) == list(range(epochs)), key
        val_acc = {m.step: m.value for m in client.get_metric_history(run.info.run_id,
                                                                       "val_acc")}
        assert val_acc == pytest.approx({int(r["epoch"]): r["val_acc"]
                                         for r in trial.history})
        if outcome == "pruned":
            assert run.data.tags["automl_cnn.pruned_epoch"] == str(trial.pruned_epoch)
        folder = Path(client.download_artifacts(run.info.run_id, "architecture",
                                                str(tmp_path / f"art-{trial.number}")))
        spec = ArchSpec.from_json((folder / "arch.json").read_text())
        assert spec == trial.spec
        assert "block1.conv" in (folder / "layers.txt").read_text()
    best = ranked_trials(study)[0]
    assert parent.data.metrics["best_val_acc"] == pytest.approx(best.values[0])
    assert parent.data.tags["automl_cnn.best_trial"] == str(best.number)
    return children


# -- searches against real stores ------------------------------------------------------------
@pytest.mark.slow
def test_search_on_a_tracking_server(mlflow_server: Server, tmp_path: Path, tracking_env: Any,
                                     capsys: pytest.CaptureFixture) -> None:
    from automl_cnn.data import load_dataset
    from automl_cnn.runners.search import run_search

    assert f"http://127.0.0.1:{mlflow_server.port}" in mlflow_server.banner
    config = SearchConfig(trials=4, space="tiny", out=str(tmp_path / "run"),
                          study_name="served", tracking_uri=mlflow_server.url)
    outcome = run_search(config, progress=False)
    assert "View run" not in capsys.readouterr().out  # no MLflow line per trial on the terminal
    client = MlflowClient(mlflow_server.url)
    children = check_tracked(client, outcome.study, experiment="served", tmp_path=tmp_path)

    # The registry's champion is the final model: the best trial's network fitted on train +
    # validation after the search, as kept on disk in RUN_DIR/final.
    best = ranked_trials(outcome.study)[0]
    champion = client.get_model_version_by_alias("served", "champion")
    final_run = client.get_run(champion.run_id)
    assert champion.run_id not in {c.info.run_id for c in children.values()}
    assert final_run.data.tags["automl_cnn.role"] == "final"
    assert final_run.data.tags["automl_cnn.trial"] == str(best.number)
    versions = client.search_model_versions("name = 'served'")
    assert int(champion.version) == max(int(v.version) for v in versions)
    tracking_env(mlflow_server.url)
    loaded = mlflow.pytorch.load_model("models:/served@champion")
    kept, _, _ = load_checkpoint(RunDir(outcome.run_dir).final)
    x = load_dataset("digits", seed=0).x_val[:64].float().div(255.0)
    with torch.no_grad():
        assert torch.allclose(loaded(x), kept(x), atol=1e-5)


@pytest.mark.slow
def test_search_on_a_local_sqlite_store(tmp_path: Path) -> None:
    from automl_cnn.runners.search import run_search

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = SearchConfig(trials=2, space="tiny", out=str(tmp_path / "run"), tracking_uri=uri,
                          experiment="local-exp", model_name="local-cnn")
    env_before = os.environ.get("MLFLOW_TRACKING_URI")
    outcome = run_search(config, progress=False)
    assert os.environ.get("MLFLOW_TRACKING_URI") == env_before  # MLflow's globals put back
    assert mlflow.get_tracking_uri() != uri
    client = MlflowClient(uri)
    check_tracked(client, outcome.study, experiment="local-exp", tmp_path=tmp_path)
    assert client.get_model_version_by_alias("local-cnn", "champion").run_id


@pytest.mark.slow
def test_ctrl_c_leaves_no_running_run_and_a_second_process_reuses_the_parent(
        tmp_path: Path) -> None:
    from automl_cnn.runners.search import run_search

    uri, out = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "run"
    client = MlflowClient(uri)
    proc = subprocess.Popen(
        [sys.executable, "-m", "automl_cnn", "search", "--trials", "40", "--space", "tiny",
         "--out", str(out), "--tracking-uri", uri, "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not trial_run_started(client, "digits-tiny", 1):  # Ctrl-C in trial 1
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    assert "Resume with" in output and "--resume" in output
    runs = runs_of(client, "digits-tiny")
    assert all(r.info.status != "RUNNING" for r in runs)
    parents = [r for r in runs if r.data.tags["automl_cnn.role"] == "parent"]
    assert [p.info.status for p in parents] == ["KILLED"]
    for run in runs:
        if run.data.tags.get("automl_cnn.state") == "interrupted":
            assert run.info.status == "KILLED"

    # This process attaches to the study the killed one made: same parent, no second one.
    before = {r.info.run_id for r in runs}
    resumed = run_search(SearchConfig(trials=1, space="tiny", out=str(out), tracking_uri=uri),
                         resume=True, progress=False)
    runs = runs_of(client, "digits-tiny")
    parents = [r for r in runs if r.data.tags["automl_cnn.role"] == "parent"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    new = [r for r in runs if r.info.run_id not in before]  # one trial, then the final fit
    assert sorted(r.data.tags["automl_cnn.role"] for r in new) == ["final", "trial"]
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in new)
    (trial,) = [r for r in new if r.data.tags["automl_cnn.role"] == "trial"]
    # the trial it trained: the one finished last (queued neighbours may follow it, untrained)
    done = [t for t in resumed.study.trials if t.datetime_complete is not None]
    last = max(done, key=lambda t: t.datetime_complete)
    assert trial.data.tags["automl_cnn.trial"] == str(last.number)


# -- small pieces ----------------------------------------------------------------------------
def test_a_late_promotions_and_a_neighbours_runs_name_the_trial_they_come_from(
        tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = SearchConfig(space="tiny", study_name="late", tracking_uri=uri)
    tracker = MlflowTracker(config)
    tracker.start_search(config, settings={})
    tracker.start_trial(9, {"depth": 1})
    tracker.start_trial(10, {"depth": 2})
    promoted, neighbour = tracker.runs[9], tracker.runs[10]
    tracker.end_trial(TrialRecord(9, Outcome.COMPLETE, promotion=Promotion(4, 1, 4)))
    tracker.end_trial(TrialRecord(10, Outcome.PRUNED, neighbour_of=9))
    tracker.end_search(status="FINISHED", summary={})
    client = MlflowClient(uri)
    assert client.get_run(promoted).data.tags["automl_cnn.promoted_from"] == "4"
    assert "automl_cnn.neighbour_of" not in client.get_run(promoted).data.tags
    assert client.get_run(neighbour).data.tags["automl_cnn.neighbour_of"] == "9"


def test_no_mlflow_is_the_null_tracker() -> None:
    assert type(make_tracker(SearchConfig(mlflow=False))) is Tracker


def test_bad_model_name_is_refused_before_any_mlflow_call() -> None:
    with pytest.raises(UserError, match="model-name"):
        MlflowTracker(SearchConfig(model_name="a/b", tracking_uri="http://127.0.0.1:9"))


def test_ui_refuses_a_busy_port(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        code = main(["ui", "--port", str(port), "--tracking-uri",
                     f"sqlite:///{tmp_path / 'mlflow.db'}"])
    assert code == 2 and f"port {port}" in capsys.readouterr().err


def test_ui_on_a_server_uri_points_at_it(capsys: pytest.CaptureFixture) -> None:
    assert main(["ui", "--tracking-uri", "http://127.0.0.1:5999"]) == 0
    assert "http://127.0.0.1:5999" in capsys.readouterr().out
