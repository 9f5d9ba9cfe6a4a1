"""Issue 13, datasets: splits too small to measure, hidden folders, 16-bit grey images,
oversized ``--image-size`` and one-class sets. Each case is refused before training with one
paragraph naming the value and the fix, or, where the input is legitimate, read right."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from automl_cnn.cli import main
from automl_cnn.data import DatasetError, decode_image, load_dataset
from automl_cnn.data.splits import MIN_PER_CLASS


def write_classes(root: Path, per_class: dict[str, int], *, size: int = 8) -> None:
    rng = np.random.default_rng(len(per_class))
    for name, n in per_class.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(
                root / name / f"{i}.png")


def search(tmp_path: Path, dataset: str, *flags: str) -> int:
    return main(["search", "--dataset", dataset, "--space", "tiny", "--trials", "1",
                 "--no-mlflow", "--no-progress", "--out", str(tmp_path / "run"), *flags])


def paragraph(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return " ".join(captured.err.split())  # the CLI wraps the paragraph


# -- 1. splits too small to measure -----------------------------------------------------------

@pytest.mark.parametrize("per_class, split", [(4, "validation"), (2, "validation")])
def test_a_split_too_small_to_measure_is_refused_before_training(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], per_class: int, split: str) -> None:
    write_classes(tmp_path / "imgs", {"ant": per_class, "bee": per_class + 3})
    assert search(tmp_path, f"folder:{tmp_path / 'imgs'}") == 2
    err = paragraph(capsys)
    assert f"the {split} split holds no image of class 'ant'" in err
    assert f"images per class, fewest first: ant {per_class}, bee {per_class + 3}" in err
    assert f"at least {MIN_PER_CLASS} images" in err
    assert not (tmp_path / "run").exists()  # nothing written, nothing trained


def test_the_documented_minimum_is_enough(tmp_path: Path) -> None:
    write_classes(tmp_path / "five", {"ant": MIN_PER_CLASS, "bee": MIN_PER_CLASS})
    assert load_dataset(f"folder:{tmp_path / 'five'}").sizes() == {
        "train": 6, "val": 2, "test": 2}
    # Beside the dataset's own test split, one image fewer per class is enough.
    write_classes(tmp_path / "own" / "train", {"ant": MIN_PER_CLASS - 1, "bee": 4})
    write_classes(tmp_path / "own" / "test", {"ant": 1, "bee": 1})
    assert load_dataset(f"folder:{tmp_path / 'own'}").sizes() == {
        "train": 6, "val": 2, "test": 2}
    write_classes(tmp_path / "short" / "train", {"ant": 3, "bee": 4})
    write_classes(tmp_path / "short" / "test", {"ant": 1, "bee": 1})
    with pytest.raises(DatasetError, match="validation split holds no image of class 'ant'"):
        load_dataset(f"folder:{tmp_path / 'short'}")


def test_an_npz_class_name_without_images_is_allowed(tmp_path: Path) -> None:
    """A placeholder name (EMNIST letters have no label 0) is not a class too small."""
    y = np.repeat([1, 2], 10)
    np.savez(tmp_path / "s.npz", x=np.zeros((20, 4, 4), np.uint8), y=y,
             classes=np.array(["n/a", "a", "b"]))
    assert load_dataset(f"npz:{tmp_path / 's.npz'}").sizes() == {"train": 14, "val": 2, "test": 4}


# -- 8. hidden folders ------------------------------------------------------------------------

def test_hidden_folders_beside_train_and_test_are_ignored(tmp_path: Path) -> None:
    write_classes(tmp_path / "train", {"ant": 8, "bee": 8})
    write_classes(tmp_path / "test", {"ant": 2, "bee": 2})
    write_classes(tmp_path / ".ipynb_checkpoints", {"junk": 1})
    write_classes(tmp_path / "train" / ".ipynb_checkpoints", {"junk": 1})
    data = load_dataset(f"folder:{tmp_path}")
    assert data.classes == ("ant", "bee")  # not ("test", "train")
    assert data.sizes() == {"train": 14, "val": 2, "test": 4}  # test/ is the test split


# -- 9. 16-bit grey images --------------------------------------------------------------------

def test_16_bit_grey_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    wide = np.array([[0, 257 * 10, 257 * 128, 65535]] * 4, dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(wide).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")  # really a 16-bit file
    grey = decode_image(str(path), height=4, width=4, channels=1)
    assert grey[0, 0].tolist() == [0, 10, 128, 255]
    rgb = decode_image(str(path), height=4, width=4, channels=3)
    assert rgb[:, 0, 2].tolist() == [128, 128, 128]  # a colour folder scales it the same way


def test_a_folder_of_16_bit_scans_keeps_its_contrast(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name in ("dim", "bright"):
        (tmp_path / name).mkdir()
        for i in range(6):
            base = 5000 if name == "dim" else 50000
            Image.fromarray(rng.integers(base, base + 3000, (6, 6)).astype(np.uint16)).save(
                tmp_path / name / f"{i}.png")
    data = load_dataset(f"folder:{tmp_path}")
    bright = data.x_train[data.y_train == 0]  # classes sort: bright, dim
    dim = data.x_train[data.y_train == 1]
    assert 190 <= int(bright.min()) and int(bright.max()) <= 207
    assert 19 <= int(dim.min()) and int(dim.max()) <= 32


# -- 10. --image-size bounds ------------------------------------------------------------------

@pytest.mark.parametrize("size, says", [
    ("100000", "--image-size 100000 is more than 4096"),
    ("2000", "--image-size 2000 is too big for digits: its 1,797 images (8×8) are resized in "
             "memory"),
])
def test_an_image_size_beyond_the_bound_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], size: str, says: str) -> None:
    assert search(tmp_path, "digits", "--image-size", size) == 2
    err = paragraph(capsys)
    assert says in err and "or less" in err
    assert not (tmp_path / "run").exists()


def test_the_memory_budget_bounds_an_in_memory_resize() -> None:
    with pytest.raises(DatasetError, match=r"would take 0\.1 GiB \(memory budget 0\.0 GiB"):
        load_dataset("digits", image_size=200, memory_budget=10_000_000)
    assert load_dataset("digits", image_size=64).input_shape == (1, 64, 64)


# -- 11. one-class datasets -------------------------------------------------------------------

def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.mark.parametrize("how", ["npz names one class", "mnist classes.txt", "npz one label"])
def test_a_one_class_dataset_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        how: str) -> None:
    x = np.random.default_rng(0).integers(0, 256, (30, 6, 6), dtype=np.uint8)
    if how == "mnist classes.txt":
        write_idx(tmp_path / "train-images-idx3-ubyte.gz", x)
        write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(30, np.uint8))
        (tmp_path / "classes.txt").write_text("cat\n")
        dataset, says = f"mnist:{tmp_path}", "names 1 class (cat); a classifier needs at least two"
    elif how == "npz names one class":
        np.savez(tmp_path / "one.npz", x=x, y=np.zeros(30, np.int64), classes=np.array(["cat"]))
        dataset, says = f"npz:{tmp_path / 'one.npz'}", "names 1 class (cat)"
    else:
        np.savez(tmp_path / "one.npz", x=x, y=np.zeros(30, np.int64),
                 classes=np.array(["cat", "dog"]))
        dataset, says = f"npz:{tmp_path / 'one.npz'}", "only one class has images (cat 30)"
    assert search(tmp_path, dataset) == 2
    assert says in paragraph(capsys)
    assert not (tmp_path / "run").exists()
