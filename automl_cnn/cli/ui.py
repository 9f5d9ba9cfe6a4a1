"""``automl-cnn ui``: open the MLflow UI on the store the searches tracked into.

Runs ``mlflow server`` on 127.0.0.1 (never on all interfaces: the UI has no login) for the
tracking URI a search would use: ``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else
``sqlite:///mlflow.db`` in the current directory.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

HELP = "open the MLflow UI on the searches' tracking store"
HOST = "127.0.0.1"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("ui", help=HELP, description=HELP.capitalize() + ".",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tracking-uri", default=None,
                   help="the store the searches used (default: $MLFLOW_TRACKING_URI, else "
                        "sqlite:///mlflow.db in the current directory)")
    p.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1")
    p.set_defaults(func=run)


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
        print(f"{uri} is already a tracking server: open {uri} in a browser.", flush=True)
        return 0
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be in 1..65535, but got {args.port}.")
    if not _port_free(args.port):
        raise UserError(f"port {args.port} on {HOST} is already in use (another MLflow UI?). "
                        f"Open http://{HOST}:{args.port} if it is one, or pass another --port.")
    print(f"MLflow UI for {uri}\n  http://{HOST}:{args.port}  (Ctrl-C to stop)", flush=True)
    try:
        return subprocess.call(server_command(uri, args.port))
    except KeyboardInterrupt:  # the server got the same Ctrl-C and stops by itself
        return 0


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True
