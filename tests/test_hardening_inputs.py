"""Issue 13, flags and space files that used to end in a traceback (``step: 0.5`` on an integer
range, ``baselines: 5``, ``--seed -1``, ``--storage journal:``), and the network's receptive
field, which used to be the image size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from automl_cnn.arch import ArchSpec, ConvBlock, HeadSpec
from automl_cnn.cli import main
from automl_cnn.config import MAX_SEED, SearchConfig
from automl_cnn.errors import UserError
from automl_cnn.shapes import plan_layers

ONE_CONV = """
depth: 1
block: {filters: 4, kernel: 3, padding: 1, stride: 1, pool: none, batch_norm: false}
head: {global_pool: flatten, layers: 0}
optim: {name: adamw, lr: {low: 1.0e-3, high: 1.0e-2, log: true}, epochs: 1, batch_size: 128}
"""


def search(tmp_path: Path, *flags: str) -> int:
    return main(["search", "--trials", "1", "--no-mlflow", "--no-progress",
                 "--out", str(tmp_path / "run"), *flags])


def paragraph(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return " ".join(captured.err.split())


@pytest.mark.parametrize("space, says", [
    ("depth: {low: 1, high: 3, step: 0.5}\n",
     "depth is a whole number, so its step must be one too, but got step=0.5"),
    ("block: {filters: {low: 8, high: 32, step: true}}\n",
     "block.filters.step must be a positive number"),
    ("baselines: 5\n", "baselines must be a list of {name, params} entries, but got 5"),
    ("baselines: {name: x}\n", "baselines must be a list"),
])
def test_bad_space_values_are_refused_before_training(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], space: str, says: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(space)
    assert search(tmp_path, "--space", str(path)) == 2
    err = paragraph(capsys)
    assert str(path) in err and says in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags, says", [
    (["--seed", "-1"], f"--seed must be a whole number from 0 to {MAX_SEED}"),
    (["--seed", str(2**32)], f"but got {2**32}"),
    (["--storage", "journal:"], "--storage 'journal:' names no file"),
    (["--storage", "journal:  "], "names no file"),
])
def test_bad_flags_are_refused_before_anything_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], says: str) -> None:
    assert search(tmp_path, "--space", "tiny", *flags) == 2
    assert says in paragraph(capsys)
    assert not (tmp_path / "run").exists()


def test_a_journal_storage_naming_a_folder_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "studies"
    folder.mkdir()
    assert search(tmp_path, "--space", "tiny", "--storage", f"journal:{folder}") == 2
    err = paragraph(capsys)
    assert "names a folder" in err and f"journal:{folder}/study.journal" in err
    assert list(folder.iterdir()) == []


def test_the_largest_seed_is_accepted() -> None:
    assert SearchConfig(seed=MAX_SEED).check().seed == MAX_SEED
    with pytest.raises(UserError, match="--seed"):
        SearchConfig(seed=-1).check()


# -- 5. the network's receptive field ---------------------------------------------------------

def test_the_network_receptive_field_is_the_conv_stacks_not_the_image() -> None:
    spec = ArchSpec(blocks=(ConvBlock(8, kernel=3, padding=1),), head=HeadSpec())
    plan = plan_layers(spec, (3, 32, 32), num_classes=10)
    assert plan.receptive_field == 3
    assert plan.layers[-1].receptive_field == 32  # a head unit still sees the whole image
    pooled = ArchSpec(blocks=(ConvBlock(8, kernel=3, padding=1, pool="max"),
                              ConvBlock(8, kernel=5, padding=2)))
    assert plan_layers(pooled, (1, 64, 64), num_classes=2).receptive_field == 12
    deep = plan_layers(pooled, (1, 8, 8), num_classes=2)
    assert deep.receptive_field == 12  # larger than the 8×8 image: overhangs the padding


def test_the_cli_and_summary_report_the_networks_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = tmp_path / "one-conv.yaml"
    space.write_text(ONE_CONV)
    assert search(tmp_path, "--space", str(space)) == 0
    out = capsys.readouterr().out
    assert "receptive field 3px" in out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["best"]["receptive_field"] == 3
