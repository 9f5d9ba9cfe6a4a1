"""Worker processes started warm (runners/warm.py): spawned when the command starts, they import
and load the data while it does, and the search's workers are these processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from automl_cnn.config import SearchConfig
from automl_cnn.runners import parallel, warm
from automl_cnn.storage import make_storage
from automl_cnn.timeline import ENV


def _command(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str],
                                                   list[tuple[float, int, str]]]:
    """``automl-cnn search ARGS`` in a fresh process (its imports come after the pool's
    spawn), with the timeline on; returns the run and its marks (time, pid, event)."""
    marks = tmp_path / "timeline.txt"
    run = subprocess.run([sys.executable, "-m", "automl_cnn", "search", "--no-progress", *args],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600,
                         env={**os.environ, ENV: str(marks)})
    rows = []
    for line in marks.read_text().splitlines() if marks.exists() else []:
        stamp, pid, event = line.split(" ", 2)
        rows.append((float(stamp), int(pid), event))
    return run, rows


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "status").read_text().split("State:\t")[1]
    except (OSError, IndexError):
        return False
    return not state.startswith("Z")


@pytest.mark.slow
def test_the_workers_are_processes_started_before_the_commands_imports(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run, marks = _command(tmp_path, "--trials", "6", "--space", "tiny", "--jobs", "2",
                          "--no-mlflow", "--out", str(out))
    assert run.returncode == 0, run.stderr[-2000:]
    command = {e: t for t, _, e in marks if e.startswith("command:")}
    warm_pids = {pid: t for t, pid, e in marks if e.startswith("warm ") and e.endswith("started")}
    assert len(warm_pids) == 2  # --jobs 2: two processes waiting
    # They were spawned before the command's own heavy imports had finished ...
    assert max(warm_pids.values()) < command["command: search imported"]
    # ... and they, not processes spawned later, trained every trial.
    study = optuna.load_study(study_name="digits-tiny",
                              storage=make_storage(f"journal:{out / 'study.journal'}"))
    from automl_cnn.record import Outcome, records

    trained = [r for r in records(study) if r.outcome != Outcome.INFEASIBLE]
    assert len(records(study)) == 6 and trained
    assert {r.worker.pid for r in trained} <= set(warm_pids)
    assert not [pid for pid in warm_pids if _alive(pid)]  # all ended with the command


@pytest.mark.slow
def test_a_user_error_ends_the_waiting_processes_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run, marks = _command(tmp_path, "--trials", "4", "--jobs", "2", "--no-mlflow",
                          "--dataset", f"folder:{tmp_path / 'no-such-folder'}", "--out", str(out))
    assert run.returncode == 2
    assert "no-such-folder" in run.stderr and "Traceback" not in run.stderr
    warm_pids = {pid for _, pid, e in marks if e.startswith("warm ") and e.endswith("started")}
    assert len(warm_pids) == 2
    assert not [pid for pid in warm_pids if _alive(pid)]
    assert not out.exists()


def test_the_processes_started_early_follow_jobs_the_gpus_and_the_trials(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "usable_cores", lambda: 16)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert warm.visible_gpus() == 2
    # --jobs auto on two GPUs: 8 a GPU, at most one per 2 cores (auto_jobs' rule)
    assert warm.expected_processes(SearchConfig()) == 8
    assert warm.expected_processes(SearchConfig(device="cuda:1")) == 8  # one GPU, 8 cores
    monkeypatch.setattr(parallel, "usable_cores", lambda: 64)
    assert warm.expected_processes(SearchConfig()) == 16
    assert warm.expected_processes(SearchConfig(device="cuda:1")) == 8
    assert warm.expected_processes(SearchConfig(trials=3)) == 3  # never more than the trials
    assert warm.expected_processes(SearchConfig(device="cpu")) == 16  # a CPU: one per 4 cores
    assert warm.expected_processes(SearchConfig(jobs=3)) == 3
    assert warm.expected_processes(SearchConfig(jobs=1)) == 0  # one process: it trains itself
    for hidden in ("", "-1", "-1,0"):  # CUDA stops at the first entry that is no device
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert warm.visible_gpus() == 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,-1,2")
    assert warm.visible_gpus() == 1
    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert warm.expected_processes(SearchConfig()) == 0  # this 2-core CPU: one process


def test_a_pool_hands_its_shared_flag_and_queue_to_work_spawned_cold_too(
        tmp_path: Path) -> None:
    # No process waiting: the work is spawned now, with the pool's flag and queue in place of
    # the placeholders, as a warm process would get them.
    pool = warm.WarmPool(SearchConfig(device="cpu"), count=0)
    try:
        pool.stop_code.value = 7
        proc = pool.launch(_report, (warm.STOP_CODE, warm.ROWS, "text"), name="cold")
        proc.join(60)
        assert proc.exitcode == 0
        assert pool.rows.get(timeout=10) == (7, "text")
    finally:
        pool.close()


def test_a_waiting_process_runs_the_work_it_is_sent(tmp_path: Path) -> None:
    pool = warm.WarmPool(SearchConfig(device="cpu", dataset="digits"), count=2)
    try:
        assert pool.waiting == 2
        proc = pool.launch(_report, (warm.STOP_CODE, warm.ROWS, "warm"), name="w")
        assert pool.waiting == 1 and proc.name == "w"
        proc.join(120)
        assert proc.exitcode == 0
        code, text = pool.rows.get(timeout=10)
        assert (code, text) == (0, "warm")
        left = pool._waiting[0].pid
        assert _alive(left)
    finally:
        pool.close()
    assert pool.waiting == 0 and not _alive(left)  # closed: the one never used is ended


def _report(stop_code: object, rows: object, text: str) -> None:
    rows.put((stop_code.value, text))  # type: ignore[attr-defined]
