"""Kept weights in a run directory that several workers share: per-writer temps, atomic
replacement, eviction under a lock, leftovers of killed writers ignored and cleaned."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from automl_cnn.arch import ArchSpec, ConvBlock
from automl_cnn.checkpoint import (CheckpointMeta, keep_best, load_checkpoint, read_meta,
                                   save_checkpoint)
from automl_cnn.config import SearchConfig
from automl_cnn.model import build_model
from automl_cnn.runners.search import run_search

SPEC = ArchSpec(blocks=(ConvBlock(2),))


def save(root: Path, trial: int, value: float) -> Path:
    model = build_model(SPEC, (1, 8, 8), 3)
    meta = CheckpointMeta(input_shape=(1, 8, 8), num_classes=3, trial=trial, value=value,
                          val_loss=1.0 - value)
    return save_checkpoint(root / f"trial-{trial:04d}", model, SPEC, meta)


def test_meta_round_trips_and_leaves_unset_fields_out(tmp_path: Path) -> None:
    meta = CheckpointMeta(input_shape=(1, 8, 8), num_classes=3, classes=("a", "b", "c"),
                          trial=4, value=0.5, values=(0.5, 120.0), objectives=("val_acc", "params"))
    data = meta.to_dict()
    assert "rank" not in data and "format" not in data and data["automl_cnn_version"]
    assert CheckpointMeta.from_dict(json.loads(json.dumps(data))) == meta
    assert CheckpointMeta.from_dict({**data, "from_a_newer_version": 1}) == meta
    folder = save(tmp_path, 4, 0.5)
    _, _, saved = load_checkpoint(folder)
    assert saved["trial"] == 4 and saved["input_shape"] == [1, 8, 8]


def test_save_replaces_whole_and_leaves_other_writers_temps_alone(tmp_path: Path) -> None:
    other = tmp_path / "trial-0001.tmp-otherhost-77-beef"  # a live writer elsewhere
    other.mkdir()
    (tmp_path / "trial-0001.tmp").mkdir()  # the old code's shared temp name
    folder = save(tmp_path, 1, 0.5)
    (folder / "stray.txt").write_text("from the first save")
    save(tmp_path, 1, 0.7)
    assert sorted(p.name for p in folder.iterdir()) == ["arch.json", "meta.json",
                                                       "model.safetensors"]
    assert read_meta(folder)["value"] == 0.7
    assert other.exists() and (tmp_path / "trial-0001.tmp").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "trial-0001", "trial-0001.tmp", "trial-0001.tmp-otherhost-77-beef"]


def test_a_failed_save_leaves_nothing_behind(tmp_path: Path) -> None:
    class Broken(torch.nn.Module):
        def state_dict(self, *args: object, **kwargs: object) -> dict[str, torch.Tensor]:
            raise OSError("No space left on device")

    save(tmp_path, 2, 0.4)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(tmp_path / "trial-0002", Broken(), SPEC, {"input_shape": [1, 8, 8]})
    assert [p.name for p in tmp_path.iterdir()] == ["trial-0002"]
    assert read_meta(tmp_path / "trial-0002")["value"] == 0.4  # the old one is untouched


def test_keep_best_counts_only_complete_folders_and_cleans_old_leftovers(tmp_path: Path) -> None:
    for trial, value in ((1, 0.9), (2, 0.5), (3, 0.7)):
        save(tmp_path, trial, value)
    fresh = tmp_path / "trial-0009.tmp-host-1-aaaa"  # a writer still at work: never touched
    stale = tmp_path / "trial-0008.tmp-host-2-bbbb"  # a writer killed two hours ago
    for leftover in (fresh, stale):
        leftover.mkdir()
        (leftover / "meta.json").write_text("{not json")
        (leftover / "model.safetensors").write_bytes(b"")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    damaged = tmp_path / "trial-0004"
    damaged.mkdir()
    (damaged / "model.safetensors").write_bytes(b"")
    (damaged / "meta.json").write_text('{"value": ')
    kept = keep_best(tmp_path, 2)
    assert [p.name for p in kept] == ["trial-0001", "trial-0003"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".lock", "trial-0001", "trial-0003", "trial-0004", fresh.name]


WORKER = """
import random, sys
from pathlib import Path
from automl_cnn.arch import ArchSpec, ConvBlock
from automl_cnn.checkpoint import CheckpointMeta, keep_best, save_checkpoint
from automl_cnn.model import build_model
root, first = Path(sys.argv[1]), int(sys.argv[2])
rng, spec = random.Random(first), ArchSpec(blocks=(ConvBlock(2),))
for trial in range(first, first + 60, 2):
    value = rng.random()
    meta = CheckpointMeta(input_shape=(1, 8, 8), num_classes=3, trial=trial, value=value)
    save_checkpoint(root / f"trial-{trial:04d}", build_model(spec, (1, 8, 8), 3), spec, meta)
    keep_best(root, 3)
"""


def test_two_workers_saving_and_keeping_at_once_keep_exactly_the_best(tmp_path: Path) -> None:
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), str(first)],
                                stderr=subprocess.PIPE, text=True) for first in (0, 1)]
    errors = [w.communicate(timeout=300)[1] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], errors
    values = {}
    for first in (0, 1):  # the values each worker drew, in its order
        rng = random.Random(first)
        values |= {trial: rng.random() for trial in range(first, first + 60, 2)}
    best3 = sorted(values, key=lambda t: -values[t])[:3]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"] + sorted(
        f"trial-{t:04d}" for t in best3)
    assert [p.name for p in keep_best(tmp_path, 3)] == [f"trial-{t:04d}" for t in best3]


@pytest.mark.slow
def test_leftovers_of_a_killed_worker_never_stop_a_resume(tmp_path: Path) -> None:
    config = SearchConfig(trials=2, space="tiny", out=str(tmp_path / "run"), mlflow=False)
    run_search(config, progress=False)
    models = tmp_path / "run" / "models"
    for name in ("trial-0099.tmp", "trial-0098.tmp-deadhost-4242-0000"):
        (models / name).mkdir()
        (models / name / "meta.json").write_text('{"value": 0.9')  # cut off mid-write
        (models / name / "model.safetensors").write_bytes(b"\0" * 10)
    outcome = run_search(config, resume=True, progress=False)
    assert outcome.summary["trials"] == 4
    assert all(".tmp" not in p for p in outcome.summary["kept_models"])
