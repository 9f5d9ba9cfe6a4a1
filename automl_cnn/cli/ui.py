"""``automl-cnn ui``: open the MLflow UI on the store the searches tracked into.

Runs ``mlflow server`` on 127.0.0.1 (never on all interfaces: the UI has no login) for the
tracking URI a search would use: ``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else
``sqlite:///mlflow.db`` in the current directory.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HELP = "open the MLflow UI on the searches' tracking store"
#: MLflow 3.17 picks its GenAI or model-training view from this query parameter (else from the
#: browser's last choice, GenAI at first); the experiment's ``mlflow.experimentKind`` tag,
#: which the tracker sets too, is what other MLflow versions read.
TRAINING_VIEW = "#/experiments?workflowType=machine_learning"
HOST = "127.0.0.1"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("ui", help=HELP, description=HELP.capitalize() + ".",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tracking-uri", default=None,
                   help="the store the searches used (default: $MLFLOW_TRACKING_URI, else "
                        "sqlite:///mlflow.db in the current directory)")
    p.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1")
    p.set_defaults(func=run)


def ui_link(port: int) -> str:
    """The UI's address, opening on the model-training view: MLflow 3 otherwise starts on
    its GenAI overview (traces, tokens), which holds nothing of a search."""
    return f"http://{HOST}:{port}/{TRAINING_VIEW}"


def server_command(uri: str, port: int) -> list[str]:
    """The ``mlflow server`` command line serving ``uri`` on 127.0.0.1:``port``. Artifacts of
    experiments created in the UI go beside a sqlite store (``mlartifacts/``)."""
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
           "--host", HOST, "--port", str(port), "--workers", "1"]
    if uri.startswith("sqlite:///"):
        cmd += ["--artifacts-destination", str(Path(uri[len("sqlite:///"):]).parent
                                               / "mlartifacts")]
    return cmd


def run(args: argparse.Namespace) -> int:
    from automl_cnn.errors import UserError
    from automl_cnn.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    if uri.startswith(("http://", "https://")):
        print(f"{uri} is already a tracking server: open {uri.rstrip('/')}/{TRAINING_VIEW} "
              "in a browser.", flush=True)
        return 0
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be in 1..65535, but got {args.port}.")
    if not _port_free(args.port):
        raise UserError(f"port {args.port} on {HOST} is already in use (another MLflow UI?). "
                        f"Open http://{HOST}:{args.port} if it is one, or pass another --port.")
    print(f"MLflow UI for {uri}\n  {ui_link(args.port)}  (Ctrl-C to stop)", flush=True)
    return serve(server_command(uri, args.port))


def serve(cmd: list[str], *, grace: float = 10.0) -> int:
    """Run the server until it exits, or until Ctrl-C, SIGTERM or SIGHUP, which stop it and
    its own workers (``mlflow server`` starts uvicorn in a process of its own): the port is
    free when this returns. The server runs in its own process group so that one signal
    stops the whole tree, also when a supervisor (``docker stop``, ``kill``) sends it to this
    process only."""
    server = subprocess.Popen(cmd, start_new_session=True)
    stopping: list[int] = []

    def stop(signum: int, _: Any) -> None:
        stopping.append(signum)
        _signal_group(server, signal.SIGTERM)

    watched = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, stop) for s in watched}
    try:
        code = _wait(server, grace, stopping)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        if server.poll() is None:  # an error above: never leave the server behind
            _signal_group(server, signal.SIGKILL)
            server.wait()
    return 0 if stopping else code


def _wait(server: subprocess.Popen[bytes], grace: float, stopping: list[int]) -> int:
    """The server's exit code. Once a stop is asked for, whatever is left of its process
    group after ``grace`` seconds (or after the server itself exits) is killed."""
    deadline: float | None = None
    while True:
        try:
            code = server.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            if stopping and deadline is None:
                deadline = time.monotonic() + grace
            if deadline is not None and time.monotonic() > deadline:
                _signal_group(server, signal.SIGKILL)
            continue
        _signal_group(server, signal.SIGKILL)  # workers outliving the server: none may stay
        return code


def _signal_group(server: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(server.pid, sig)
    except ProcessLookupError:  # already gone
        pass


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True
