"""Where one command's wall time goes, process by process: it runs ``automl-cnn search ARGS``
with ``AUTOML_CNN_TIMELINE`` set (``automl_cnn/timeline.py``), then reads back the marks the
command and each worker wrote and gives every event's offset from the moment the command was
started, plus the figures that bound start-up: when the first training step ran anywhere, when
each worker was ready (started, imported, data on its device, study open) and its first trial
started. Optionally it first times the imports and CUDA's start in fresh processes.

    python benchmarks/bench_timeline.py --json t.json -- --trials 100 --no-mlflow
    python benchmarks/bench_timeline.py --imports -- --trials 20 --space tiny --no-mlflow
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from emit import emit  # noqa: E402

IMPORTS = ("torch", "lightning.pytorch", "optuna", "optuna_integration", "plotly",
           "automl_cnn.runners.search")
CUDA_START = ("import time, torch; t = time.perf_counter(); torch.cuda.init(); "
              "torch.zeros(1, device='cuda').sum().item(); print(time.perf_counter() - t)")


def import_seconds() -> dict[str, float]:
    """Each module's import in a fresh process, alone (so shared dependencies count in each)."""
    out = {}
    for module in IMPORTS:
        code = f"import time; t = time.perf_counter(); import {module}; " \
               "print(time.perf_counter() - t)"
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        out[module] = round(float(run.stdout), 3) if run.returncode == 0 else None
    run = subprocess.run([sys.executable, "-c", CUDA_START], capture_output=True, text=True)
    out["cuda start (after import torch)"] = round(float(run.stdout), 3) \
        if run.returncode == 0 else None
    return out


def read_marks(path: Path, began: float) -> dict[str, list[tuple[float, str]]]:
    """{pid: [(seconds since the command started, event), ...]} in time order."""
    by_pid: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        stamp, pid, event = line.split(" ", 2)
        by_pid[pid].append((round(float(stamp) - began, 3), event))
    return {pid: sorted(marks) for pid, marks in by_pid.items()}


def summarise(marks: dict[str, list[tuple[float, str]]], wall: float) -> dict[str, Any]:
    command = next((m for m in marks.values() if any(e.startswith("command:") for _, e in m)), [])
    first = {e: t for t, e in reversed(command)}
    workers = []
    for pid, rows in marks.items():
        named = [e for _, e in rows if re.match(r"(worker|warm) \d+: started", e)]
        if not named or rows is command:
            continue
        # "worker 3: ready" -> "worker ready", "warm: imported" -> "warm imported"
        at = {re.sub(r"^(worker|warm)( \d+)?: ", r"\1 ", e): t for t, e in reversed(rows)}
        trials = [t for t, e in rows if e.endswith(": started") and e.startswith("trial")]
        workers.append({"process": named[-1].split(":")[0], "pid": pid,
                        "warm_started": at.get("warm started"),
                        "warm_ready": at.get("warm ready"),
                        "work_started": at.get("worker started"),
                        "imported": at.get("worker imported"),
                        "data": at.get("worker data on the device"),
                        "ready": at.get("worker ready"),
                        "first_trial": trials[0] if trials else None,
                        "first_step": at.get("first training step"), "trials": len(trials),
                        # its work ended here; the parent sees the process end later
                        "done": at.get("worker done")})
    steps = [t for rows in marks.values() for t, e in rows if e == "first training step"]
    return {"wall_s": round(wall, 3), "first_step_s": min(steps) if steps else None,
            "command": {e: t for e, t in sorted(first.items(), key=lambda kv: kv[1])},
            "workers": sorted(workers, key=lambda w: w["process"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--imports", action="store_true",
                        help="time the imports and CUDA's start in fresh processes first")
    parser.add_argument("args", nargs=argparse.REMAINDER,
                        help="after --: the arguments of automl-cnn search")
    args = parser.parse_args()
    search = [a for a in args.args if a != "--"]
    result: dict[str, Any] = {"command": "automl-cnn search " + " ".join(search)}
    if args.imports:
        result["imports_s"] = import_seconds()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "timeline.txt"
        env = {**os.environ, "AUTOML_CNN_TIMELINE": str(path)}
        if "--out" not in search:
            search += ["--out", str(Path(tmp) / "run")]
        began = time.time()
        run = subprocess.run(["automl-cnn", "search", "--no-progress", *search], env=env,
                             cwd=tmp, capture_output=True, text=True)
        wall = time.time() - began
        if run.returncode:
            sys.exit(f"the command failed ({run.returncode}):\n{run.stderr[-3000:]}")
        result.update(summarise(read_marks(path, began), wall))
        summary = Path(tmp) / "run" / "summary.json"
        if summary.exists():
            import json

            data = json.loads(summary.read_text())
            result["phases"] = data.get("phases")
            result["test"] = (data.get("test") or {}).get("accuracy")
    emit(result, args.json)


if __name__ == "__main__":
    main()
