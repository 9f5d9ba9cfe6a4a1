"""Start-up cost: ``automl-cnn --help``, and the time from the command to the first trial's first
training step on digits; plus where the import time goes (``python -X importtime``).

    python benchmarks/bench_startup.py --repeats 3 [--json startup.json]

The first step is marked by a wrapper around ``CNNModule.training_step`` in the measured
process (a one-line shim before the CLI's own ``main``), so nothing in the package is changed
for the benchmark. Each figure is the median of ``--repeats`` fresh processes.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from emit import emit  # benchmarks/ is on the path when run as a script

SHIM = """
import os, sys, time
import automl_cnn.training as training
step = training.CNNModule.training_step
def first_step(self, *args):
    if not os.path.exists(os.environ["MARK"]):
        open(os.environ["MARK"], "w").write(repr(time.time()))
    return step(self, *args)
training.CNNModule.training_step = first_step
from automl_cnn.cli import main
sys.exit(main(sys.argv[1:]))
"""
PACKAGES = ("torch", "lightning", "optuna", "optuna_integration", "mlflow", "plotly", "sklearn",
            "scipy", "numpy", "yaml", "safetensors", "tqdm", "automl_cnn")


def time_help() -> float:
    started = time.time()
    subprocess.run(["automl-cnn", "--help"], check=True, capture_output=True)
    return time.time() - started


def time_first_step(extra: list[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        mark = Path(tmp) / "mark"
        env = {**os.environ, "MARK": str(mark)}
        started = time.time()
        subprocess.run([sys.executable, "-c", SHIM, "search", "--trials", "1", "--space", "tiny",
                        "--no-progress", "--out", str(Path(tmp) / "run"), *extra],
                       check=True, capture_output=True, env=env, cwd=tmp)
        return float(mark.read_text()) - started


def import_times(module: str = "automl_cnn.runners.search") -> dict[str, float]:
    """Seconds each top-level package takes to import, first time, under ``module``."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                         capture_output=True, text=True, check=True).stderr
    found: dict[str, float] = {}
    for line in out.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)$", line)
        if m and m.group(3) in PACKAGES:
            found[m.group(3)] = max(found.get(m.group(3), 0.0), int(m.group(1)) / 1e6)
    total = re.findall(r"\|\s+(\d+) \| " + re.escape(module) + "$", out, flags=re.M)
    found["total:" + module] = int(total[-1]) / 1e6 if total else float("nan")
    return {k: round(v, 3) for k, v in sorted(found.items(), key=lambda kv: -kv[1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result: dict[str, Any] = {
        "help_s": round(statistics.median(time_help() for _ in range(args.repeats)), 3),
        "first_step_no_mlflow_s": round(statistics.median(
            time_first_step(["--no-mlflow"]) for _ in range(args.repeats)), 3),
        "first_step_mlflow_s": round(statistics.median(
            time_first_step(["--tracking-uri", "sqlite:///mlflow.db"])
            for _ in range(args.repeats)), 3),
        "imports_s": import_times(),
    }
    emit(result, args.json)


if __name__ == "__main__":
    main()
