"""Issue 13, item 2: a storage password is never printed or written. The real URL lives in
memory and in what the user typed; errors, summary.json, config.json, the study's stored
config, MLflow and the printed resume command show ``***``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from automl_cnn.cli import main
from automl_cnn.redact import has_masked_password, scrub, without_password

SECRET = "s3cret"
DEAD = f"postgresql://u:{SECRET}@127.0.0.1:1/db"


def test_without_password_masks_every_form() -> None:
    assert without_password(DEAD) == "postgresql://u:***@127.0.0.1:1/db"
    assert without_password("mysql+pymysql://u:p%40ss@h/db") == "mysql+pymysql://u:***@h/db"
    assert without_password("postgresql://h/db?user=u&password=pw") == \
        "postgresql://h/db?user=u&password=***"
    for plain in ("postgresql://u@h/db", "sqlite:///x.db", "journal:runs/a/study.journal"):
        assert without_password(plain) == plain
    assert has_masked_password(without_password(DEAD)) and not has_masked_password(DEAD)
    assert scrub(f"FATAL: password {SECRET} refused", DEAD) == "FATAL: password *** refused"


@pytest.mark.parametrize("argv", [
    ["best", "--storage", DEAD],
    ["dashboard", "--storage", DEAD, "--study-name", "x"],
    ["export", "runs/x", "--storage", DEAD, "--out", "exported"],
    ["search", "--storage", DEAD, "--space", "tiny", "--trials", "1", "--no-mlflow",
     "--no-progress"],
])
def test_errors_about_a_storage_never_show_its_password(
        argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, *(["--out", str(tmp_path / "run")] if argv[0] == "search" else [])]) == 2
    captured = capsys.readouterr()
    assert SECRET not in captured.err + captured.out
    assert "Traceback" not in captured.err and "automl-cnn: error:" in captured.err
    assert not (tmp_path / "run").exists()


@pytest.fixture
def pg_with_password(fresh_postgres: str) -> str:
    """A fresh PostgreSQL database, as a URL carrying a password (trust auth ignores it)."""
    return fresh_postgres.replace("://postgres@", f"://postgres:{SECRET}@")


def files_holding(root: Path, text: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


@pytest.mark.slow
def test_a_search_with_a_password_writes_it_nowhere(tmp_path: Path, pg_with_password: str
                                                    ) -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    args = [sys.executable, "-m", "automl_cnn", "search", "--space", "tiny", "--trials", "1",
            "--storage", pg_with_password, "--study-name", "secret", "--out", "run",
            "--no-progress"]
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout + done.stderr
    assert "postgres:***@" in done.stdout  # the storage is still named, masked
    assert files_holding(tmp_path, SECRET) == []  # run directory and MLflow store
    study = optuna.load_study(study_name="secret", storage=pg_with_password)
    assert SECRET not in json.dumps(study.user_attrs, default=str)
    stored = json.dumps([t.user_attrs for t in study.trials], default=str)
    assert SECRET not in stored
    # The run directory still resumes: --storage given again with its password.
    again = subprocess.run([*args, "--resume"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert SECRET not in again.stdout + again.stderr
    # Without --storage, the masked URL the run directory records cannot connect: say so.
    bare = [a for a in args if a not in ("--storage", pg_with_password)]
    masked = subprocess.run([*bare, "--resume"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert masked.returncode == 2 and "Traceback" not in masked.stderr
    assert "--storage" in masked.stderr and "postgres:***@" in masked.stderr
