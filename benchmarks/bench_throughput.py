"""Trials per hour and how busy the device is, ``--jobs 1`` against ``--jobs N``.

Each setting runs the real command (``automl-cnn search ... --no-mlflow``) in a fresh process,
either for a fixed wall time (``--seconds``: ``--timeout``, a flat search of full trainings, or
with ``--as-user`` the default budgeted one) or for a fixed number of trials (``--trials``), while a sampler records how busy the device is:
``nvidia-smi`` every 250 ms on a GPU, the busy share of all cores (``/proc/stat``) on a CPU.
Settings are taken in turns, ``--rounds`` times, so a noisy neighbour hits each alike. It then
measures a training step's achieved TFLOP/s and Lightning's overhead ratio against a bare loop
(``bench_overhead.py``) on the same data and device.

    python benchmarks/bench_throughput.py --dataset digits --trials 30 --jobs 1 2
    python benchmarks/bench_throughput.py --dataset synthetic60k --seconds 60 --jobs 1 auto

``synthetic60k`` writes a 60,000 + 10,000-image 28×28 grey set in MNIST's IDX format (the
``clutter`` generator, 10 classes, numpy only) and searches it as ``mnist:DIR``; ``--dataset
mnist:DIR`` reuses one written before (``python -m automl_cnn.data.clutter --idx DIR``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))


class BusySampler:
    """Samples how busy the device is every 250 ms, in a thread, as (time, percent) pairs:
    ``nvidia-smi`` (mean over the GPUs) on a GPU, all cores' busy share on a CPU."""

    def __init__(self, gpu: bool) -> None:
        self.samples: list[tuple[float, float]] = []
        self._done = threading.Event()
        self.proc = subprocess.Popen(
            ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
             "-lms", "250"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True) if gpu else None
        self.thread = threading.Thread(target=self._gpu if gpu else self._cpu, daemon=True)
        self.thread.start()

    def _gpu(self) -> None:
        gpus = max(1, _gpu_count())
        batch: list[float] = []
        for line in self.proc.stdout:  # one line per GPU per sample
            try:
                batch.append(float(line.strip()))
            except ValueError:
                continue
            if len(batch) == gpus:
                self.samples.append((time.time(), statistics.mean(batch)))
                batch = []

    def _cpu(self) -> None:
        before = _cpu_times()
        while not self._done.wait(0.25):
            now = _cpu_times()
            busy, total = now[0] - before[0], now[1] - before[1]
            self.samples.append((time.time(), 100.0 * busy / max(total, 1)))
            before = now

    def stop(self) -> None:
        self._done.set()
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.thread.join(timeout=10)

    def mean(self, start: float = 0.0, end: float = float("inf")) -> float:
        inside = [p for t, p in self.samples if start <= t <= end]
        return round(statistics.mean(inside), 1) if inside else float("nan")


def _gpu_count() -> int:
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
    return len([line for line in out.splitlines() if line.startswith("GPU")])


def _cpu_times() -> tuple[int, int]:
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def run_once(dataset: str, jobs: str, *, trials: int | None, seconds: float | None,
             space: str, device: str, gpu: bool, work: Path, seed: int,
             as_user: bool = False) -> dict[str, Any]:
    out = work / f"run-{jobs}-{time.time_ns()}"
    cmd = ["automl-cnn", "search", "--dataset", dataset, "--space", space, "--jobs", jobs,
           "--device", device, "--seed", str(seed), "--no-mlflow", "--no-progress",
           "--out", str(out), "--trials", str(trials or 100_000)]
    if seconds:  # --timeout bounds the whole command; flat unless run as a user would
        cmd += ["--timeout", str(seconds)]
        cmd += [] if as_user else ["--no-final-fit", "--ladder", "off"]
    sampler = BusySampler(gpu)
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    sampler.stop()
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    # The search proper: from the run files' birth to the summary (imports, data loading
    # and the final test fall outside).
    first = (out / "config.json").stat().st_mtime
    last = (out / "summary.json").stat().st_mtime
    shutil.rmtree(out, ignore_errors=True)
    search = (summary.get("phases") or {}).get("search") or summary["wall_seconds"]
    # Trials that ran to an outcome; one stopped by the deadline (interrupted) does not count.
    trials = sum(v for k, v in summary["counts"].items() if k not in ("interrupted", "running"))
    return {
        "jobs": jobs, "trials": trials, "counts": summary["counts"],
        "wall_s": round(wall, 2), "search_s": round(search, 2),
        "trials_per_hour": round(trials * 3600 / search, 1),
        # the trials that trained: a shape that does not fit costs no training
        "trained_trials_per_hour": round(
            (trials - summary["counts"].get("infeasible", 0)) * 3600 / search, 1),
        "device_busy_pct": sampler.mean(first, last),
        # the search phase alone (from the run files' birth): the final fit is one process
        "device_busy_pct_search": sampler.mean(first, first + search),
        "device_busy_pct_whole_command": sampler.mean(),
        # the final fit (several networks at once where the search had GPU workers)
        "device_busy_pct_final": sampler.mean(
            first + search, first + search + ((summary.get("phases") or {}).get("final_fit")
                                              or 0.0)),
        "best_val_acc": (summary.get("best") or {}).get("value"),
        # which trial the search kept, at which rung (the space's baselines are its first)
        "best_trial": (summary.get("best") or {}).get("trial"),
        "best_rung": (summary.get("best") or {}).get("rung"),
        "test_acc": (summary.get("test") or {}).get("accuracy"),
        "plan": {k: summary.get(k) for k in ("phases", "ladder", "rungs", "images_per_second",
                                             "workers_speedup", "timeout")},
        "final": _final_brief(summary.get("final")),
    }


def _final_brief(final: Any) -> Any:
    """The final fit's epochs, seconds and members, without its per-epoch history."""
    if not isinstance(final, dict):
        return final
    return {k: v for k, v in final.items() if k not in ("history", "curve")}


def compare(dataset: str, jobs: list[str], *, rounds: int, seed_from: int = 0,
            **kw: Any) -> list[dict[str, Any]]:
    runs = [run_once(dataset, j, seed=seed_from + r, **kw) for r in range(rounds)
            for j in jobs]
    table = []
    for j in jobs:
        mine = [r for r in runs if r["jobs"] == j]
        table.append({
            "jobs": j, "runs": mine,
            "trials_per_hour_median": statistics.median(r["trials_per_hour"] for r in mine),
            "wall_s_median": statistics.median(r["wall_s"] for r in mine),
            "device_busy_pct_median": statistics.median(r["device_busy_pct"] for r in mine),
        })
    base = table[0]["trials_per_hour_median"]
    for row in table:  # None when the first setting finished no trial in its time
        row["vs_first"] = round(row["trials_per_hour_median"] / base, 3) if base else None
    return table


def resolve_dataset(name: str, work: Path) -> str:
    if name != "synthetic60k":
        return name
    from automl_cnn.data.clutter import write_idx

    folder = work / "idx60k"
    write_idx(folder, n_train=60_000, n_test=10_000, size=28, classes=10)
    return f"mnist:{folder}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits", help="a --dataset value or synthetic60k")
    parser.add_argument("--jobs", nargs="+", default=["1", "auto"])
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--space", default="default")
    parser.add_argument("--as-user", action="store_true",
                        help="with --seconds: keep the ladder and the final fit (the default "
                             "search); without it, a flat search of full trainings")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed-from", type=int, default=0,
                        help="round r runs with --seed SEED_FROM + r")
    parser.add_argument("--overhead-epochs", type=int, default=0,
                        help="also measure TFLOP/s and the overhead ratio over this many epochs")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not (args.trials or args.seconds):
        parser.error("give --trials or --seconds")
    import torch

    gpu = torch.cuda.is_available() and args.device != "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        dataset = resolve_dataset(args.dataset, Path(tmp))
        result: dict[str, Any] = {"dataset": args.dataset, "gpu": gpu,
                                  "cores": len(__import__("os").sched_getaffinity(0))}
        result["search"] = compare(dataset, args.jobs, rounds=args.rounds,
                                   seed_from=args.seed_from, trials=args.trials,
                                   seconds=args.seconds, space=args.space, device=args.device,
                                   gpu=gpu, work=Path(tmp), as_user=args.as_user)
        _write(result, args.json)
        if args.overhead_epochs:
            from bench_overhead import measure

            result["step"] = measure(dataset, "cuda" if gpu else "cpu",
                                     epochs=args.overhead_epochs, batch=64, rounds=2,
                                     threads=None)
            _write(result, args.json)
    print(json.dumps(result, indent=2))


def _write(result: dict[str, Any], path: Path | None) -> None:
    if path:  # after each part, so a run cut short keeps what it measured
        path.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
