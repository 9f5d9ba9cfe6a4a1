"""A real MLflow tracking server for the tracking tests (``automl-cnn ui`` on a free port), and
small readers of what a search left in it. Imported by the test modules (not collected)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

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

    def groups(self) -> set[int]:
        """The process groups to signal: ``ui``'s own, and its ``mlflow server``'s (``ui`` puts
        the server in a group of its own, so a SIGKILL to ``ui`` alone would leave it serving)."""
        found = {self.proc.pid}
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return found
        for child in map(int, children.split()):
            try:
                found.add(os.getpgid(child))
            except ProcessLookupError:
                pass
        return found

    def send(self, sig: int) -> None:
        for group in self.groups():
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                pass

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.send(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.send(signal.SIGKILL)
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


def runs_of(client: MlflowClient, experiment: str) -> list[Any]:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r}"
    return client.search_runs([exp.experiment_id], run_view_type=ViewType.ACTIVE_ONLY,
                              max_results=1000)


def trial_run_started(client: MlflowClient, experiment: str, number: int) -> bool:
    if not Path(client.tracking_uri[len("sqlite:///"):]).exists():
        return False
    try:
        exp = client.get_experiment_by_name(experiment)
        return exp is not None and bool(client.search_runs(
            [exp.experiment_id], filter_string=f"tags.`automl_cnn.trial` = '{number}'"))
    except mlflow.exceptions.MlflowException:  # the search holds a write lock: ask again
        return False
