"""The headline target: `automl-cnn search --trials 100` on digits, on this machine's CPU.

Runs the real CLI (default space, TPE + median pruner, MLflow tracking on unless --no-mlflow)
for each seed and prints wall time, trial outcomes and the best model's test accuracy.
Target (issue 2): at most 180 s and at least 98.5 % test accuracy on a 2-core CPU.

    python benchmarks/bench_search.py [--trials 100] [--seeds 0 1] [--no-mlflow] \
        [--precisions auto 32]

With several ``--precisions`` each seed runs once per precision, in turns (seed 0 auto, seed 0
32, seed 1 auto, ...), so the two sides share the machine's moods.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(trials: int, seed: int, mlflow: bool, workdir: Path,
             precision: str = "auto") -> dict:
    out = workdir / f"seed{seed}-{precision}"
    cmd = [sys.executable, "-m", "automl_cnn", "search", "--trials", str(trials), "--seed",
           str(seed), "--out", str(out), "--no-progress", "--precision", precision]
    cmd += [] if mlflow else ["--no-mlflow"]
    env_uri = f"sqlite:///{workdir / 'mlflow.db'}"
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=workdir,
                   env={**__import__("os").environ, "MLFLOW_TRACKING_URI": env_uri})
    wall = time.perf_counter() - started
    summary = json.loads((out / "summary.json").read_text())
    final = summary.get("final") or {}
    return {"seed": seed, "precision": precision, "wall_s": wall, "counts": summary["counts"],
            "best_val": summary["best"]["value"], "test_acc": summary["test"]["accuracy"],
            "phases": summary.get("phases") or {},
            "members": final.get("members") or [], "epochs": final.get("member_epochs") or []}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--precisions", nargs="+", default=["auto"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_once(args.trials, s, not args.no_mlflow, Path(tmp), p)
                for s in args.seeds for p in args.precisions]
    print("| seed | precision | wall (s) | complete / pruned / infeasible / failed | best val acc "
          "| test acc | final model: trials (epochs) | phases (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        c = r["counts"]
        members = ", ".join(f"{m} ({e})" for m, e in zip(r["members"], r["epochs"]))
        phases = ", ".join(f"{k} {v:.1f}" for k, v in r["phases"].items())
        print(f"| {r['seed']} | {r['precision']} | {r['wall_s']:.0f} | {c['complete']} / "
              f"{c['pruned']} / {c['infeasible']} / {c['failed']} | {r['best_val']:.4f} "
              f"| {r['test_acc']:.4f} | {members} | {phases} |")

if __name__ == "__main__":
    main()
