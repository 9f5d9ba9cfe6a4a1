"""``automl-cnn search`` on the user's own files, end to end, and bad datasets at the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
from PIL import Image

from automl_cnn.cli import main
from automl_cnn.record import read_study_info
from automl_cnn.storage import make_storage

SPACE = """
depth: 1
block: {filters: 8, kernel: 3, padding: 1, batch_norm: true, pool: max}
head: {global_pool: avg}
optim:
  name: adamw
  lr: {low: 1.0e-3, high: 1.0e-2, log: true}
  schedule: constant
  label_smoothing: 0.0
  batch_size: 16
  epochs: 2
augment:
  crop_padding: 1
  flip: {choices: [false, true]}
"""


def run(tmp_path: Path, dataset: str, *extra: str) -> tuple[dict, dict]:
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    out = tmp_path / "run"
    code = main(["search", "--dataset", dataset, "--space", str(space), "--trials", "2",
                 "--no-mlflow", "--no-progress", "--out", str(out), *extra])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    study = optuna.load_study(study_name=summary["study_name"],
                              storage=make_storage(f"journal:{out / 'study.journal'}"))
    return summary, read_study_info(study).dataset.to_dict()


@pytest.mark.slow
def test_search_streams_a_photo_folder_end_to_end(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    for label, name in enumerate(("red", "green", "blue")):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(12):
            img = rng.integers(0, 60, size=(10, 12, 3), dtype=np.uint8)
            img[..., label] += 150  # the class is the dominant colour
            Image.fromarray(img).save(tmp_path / "photos" / name / f"{i}.png")
    monkeypatch.setenv("AUTOML_CNN_MEMORY_BUDGET", "0")  # force the streaming path
    summary, dataset = run(tmp_path, f"folder:{tmp_path / 'photos'}", "--image-size", "8")
    assert dataset["input_shape"] == [3, 8, 8] and dataset["classes"] == ["blue", "green", "red"]
    assert dataset["sizes"] == {"train": 24, "val": 6, "test": 6}
    assert summary["counts"]["complete"] == 2 and summary["study_name"] == "folder-photos-space"
    assert summary["test"]["accuracy"] >= 0.0  # the best model was evaluated on streamed files
    meta = json.loads((Path(summary["best_model_dir"]) / "meta.json").read_text())
    assert meta["input_shape"] == [3, 8, 8]


@pytest.mark.slow
def test_search_on_npz_with_a_train_subset(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    y = np.arange(80) % 4
    x = rng.integers(0, 50, size=(80, 9, 9), dtype=np.uint8)
    x[np.arange(80), 2 * y, 2 * y] = 255  # one bright pixel whose place is the class
    np.savez(tmp_path / "dots.npz", x=x[:60], y=y[:60], x_test=x[60:], y_test=y[60:])
    summary, dataset = run(tmp_path, f"npz:{tmp_path / 'dots.npz'}", "--train-subset", "20")
    assert dataset["input_shape"] == [1, 9, 9] and dataset["num_classes"] == 4
    assert dataset["sizes"] == {"train": 20, "val": 8, "test": 20}
    assert summary["counts"]["complete"] == 2


@pytest.mark.parametrize("dataset, flags, says", [
    ("mnist:{tmp}/nowhere", [], "{tmp}/nowhere does not exist"),
    ("tfrecord:{tmp}", [], "unknown dataset prefix 'tfrecord'"),
    ("digits", ["--image-size", "0"], "--image-size must be a positive whole number"),
    ("digits", ["--train-subset", "-3"], "--train-subset must be a positive whole number"),
])
def test_bad_datasets_fail_before_any_file_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], dataset: str, flags: list[str],
        says: str) -> None:
    out = tmp_path / "run"
    code = main(["search", "--dataset", dataset.format(tmp=tmp_path), "--trials", "1",
                 "--no-mlflow", "--no-progress", "--out", str(out), *flags])
    assert code == 2
    err = " ".join(capsys.readouterr().err.split())  # the CLI wraps the paragraph
    assert says.format(tmp=tmp_path) in err and "Traceback" not in err
    assert not out.exists()
