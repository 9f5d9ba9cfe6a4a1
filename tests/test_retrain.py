"""``automl-cnn retrain``: from scratch on train+val over seeds, scored on test, kept, tracked."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

import automl_cnn
from automl_cnn.checkpoint import load_checkpoint
from automl_cnn.cli import main
from automl_cnn.config import SearchConfig
from automl_cnn.errors import UserError
from automl_cnn.export import export_model
from automl_cnn.retrain import retrain, retrained_folders
from automl_cnn.runners.search import run_search


@pytest.mark.parametrize("kwargs, message", [
    ({"seeds": 0}, "seeds must be a whole number >= 1, but got 0"),
    ({"epochs": 0}, "epochs must be a whole number >= 1, but got 0"),
])
def test_bad_settings_fail_before_anything_opens(kwargs: dict[str, int], message: str,
                                                 tmp_path: Path) -> None:
    with pytest.raises(UserError, match=message):
        retrain(tmp_path / "no-such-run", **kwargs)


def test_retrained_folders_are_found_by_seed(tmp_path: Path) -> None:
    for name in ("trial-0007-seed0", "trial-0007-seed12", "trial-0070-seed1", "trial-0007-x"):
        (tmp_path / "retrained" / name).mkdir(parents=True)
        (tmp_path / "retrained" / name / "model.safetensors").write_bytes(b"")
    assert sorted(retrained_folders(tmp_path, 7)) == [0, 12]
    assert retrained_folders(tmp_path, 3) == {}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A search tracked in its own MLflow store (the store retrain logs to by default)."""
    home = tmp_path_factory.mktemp("retrain")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(home)  # MLflow's local artifacts (./mlruns) stay out of the repository
        run_search(SearchConfig(trials=8, space="tiny", out=str(home / "run"), seed=2,
                                tracking_uri=f"sqlite:///{home / 'mlflow.db'}"), progress=False)
    return home / "run"


@pytest.mark.slow
def test_retrain_on_digits_reports_mean_and_spread_and_keeps_the_models(
        run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # MLflow's local artifact store (./mlruns) goes here
    uri = f"sqlite:///{run_dir.parent / 'mlflow.db'}"  # the search's store: no --tracking-uri
    assert main(["retrain", str(run_dir), "--rank", "0", "--seeds", "3", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    summary = json.loads((run_dir / "summary.json").read_text())
    best = automl_cnn.top_architectures(run_dir, k=1)[0]
    folders = retrained_folders(run_dir, best.trial)
    assert sorted(folders) == [0, 1, 2]
    metas = [load_checkpoint(folders[s])[2] for s in range(3)]
    accs = [m["retrained"]["this_seed"] for m in metas]
    group = metas[0]["retrained"]
    assert group["test_acc"] == accs and group["epochs"] == best.spec.train.epochs
    mean, std = group["mean"], group["std"]
    assert f"test accuracy {mean:.4f} ± {std:.4f}" in out
    # More data, same recipe: at least as good as the search's best model on the same test
    # split (evaluated once by the search), allowing for the spread over seeds.
    search_test = summary["search_test"]["accuracy"]  # "test" is the final fit's
    assert f"test accuracy of its model {search_test:.4f}" in out
    assert mean >= search_test - 2 * std - 0.01, (accs, search_test)
    assert mean > 0.8  # digits: a trained CNN, not chance (0.1)
    # The seeds are independent runs, not one model saved three times.
    w = [load_checkpoint(folders[s])[0].state_dict() for s in range(3)]
    assert any(not torch.equal(w[0][k], w[1][k]) for k in w[0])

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("digits-tiny")
    (run,) = client.search_runs([experiment.experiment_id],
                                "tags.`automl_cnn.role` = 'retrain'")
    assert run.info.status == "FINISHED"
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`automl_cnn.role` = 'parent'")
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id  # under the search's run
    assert run.data.metrics["test_acc_mean"] == pytest.approx(mean)
    assert run.data.metrics["test_acc_std"] == pytest.approx(std)
    assert [m.value for m in client.get_metric_history(run.info.run_id, "test_acc")] == accs
    assert run.data.params["trial"] == str(best.trial)

    folder = export_model(run_dir, tmp_path / "export", retrained=True, seed=1)
    card = (folder / "README.md").read_text()
    assert f"{mean:.4f} ± {std:.4f}" in card and "seed 1" in card
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(load_checkpoint(folder)[0](x), load_checkpoint(folders[1])[0](x))
    with pytest.raises(UserError, match="retrained with seeds 0, 1, 2, not seed 7"):
        export_model(run_dir, tmp_path / "e2", retrained=True, seed=7)


def test_command_checks_its_flags_before_reading_anything(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("--seeds", "--epochs"):
        assert main(["retrain", str(tmp_path / "missing"), flag, "0", "--no-mlflow"]) == 2
        assert f"{flag} must be at least 1, but got 0" in " ".join(capsys.readouterr().err.split())
    assert main(["retrain", str(tmp_path / "missing"), "--no-mlflow"]) == 2
    assert "does not exist" in " ".join(capsys.readouterr().err.split())


def test_validation_images_join_the_training_images() -> None:
    from automl_cnn.data import ImageFiles, load_dataset
    from automl_cnn.training import with_val_in_train

    data = load_dataset("digits")
    joined = with_val_in_train(data)
    assert len(joined.y_train) == len(joined.x_train) == len(data.y_train) + len(data.y_val)
    assert torch.equal(joined.x_train[len(data.y_train):], data.x_val)
    assert torch.equal(joined.x_test, data.x_test)
    files = replace(data, x_train=ImageFiles(("a.png", "b.png"), 1, 8, 8),
                    x_val=ImageFiles(("c.png",), 1, 8, 8),
                    y_train=torch.tensor([0, 1]), y_val=torch.tensor([2]))
    streamed = with_val_in_train(files)
    assert streamed.x_train.paths == ("a.png", "b.png", "c.png")
    assert streamed.y_train.tolist() == [0, 1, 2]
