"""The quick end of a process (automl_cnn/ending.py): the console entry and every worker
process end with ``end_quickly``, which must lose nothing a plain exit would have done."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from automl_cnn.config import SearchConfig
from automl_cnn.runners import warm
from automl_cnn.storage import make_storage

from test_tracking import check_tracked

PROBE = """
import atexit, gc, sys
from pathlib import Path
from automl_cnn.ending import end_quickly

out = Path(sys.argv[1])

class Held:  # garbage in a reference cycle: only the collector finalises it
    def __del__(self):
        (out / "finalised").write_text("yes")

held = Held()
held.me = held
del held
atexit.register(lambda: (out / "atexit").write_text(str(gc.get_freeze_count())))
print("buffered, never flushed by hand")
end_quickly()
"""


def test_end_quickly_runs_what_an_exit_would_and_freezes_the_rest(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "finalised").read_text() == "yes"  # the cycle's finaliser ran
    assert int((tmp_path / "atexit").read_text()) > 0  # atexit ran, after the freeze
    assert run.stdout == "buffered, never flushed by hand\n"  # the standard streams flush


@pytest.mark.parametrize("waiting", [0, 1], ids=["spawned-cold", "started-warm"])
def test_a_workers_process_ends_quickly_after_its_work(tmp_path: Path, waiting: int) -> None:
    pool = warm.WarmPool(SearchConfig(device="cpu", dataset="digits"), count=waiting)
    try:
        proc = pool.launch(_note_freeze_at_exit, (str(tmp_path / "frozen"),), name="w")
        proc.join(120)
        assert proc.exitcode == 0
    finally:
        pool.close()
    assert int((tmp_path / "frozen").read_text()) > 0


def _note_freeze_at_exit(path: str) -> None:
    import atexit
    import gc

    atexit.register(lambda: Path(path).write_text(str(gc.get_freeze_count())))


def test_the_console_entry_keeps_its_exit_code_and_writes_everything(tmp_path: Path) -> None:
    bad = subprocess.run([sys.executable, "-m", "automl_cnn", "search", "--timeout", "soon"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert bad.returncode == 2 and "--timeout" in bad.stderr and "Traceback" not in bad.stderr

    uri, out = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "run"
    run = subprocess.run(
        [sys.executable, "-m", "automl_cnn", "search", "--trials", "3", "--space", "tiny",
         "--out", str(out), "--tracking-uri", uri, "--experiment", "ending", "--no-progress"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr
    assert (out / "summary.json").exists() and (out / "report.html").exists()
    study = optuna.load_study(study_name=None,
                              storage=make_storage(f"journal:{out / 'study.journal'}"))
    check_tracked(MlflowClient(uri), study, experiment="ending", tmp_path=tmp_path)
