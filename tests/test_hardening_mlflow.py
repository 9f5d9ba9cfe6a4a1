"""Issue 13, items 15 and 16: MLflow's UI opens a search's experiment on its model-training
view with each run naming its data, and a first search in a fresh folder keeps MLflow's own
INFO lines ("Creating initial MLflow database tables...") off the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient

from automl_cnn.cli.ui import TRAINING_VIEW, ui_link
from automl_cnn.tracking.mlflow_store import EXPERIMENT_KIND


def test_a_first_search_in_a_fresh_folder_keeps_mlflow_quiet_and_names_its_data(
        tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(
        [sys.executable, "-m", "automl_cnn", "search", "--space", "tiny", "--trials", "1",
         "--no-progress"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "mlflow.db").exists()  # the store really was created by this search
    for line in (done.stdout + done.stderr).splitlines():
        assert " INFO " not in line and "database tables" not in line, line
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits-tiny")
    assert experiment.tags[EXPERIMENT_KIND[0]] == EXPERIMENT_KIND[1] == "custom_model_development"
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3  # the study's parent run, trial-000 and the winner's final fit
    for run in runs:
        (given,) = run.inputs.dataset_inputs
        assert given.dataset.name == "digits" and given.dataset.digest
        assert {t.key: t.value for t in given.tags} == {"mlflow.data.context": "training"}


def test_the_ui_link_opens_the_model_training_view() -> None:
    assert ui_link(5000) == "http://127.0.0.1:5000/#/experiments?workflowType=machine_learning"
    assert TRAINING_VIEW.endswith("workflowType=machine_learning")


def test_a_search_of_the_users_own_files_is_tracked_with_their_path(
        tmp_path: Path, caplog: object) -> None:
    # A KIND:PATH dataset: MLflow's Dataset column names the file. (The source was built with
    # MLflow's abstract FileSystemDatasetSource, which failed the parent run, so such searches
    # went untracked with only a warning.)
    import json
    import logging

    import numpy as np

    from automl_cnn.cli import main

    rng = np.random.default_rng(1)
    y = np.arange(80) % 4
    x = rng.integers(0, 50, size=(80, 9, 9), dtype=np.uint8)
    x[np.arange(80), 2 * y, 2 * y] = 255
    np.savez(tmp_path / "dots.npz", x=x[:60], y=y[:60], x_test=x[60:], y_test=y[60:])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with caplog.at_level(logging.WARNING):  # type: ignore[attr-defined]
        code = main(["search", "--dataset", f"npz:{tmp_path / 'dots.npz'}", "--space", "tiny",
                     "--trials", "1", "--tracking-uri", uri, "--no-progress",
                     "--out", str(tmp_path / "run")])
    assert code == 0
    assert not [r for r in caplog.records  # type: ignore[attr-defined]
                if "tracking" in r.getMessage()], "MLflow tracking failed"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("npz-dots-tiny")
    runs = client.search_runs([experiment.experiment_id])
    assert {r.info.run_name for r in runs} >= {"trial-000"} and len(runs) == 3
    for run in runs:
        (given,) = run.inputs.dataset_inputs
        assert given.dataset.name == f"npz:{tmp_path / 'dots.npz'}"
        assert json.loads(given.dataset.source) == {"uri": str(tmp_path / "dots.npz")}
