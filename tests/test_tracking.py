"""MLflow tracking against real stores: a real ``mlflow server`` (started by ``automl-cnn ui``)
and a local sqlite file. Each search is small (tiny space, a few trials)."""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
import torch
from mlflow import MlflowClient
from mlflow.entities import ViewType

from automl_cnn.arch import ArchSpec
from automl_cnn.checkpoint import load_checkpoint
from automl_cnn.cli import main
from automl_cnn.config import SearchConfig
from automl_cnn.errors import UserError
from automl_cnn.record import Outcome, TrialRecord, outcome_of, records
from automl_cnn.results import ranked_trials
from automl_cnn.rundir import RunDir
from automl_cnn.tracking import Tracker, make_tracker
from automl_cnn.tracking.mlflow_tracker import RUN_STATUS, MlflowTracker

TRACKER_LOG = "automl_cnn.tracking.mlflow_tracker"


# -- a real tracking server ------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``automl-cnn ui`` serving a sqlite store in ``root``; artifacts land in ``root`` too."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "automl_cnn", "ui", "--port", str(self.port),
             "--tracking-uri", f"sqlite:///{root / 'mlflow.db'}"],
            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)  # its own process group, so stop() ends the workers too
        self.banner = self.proc.stdout.readline() + self.proc.stdout.readline()
        deadline = time.monotonic() + 120
        while not self.healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mlflow server did not start: {self.proc.stdout.read()}")
            time.sleep(0.3)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("mlflow-server"))
    yield server
    server.stop()


@pytest.fixture
def tracking_env(monkeypatch: pytest.MonkeyPatch):
    """Point MLflow's own global URI (used by ``mlflow.pytorch.load_model``) at a store."""
    def use(uri: str) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return use


# -- what every tracked search must look like ------------------------------------------------
def runs_of(client: MlflowClient, experiment: str) -> list[Any]:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r}"
    return client.search_runs([exp.experiment_id], run_view_type=ViewType.ACTIVE_ONLY,
                              max_results=1000)


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

    # The registry's champion is the best trial's network, as kept on disk.
    best = ranked_trials(outcome.study)[0]
    champion = client.get_model_version_by_alias("served", "champion")
    assert champion.run_id == children[best.number].info.run_id
    versions = client.search_model_versions("name = 'served'")
    assert int(champion.version) == max(int(v.version) for v in versions)
    tracking_env(mlflow_server.url)
    loaded = mlflow.pytorch.load_model("models:/served@champion")
    kept, _, _ = load_checkpoint(RunDir(outcome.run_dir).trial_folder(best.number))
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
    new = [r for r in runs if r.info.run_id not in before]
    assert len(new) == 1 and new[0].data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    assert new[0].data.tags["automl_cnn.trial"] == str(resumed.study.trials[-1].number)


def trial_run_started(client: MlflowClient, experiment: str, number: int) -> bool:
    if not Path(client.tracking_uri[len("sqlite:///"):]).exists():
        return False
    try:
        exp = client.get_experiment_by_name(experiment)
        return exp is not None and bool(client.search_runs(
            [exp.experiment_id], filter_string=f"tags.`automl_cnn.trial` = '{number}'"))
    except mlflow.exceptions.MlflowException:  # the search holds a write lock: ask again
        return False


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


# -- small pieces ----------------------------------------------------------------------------
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

