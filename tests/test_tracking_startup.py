"""Issue 11: MLflow costs the search nothing before its first training step. The tracker is set
up (MLflow imported, its store opened, the parent run made) on a background thread while the
first trial trains; everything recorded meanwhile still lands, in order. Input that cannot work
(an unreachable server, a missing store folder, a bad model name) still fails first, before
MLflow is imported or any file is written."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from automl_cnn.config import SearchConfig
from automl_cnn.errors import UserError
from automl_cnn.tracking import Tracker
from automl_cnn.tracking.deferred import DeferredTracker
from automl_cnn.tracking.mlflow_tracker import MlflowTracker
from test_tracking import check_tracked
from tracking_server import free_port


class Recording(Tracker):
    """Hooks as (name, thread) pairs, to check order and where they ran."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, str]] = []

    def _note(self, name: str, arg: Any) -> None:
        self.calls.append((name, arg, threading.current_thread().name))

    def start_trial(self, number: int, params: dict[str, Any]) -> None:
        self._note("start_trial", number)

    def log_epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        self._note("log_epoch", epoch)

    def end_search(self, *, status: str, summary: dict[str, Any]) -> None:
        self._note("end_search", status)


def test_hooks_called_during_setup_are_replayed_in_order_then_run_inline() -> None:
    gate, inner = threading.Event(), Recording()

    def build() -> Tracker:
        gate.wait(30)
        return inner

    tracker = DeferredTracker(build)
    tracker.start_trial(0, {"a": 1})
    for epoch in range(3):
        tracker.log_epoch(0, epoch, {"val_acc": 0.5})
    assert inner.calls == []  # queued: the caller did not wait
    gate.set()
    tracker.end_search(status="FINISHED", summary={})  # waits for the queue first
    main = threading.current_thread().name
    assert [(n, a) for n, a, _ in inner.calls] == [
        ("start_trial", 0), ("log_epoch", 0), ("log_epoch", 1), ("log_epoch", 2),
        ("end_search", "FINISHED")]
    assert {t for n, _, t in inner.calls if n != "end_search"} == {"automl-cnn-tracking-setup"}
    assert inner.calls[-1][2] == main
    tracker.start_trial(1, {})  # set up: runs on the caller's thread
    assert inner.calls[-1] == ("start_trial", 1, main)


def test_a_setup_error_is_raised_once_by_the_next_hook() -> None:
    def build() -> Tracker:
        raise UserError("cannot open the MLflow tracking store x")

    tracker = DeferredTracker(build, wait=0.0)  # begins at once
    tracker._done.wait(30)  # the setup has failed by now
    with pytest.raises(UserError, match="cannot open the MLflow tracking store x"):
        tracker.start_trial(0, {})
    tracker.log_epoch(0, 0, {})  # then nothing more is recorded, as when make_tracker raised
    tracker.end_search(status="FAILED", summary={})


def test_the_setup_begins_at_the_first_step_or_when_a_hook_needs_it() -> None:
    """MLflow's import waits for the first training step (it would slow the step's set-up),
    unless a hook needs the tracker first, or nothing trains for ``wait`` seconds."""
    built: list[str] = []

    def build() -> Tracker:
        built.append(threading.current_thread().name)
        return Recording()

    step = threading.Event()
    stepped = DeferredTracker(build, start=step, wait=600)
    stepped.start_trial(0, {})
    stepped._done.wait(0.3)
    assert built == []  # no step yet: the setup has not begun
    step.set()
    assert stepped._done.wait(30) and built == ["automl-cnn-tracking-setup"]

    needed = DeferredTracker(build, start=threading.Event(), wait=600)
    needed.ready()  # nothing trained, but the tracker is needed: it is built now
    assert len(built) == 2

    idle = DeferredTracker(build, start=threading.Event(), wait=0.05)
    assert idle._done.wait(30) and len(built) == 3  # nothing trained for `wait` seconds


@pytest.mark.slow
def test_the_first_training_step_does_not_wait_for_mlflow(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tracker's setup is held until the first training step: a search that waited for
    MLflow before training would never get there. Everything is recorded all the same."""
    import automl_cnn.training as training
    from automl_cnn.runners.search import run_search

    stepped, built_on = threading.Event(), []
    real_init, real_step = MlflowTracker.__init__, training.CNNModule.training_step

    def held_init(self: MlflowTracker, config: SearchConfig) -> None:
        built_on.append(threading.current_thread().name)
        assert stepped.wait(120), "the search waited for MLflow before its first training step"
        real_init(self, config)

    def first_step(self: Any, *args: Any) -> Any:
        stepped.set()
        return real_step(self, *args)

    monkeypatch.setattr(MlflowTracker, "__init__", held_init)
    monkeypatch.setattr(training.CNNModule, "training_step", first_step)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = SearchConfig(trials=2, space="tiny", out=str(tmp_path / "run"), tracking_uri=uri,
                          experiment="startup-exp", model_name="startup-cnn")
    outcome = run_search(config, progress=False)
    assert built_on == ["automl-cnn-tracking-setup"]
    client = MlflowClient(uri)
    children = check_tracked(client, outcome.study, experiment="startup-exp", tmp_path=tmp_path)
    assert all(c.info.status == "FINISHED" for c in children.values())
    champion = client.get_model_version_by_alias("startup-cnn", "champion")
    assert client.get_run(champion.run_id).data.tags["automl_cnn.role"] == "final"
    (parent,) = [r for r in client.search_runs([client.get_experiment_by_name(
        "startup-exp").experiment_id]) if r.data.tags.get("automl_cnn.role") == "parent"]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["trials_complete"] + parent.data.metrics.get(
        "trials_pruned", 0) == 2


def test_bad_tracking_input_fails_before_mlflow_is_imported(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from automl_cnn.config import SearchConfig\n"
        "from automl_cnn.errors import UserError\n"
        "from automl_cnn.tracking import make_tracker\n"
        "for uri, name in zip(sys.argv[1::2], sys.argv[2::2]):\n"
        "    try:\n"
        "        make_tracker(SearchConfig(space='tiny', tracking_uri=uri, model_name=name))\n"
        "    except UserError as exc:\n"
        "        print(exc)\n"
        "    else:\n"
        "        raise SystemExit(f'no error for {uri} {name}')\n"
        "assert 'mlflow' not in sys.modules, 'mlflow was imported'\n")
    server = f"http://127.0.0.1:{free_port()}"
    missing = f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}"
    ok = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run([sys.executable, "-c", script, server, "cnn", missing, "cnn",
                           ok, "a/b"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"cannot reach the MLflow tracking server {server}")
    assert f"{tmp_path / 'missing'} does not exist" in lines[1] and "--tracking-uri" in lines[1]
    assert lines[2].startswith("--model-name 'a/b' cannot name a registered MLflow model")
    assert list(tmp_path.iterdir()) == []  # no store, no run folder


def test_a_missing_store_folder_fails_before_any_file_is_written(tmp_path: Path) -> None:
    from automl_cnn.runners.search import run_search

    out = tmp_path / "run"
    uri = f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}"
    with pytest.raises(UserError, match="does not exist; nothing was trained"):
        run_search(SearchConfig(trials=1, space="tiny", out=str(out), tracking_uri=uri))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_store_that_fails_in_the_background_fails_the_search_as_before(
        tmp_path: Path) -> None:
    """A deleted experiment is only found once the store is open (in the background): the
    search stops with the same error at its next tracking call."""
    from automl_cnn.runners.search import run_search

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    client.delete_experiment(client.create_experiment("gone"))
    with pytest.raises(UserError, match="MLflow experiment 'gone' is deleted"):
        run_search(SearchConfig(trials=1, space="tiny", out=str(tmp_path / "run"),
                                tracking_uri=uri, experiment="gone"), progress=False)
