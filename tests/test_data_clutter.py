"""The ``clutter`` builtin: seeded and prefix-stable, balanced, no brightness shortcut by
construction, reachable as ``clutter`` / ``clutter:N``, and written as IDX that ``mnist:`` reads."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from automl_cnn.data import DatasetError, load_dataset
from automl_cnn.data.clutter import (
    CLUTTER_SHAPES,
    clutter_classes,
    main,
    render_clutter,
    write_idx,
)


def test_render_is_deterministic_balanced_and_prefix_stable() -> None:
    x, y = render_clutter(2400, size=32, classes=20)
    assert x.shape == (2400, 1, 32, 32) and x.dtype == np.uint8 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [120] * 20
    again, _ = render_clutter(2400, size=32, classes=20)
    assert np.array_equal(x, again)
    prefix, _ = render_clutter(1500, size=32, classes=20)  # chunks are seeded by position
    assert np.array_equal(prefix, x[:1500])
    other, _ = render_clutter(2400, size=32, classes=20, seed=7)
    assert not np.array_equal(other, x)
    test, _ = render_clutter(1000, size=32, classes=20, split="test")
    assert not np.array_equal(test, x[:1000])  # the test stream is its own pictures
    assert len({img.tobytes() for img in x}) == len(x)


def test_images_use_the_grey_range_and_brightness_does_not_give_the_class() -> None:
    x, y = render_clutter(4000, size=32, classes=20)
    assert x.min() == 0 and x.max() == 255  # both polarities, full range
    means = x.reshape(len(x), -1).mean(1)
    class_means = np.array([means[y == c].mean() for c in range(20)])
    # Per-image brightness varies far more within a class than the classes' averages do.
    assert class_means.std() < 0.25 * means.std()


def test_ten_class_variant_and_28_pixel_size() -> None:
    x, y = render_clutter(200, size=28, classes=10)
    assert x.shape == (200, 1, 28, 28) and sorted(set(y.tolist())) == list(range(10))
    assert clutter_classes(10) == CLUTTER_SHAPES
    assert clutter_classes(20)[:2] == ("disk/solid", "disk/striped")
    with pytest.raises(DatasetError, match="classes=7"):
        render_clutter(10, classes=7)
    with pytest.raises(DatasetError, match="size=8"):
        render_clutter(10, size=8)


def test_registry_names_clutter_and_clutter_n() -> None:
    small = load_dataset("clutter:1000", seed=0)
    assert small.name == "clutter:1000" and small.input_shape == (1, 32, 32)
    assert small.num_classes == 20 and small.flip_ok
    assert small.sizes() == {"train": 840, "val": 160, "test": 6000}  # 15 % per class
    other_seed = load_dataset("clutter:1000", seed=1)
    assert torch.equal(small.x_test, other_seed.x_test)  # the test split never moves
    assert not torch.equal(small.x_val, other_seed.x_val)  # validation follows --seed
    for bad in ("clutter:lots", "clutter:5", "clutter:"):
        with pytest.raises(DatasetError, match="clutter:N with N from 100"):
            load_dataset(bad)
    with pytest.raises(DatasetError) as info:
        load_dataset("clutters")
    assert "clutter[:N training images]" in str(info.value)


def test_idx_round_trip_through_the_mnist_reader(tmp_path: Path) -> None:
    paths = write_idx(tmp_path, n_train=300, n_test=100, size=28, classes=10)
    assert {p.name for p in paths} == {
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "classes.txt"}
    raw = gzip.decompress((tmp_path / "train-images-idx3-ubyte.gz").read_bytes())
    assert raw[:16] == bytes([0, 0, 8, 3]) + (300).to_bytes(4, "big") + (28).to_bytes(
        4, "big") * 2
    data = load_dataset(f"mnist:{tmp_path}", seed=0)
    assert data.classes == CLUTTER_SHAPES and data.input_shape == (1, 28, 28)
    assert data.sizes() == {"train": 260, "val": 40, "test": 100}  # round(4.5) per class
    x, y = render_clutter(100, size=28, classes=10, split="test")
    assert torch.equal(data.x_test, torch.from_numpy(x))
    assert torch.equal(data.y_test, torch.from_numpy(y))


def test_idx_command_line_writes_a_set_and_rejects_bad_counts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["--idx", str(tmp_path / "set"), "--n", "200", "--test", "50", "--size", "28"])
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().out
    assert load_dataset(f"mnist:{tmp_path / 'set'}").sizes()["test"] == 50
    with pytest.raises(SystemExit) as info:
        main(["--idx", str(tmp_path / "bad"), "--n", "3"])
    assert info.value.code == 2
    assert "n_train=3" in capsys.readouterr().err
