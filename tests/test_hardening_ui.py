"""Issue 13, item 6: ``automl-cnn ui`` stopped by SIGTERM (a supervisor, ``docker stop``,
``kill``) stops its ``mlflow server`` and every process that server started: a real server,
a real signal, then the port must be free and neither the server nor its workers left."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from automl_cnn.cli.ui import HOST


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def descendants(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    children = [int(p) for p in path.read_text().split()] if path.exists() else []
    return children + [d for c in children for d in descendants(c)]


def wait_for_ui(port: int, ui: subprocess.Popen[str], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert ui.poll() is None, ui.communicate()
        try:
            urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=2).close()
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the MLflow UI did not answer on port {port} in {timeout}s")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_ui_stops_its_mlflow_server_on_a_signal(tmp_path: Path, sig: int) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    ui = subprocess.Popen(
        [sys.executable, "-m", "automl_cnn", "ui", "--port", str(port),
         "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tree: list[int] = []
    try:
        wait_for_ui(port, ui)
        tree = descendants(ui.pid)  # mlflow server and the uvicorn worker it starts
        assert len(tree) >= 2
        ui.send_signal(sig)  # to the ui process only, as `kill` or a supervisor does
        output, _ = ui.communicate(timeout=60)
        assert ui.returncode == 0, output
        assert "Traceback" not in output
        assert [p for p in tree if alive(p)] == []  # the server and its workers are gone
        with socket.socket() as sock:
            # As a restarted server binds: SO_REUSEADDR passes the health checks' TIME_WAIT
            # connections, while a process still listening on the port fails the bind.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((HOST, port))  # the port is free again
    finally:
        for pid in [ui.pid, *tree]:  # only what this test started, by id
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        ui.wait()
