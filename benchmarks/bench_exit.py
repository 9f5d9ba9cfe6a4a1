"""How long a process takes to end once its work is done, with and without
:func:`automl_cnn.ending.end_quickly`.

    python benchmarks/bench_exit.py --rounds 3 [--json exit.json]

Two measurements, each a median over ``--rounds`` fresh processes taken in turns:

* *imports*: a process that imports ``torch``, ``lightning.pytorch`` (and ``mlflow``) and
  prints the time; the exit is the rest of its wall time, plain and with ``end_quickly()``;
* *command*: a 5-trial ``--space tiny`` digits search (``--jobs 1``) through the console
  entry (``python -m automl_cnn``, which ends with ``end_quickly``) against the same search
  through the CLI's plain ``main`` (``sys.exit(main())``, the exit as it was), with
  ``--no-mlflow`` and with MLflow into a fresh sqlite store; the wall time of each, and the
  time from ``summary.json`` being written to the process's end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from emit import emit  # benchmarks/ is on the path when run as a script

IMPORTS = {"torch": "import torch", "lightning": "import lightning.pytorch",
           "lightning+mlflow": "import lightning.pytorch, mlflow"}
QUICK = "from automl_cnn.ending import end_quickly; end_quickly()"
PLAIN_MAIN = "import sys; from automl_cnn.cli import main; sys.exit(main())"


def exit_seconds(imports: str, quick: bool) -> float:
    code = f"import time\n{imports}\n{QUICK if quick else ''}\nprint(time.time(), flush=True)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    ended = time.time()
    return ended - float(run.stdout.split()[-1])


def command_seconds(entry: bool, mlflow: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        args = ["search", "--trials", "5", "--space", "tiny", "--jobs", "1", "--no-progress",
                "--out", str(run_dir)]
        args += [f"--tracking-uri=sqlite:///{tmp}/mlflow.db"] if mlflow else ["--no-mlflow"]
        head = ["-m", "automl_cnn"] if entry else ["-c", PLAIN_MAIN]
        started = time.time()
        subprocess.run([sys.executable, *head, *args], capture_output=True, check=True,
                       cwd=tmp, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        ended = time.time()
        written = (run_dir / "summary.json").stat().st_mtime
        return {"wall_s": ended - started, "after_summary_s": ended - written}


def median(rows: list[dict[str, float]], key: str) -> float:
    return round(statistics.median(r[key] for r in rows), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result: dict[str, Any] = {"imports": {}, "command": {}}
    for name, imports in IMPORTS.items():
        runs: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):
            for quick in (False, True):
                runs[quick].append(exit_seconds(imports, quick))
        result["imports"][name] = {"plain_exit_s": round(statistics.median(runs[False]), 3),
                                   "end_quickly_exit_s": round(statistics.median(runs[True]), 3)}
    for mlflow in (False, True):
        rows: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for _ in range(args.rounds):
            for entry in (False, True):
                rows[entry].append(command_seconds(entry, mlflow))
        plain, quick = rows[False], rows[True]
        result["command"]["mlflow" if mlflow else "no_mlflow"] = {
            "plain_main": {"wall_s": median(plain, "wall_s"),
                           "after_summary_s": median(plain, "after_summary_s")},
            "entry_end_quickly": {"wall_s": median(quick, "wall_s"),
                                  "after_summary_s": median(quick, "after_summary_s")},
            "saved_s": round(median(plain, "wall_s") - median(quick, "wall_s"), 3),
        }
    emit(result, args.json)


if __name__ == "__main__":
    main()
