"""The ``--dataset`` registry: names, prefixes, --train-subset, --image-size, the memory budget,
the config fields behind the flags, and one search space valid from 8×8 to 224×224."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from automl_cnn.config import SearchConfig
from automl_cnn.data import (
    DatasetError,
    ImageFiles,
    balanced_indices,
    load_dataset,
    take_train_subset,
)
from automl_cnn.data.builtin import load_digits
from automl_cnn.errors import UserError
from automl_cnn.search_spaces import load_space
from automl_cnn.shapes import check_feasible


def test_unknown_names_list_every_builtin_and_prefix_form() -> None:
    for name in ("mnist", "cifar", "imagenet:/data/x"):
        with pytest.raises(DatasetError) as info:
            load_dataset(name)
        message = str(info.value)
        assert repr(name.split(":")[0]) in message
        for form in ("digits", "shapes", "mnist:DIR", "cifar10:DIR", "cifar100:DIR",
                     "folder:DIR", "npz:FILE"):
            assert form in message
    with pytest.raises(DatasetError, match="names no path; write it as prefix:PATH"):
        load_dataset("mnist:")


def test_builtin_splits_do_not_move() -> None:
    a, b = load_dataset("digits", seed=3), load_digits(seed=3)
    for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(a, k), getattr(b, k))


def test_balanced_indices_spread_over_classes_as_sizes_allow() -> None:
    y = np.array([0] * 50 + [1] * 30 + [2] * 4)
    idx = balanced_indices(y, 25, seed=0)
    assert np.bincount(y[idx]).tolist() == [11, 10, 4]  # class 2 gives all it has
    assert len(set(idx.tolist())) == 25
    assert np.array_equal(idx, balanced_indices(y, 25, seed=0))
    assert not np.array_equal(idx, balanced_indices(y, 25, seed=1))


def test_train_subset_is_balanced_seeded_and_leaves_val_and_test_whole() -> None:
    full = load_dataset("digits", seed=0)
    sub = load_dataset("digits", seed=0, train_subset=55)
    assert sub.sizes() == {**full.sizes(), "train": 55}
    assert sorted(torch.bincount(sub.y_train).tolist()) == [5] * 5 + [6] * 5
    assert torch.equal(sub.x_val, full.x_val) and torch.equal(sub.x_test, full.x_test)
    rows = {img.numpy().tobytes() for img in full.x_train}
    assert all(img.numpy().tobytes() in rows for img in sub.x_train)  # drawn from train only
    assert take_train_subset(full, 10_000, seed=0) is full
    with pytest.raises(DatasetError, match="train_subset=5 is smaller than the 10 classes"):
        load_dataset("digits", train_subset=5)


def test_image_size_resizes_every_split() -> None:
    data = load_dataset("digits", image_size=16)
    assert data.input_shape == (1, 16, 16) and data.x_test.shape[1:] == (1, 16, 16)
    assert data.x_train.dtype == torch.uint8 and int(data.x_train.max()) > 200
    assert data.sizes() == load_dataset("digits").sizes()
    with pytest.raises(DatasetError, match="image_size must be a positive integer, but got 0"):
        load_dataset("digits", image_size=0)


def test_memory_budget_from_the_environment(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(5):
            Image.new("L", (4, 4), color=i * 40).save(tmp_path / label / f"{i}.png")
    monkeypatch.setenv("AUTOML_CNN_MEMORY_BUDGET", "100")  # 10 images × 16 bytes = 160
    assert isinstance(load_dataset(f"folder:{tmp_path}").x_train, ImageFiles)
    monkeypatch.setenv("AUTOML_CNN_MEMORY_BUDGET", "1K")
    assert isinstance(load_dataset(f"folder:{tmp_path}").x_train, torch.Tensor)
    monkeypatch.setenv("AUTOML_CNN_MEMORY_BUDGET", "lots")
    with pytest.raises(DatasetError, match="AUTOML_CNN_MEMORY_BUDGET='lots' is not a size"):
        load_dataset(f"folder:{tmp_path}")


def test_config_validates_and_names_path_datasets() -> None:
    fashion = SearchConfig(dataset="mnist:/data/fashion")
    assert fashion.resolved_study_name == "mnist-fashion-default"
    assert SearchConfig(dataset="npz:sets/faces.npz", space="tiny").resolved_study_name \
        == "npz-faces-tiny"
    assert SearchConfig(dataset="folder:.").resolved_study_name == "folder-default"
    assert SearchConfig(dataset="digits").resolved_study_name == "digits-default"
    SearchConfig(image_size=32, train_subset=1000).check()
    for field in ("image_size", "train_subset"):
        with pytest.raises(UserError, match=f"--{field.replace('_', '-')} must be a positive"):
            SearchConfig(**{field: 0}).check()
    restored = SearchConfig.from_dict(SearchConfig(image_size=64, train_subset=500).to_dict())
    assert (restored.image_size, restored.train_subset) == (64, 500)


def test_one_space_gives_valid_architectures_for_8px_and_224px() -> None:
    """Feasibility is checked against the real input size, so the same YAML yields deep,
    strided stacks for photos that would vanish on 8×8 digits, and shallow ones for both."""
    space = load_space("default")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    specs = [space.sample(study.ask()) for _ in range(300)]
    small = [check_feasible(s, (1, 8, 8), 10) is None for s in specs]
    large = [check_feasible(s, (3, 224, 224), 1000) is None for s in specs]
    assert sum(small) >= 20 and sum(large) >= 20
    assert sum(small) < sum(large)
    assert any(lg and not sm for sm, lg in zip(small, large))  # valid for photos only
    assert all(lg for sm, lg in zip(small, large) if sm)  # what fits 8×8 fits 224×224
    reason = next(check_feasible(s, (1, 8, 8), 10) for s, sm in zip(specs, small) if not sm)
    assert "does not fit" in reason
