"""Folders of real PNG/JPEG files: classes, sizes, channels, own test split, and the streaming
path, which must serve exactly the batches the in-memory path serves for the same files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import automl_cnn.data.batches as batches_module
from automl_cnn.data import (
    DatasetError,
    DeviceBatches,
    ImageFiles,
    StreamBatches,
    load_dataset,
    make_batches,
    make_splits,
)

CLASSES = ("cat", "dog", "emu")


def pixels(label: int, i: int, size: tuple[int, int] = (10, 12)) -> np.ndarray:
    """A distinct RGB image (H, W, 3) per (label, i)."""
    rng = np.random.default_rng(100 * label + i)
    return rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)


def write_folder(root: Path, *, per_class: int = 10, grey: bool = False,
                 jpeg_every: int = 0) -> dict[str, list[np.ndarray]]:
    """root/<class>/<i>.png (lossless); every ``jpeg_every``-th one a JPEG instead."""
    written: dict[str, list[np.ndarray]] = {}
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        written[name] = []
        for i in range(per_class):
            img = Image.fromarray(pixels(label, i))
            if grey:
                img = img.convert("L")
            suffix = ".jpg" if jpeg_every and i % jpeg_every == 0 else ".png"
            img.save(root / name / f"{i:03d}{suffix}")
            written[name].append(np.asarray(img))
    return written


def all_images(data) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.cat([data.x_train, data.x_val, data.x_test]),
            torch.cat([data.y_train, data.y_val, data.y_test]))


def test_png_folder_reads_classes_sizes_and_exact_pixels(tmp_path: Path) -> None:
    written = write_folder(tmp_path)
    (tmp_path / "dog" / "notes.txt").write_text("not an image: ignored")
    (tmp_path / ".cache").mkdir()  # hidden folders are not classes
    data = load_dataset(f"folder:{tmp_path}", seed=0)
    assert data.classes == CLASSES and data.input_shape == (3, 10, 12)
    assert data.sizes() == {"train": 21, "val": 3, "test": 6}  # 20% test, then 15% val
    assert data.x_train.dtype == torch.uint8 and data.flip_ok
    x, y = all_images(data)
    got = sorted((int(label), img.numpy().tobytes()) for img, label in zip(x, y))
    want = sorted((label, arr.transpose(2, 0, 1).tobytes())
                  for label, name in enumerate(CLASSES) for arr in written[name])
    assert got == want  # PNG is lossless: every file's pixels, each once, with its label


def test_folder_split_is_the_one_make_splits_makes(tmp_path: Path) -> None:
    write_folder(tmp_path)
    data = load_dataset(f"folder:{tmp_path}", seed=4)
    files = sorted(tmp_path.glob("*/*.png"))
    x = np.stack([np.asarray(Image.open(f)).transpose(2, 0, 1) for f in files])
    y = np.array([CLASSES.index(f.parent.name) for f in files])
    ref = make_splits("ref", CLASSES, x, y, seed=4)
    for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(data, k), getattr(ref, k)), k


def test_grey_folder_mixed_sizes_and_jpeg(tmp_path: Path) -> None:
    write_folder(tmp_path, grey=True, jpeg_every=3)
    Image.fromarray(pixels(0, 99, size=(20, 16))[..., 0]).save(tmp_path / "cat" / "big.png")
    data = load_dataset(f"folder:{tmp_path}")
    assert data.input_shape == (1, 10, 12)  # all grey -> 1 channel; the most common size wins
    resized = load_dataset(f"folder:{tmp_path}", image_size=8)
    assert resized.input_shape == (1, 8, 8) and sum(resized.sizes().values()) == 31
    Image.fromarray(pixels(1, 99)).save(tmp_path / "dog" / "colour.png")
    assert load_dataset(f"folder:{tmp_path}").input_shape == (3, 10, 12)  # one RGB -> RGB


def test_train_and_test_subfolders_give_the_test_split(tmp_path: Path) -> None:
    write_folder(tmp_path / "train", per_class=8)
    write_folder(tmp_path / "test", per_class=2)
    data = load_dataset(f"folder:{tmp_path}", seed=0)
    assert data.classes == CLASSES
    assert data.sizes() == {"train": 21, "val": 3, "test": 6}  # test: exactly test/
    (tmp_path / "test" / "yak").mkdir()
    Image.fromarray(pixels(0, 0)).save(tmp_path / "test" / "yak" / "0.png")
    with pytest.raises(DatasetError, match="class folder 'yak' that the training folder lacks"):
        load_dataset(f"folder:{tmp_path}")


def test_bad_folders_fail_before_training_naming_the_file(tmp_path: Path) -> None:
    write_folder(tmp_path / "ok", per_class=5)  # the fewest that measure a model
    corrupt = tmp_path / "ok" / "dog" / "002.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(DatasetError, match="002.png: not a readable image") as info:
        load_dataset(f"folder:{tmp_path / 'ok'}")
    assert str(corrupt) in str(info.value)

    Image.fromarray(pixels(1, 2, size=(64, 64))).save(corrupt.with_suffix(".jpg"), quality=90)
    corrupt.unlink()
    truncated = corrupt.with_suffix(".jpg")
    truncated.write_bytes(truncated.read_bytes()[:2000])  # the header parses, the data ends early
    for budget in (None, 0):  # in memory, and streamed: both decode every file up front
        with pytest.raises(DatasetError, match="002.jpg: cannot decode this image"):
            load_dataset(f"folder:{tmp_path / 'ok'}", memory_budget=budget)
    truncated.unlink()

    (tmp_path / "ok" / "fox").mkdir()
    (tmp_path / "ok" / "fox" / "readme.md").write_text("no images")
    with pytest.raises(DatasetError, match=r"class folder .*fox holds no images"):
        load_dataset(f"folder:{tmp_path / 'ok'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no class subfolders"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    write_folder(tmp_path / "one", per_class=3)
    for name in CLASSES[1:]:
        for f in (tmp_path / "one" / name).iterdir():
            f.unlink()
        (tmp_path / "one" / name).rmdir()
    with pytest.raises(DatasetError, match="holds one class folder"):
        load_dataset(f"folder:{tmp_path / 'one'}")
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'missing'}")


# -- streaming ----------------------------------------------------------------------------------

def test_over_budget_folder_streams_from_files(tmp_path: Path) -> None:
    write_folder(tmp_path, per_class=12)
    streamed = load_dataset(f"folder:{tmp_path}", memory_budget=100, train_subset=9)
    memory = load_dataset(f"folder:{tmp_path}", train_subset=9)
    assert isinstance(streamed.x_train, ImageFiles) and isinstance(memory.x_train, torch.Tensor)
    assert streamed.input_shape == memory.input_shape == (3, 10, 12)
    assert streamed.sizes() == memory.sizes() == {"train": 9, "val": 6, "test": 6}
    assert torch.bincount(streamed.y_train).tolist() == [3, 3, 3]
    for k in ("train", "val", "test"):
        assert torch.equal(getattr(streamed, f"y_{k}"), getattr(memory, f"y_{k}"))
        assert torch.equal(getattr(streamed, f"x_{k}")[:], getattr(memory, f"x_{k}"))
    assert torch.equal(streamed.x_val[2], memory.x_val[2])
    idx = torch.tensor([4, 0, 2])
    assert torch.equal(streamed.x_test[idx], memory.x_test[idx])


@pytest.mark.parametrize("workers, chunk", [(0, "epoch"), (1, "epoch"), (1, "3 batches")])
def test_streamed_batches_equal_in_memory_batches(tmp_path: Path, workers: int, chunk: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    if chunk == "3 batches":  # several chunks per epoch, the last one partial
        monkeypatch.setattr(batches_module, "CHUNK_BYTES", 3 * 5 * 4 * (3 * 10 * 12))
    write_folder(tmp_path, per_class=12)
    streamed = load_dataset(f"folder:{tmp_path}", memory_budget=0, seed=2)
    memory = load_dataset(f"folder:{tmp_path}", seed=2)
    options = dict(batch_size=5, shuffle=True, seed=7, crop_padding=2, flip=True, drop_last=True)
    a = make_batches(streamed, "train", workers=workers, **options)
    b = make_batches(memory, "train", **options)
    assert isinstance(a, StreamBatches) and type(b) is DeviceBatches and len(a) == len(b) == 4
    assert a.batches_per_chunk == b.batches_per_chunk
    assert (a.batches_per_chunk == 3) == (chunk == "3 batches")
    for epoch in range(2):  # a new order and new crops each epoch, identical on both paths
        pairs = list(zip(a, b, strict=True))
        assert len(pairs) == 4
        for (xa, ya), (xb, yb) in pairs:
            assert xa.dtype == torch.float32 and xa.shape == (5, 3, 10, 12)
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    val_a = list(make_batches(streamed, "val", batch_size=4, workers=workers))
    val_b = list(make_batches(memory, "val", batch_size=4))
    assert len(val_a) == len(val_b) == 2
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(val_a, val_b))


def test_chunking_keeps_batches_and_order(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randint(0, 256, (23, 2, 3, 3), dtype=torch.uint8)
    y = torch.arange(23)
    whole = list(DeviceBatches(x, y, batch_size=4, shuffle=True, seed=1))
    monkeypatch.setattr(batches_module, "CHUNK_BYTES", 2 * 4 * 4 * 18)  # two batches a chunk
    chunked = DeviceBatches(x, y, batch_size=4, shuffle=True, seed=1)
    assert chunked.batches_per_chunk == 2
    pieces = list(chunked)
    assert [len(yb) for _, yb in pieces] == [4, 4, 4, 4, 4, 3]
    for (xa, ya), (xb, yb) in zip(whole, pieces, strict=True):
        assert torch.equal(ya, yb) and torch.equal(xa, xb)
        assert torch.equal(xb, x[yb].float() / 255)


def test_make_batches_rejects_unknown_splits(tmp_path: Path) -> None:
    x = np.zeros((20, 1, 4, 4), dtype=np.uint8)
    data = make_splits("tiny", ("a", "b"), x, np.arange(20) % 2, seed=0)
    with pytest.raises(ValueError, match="split='validation'"):
        make_batches(data, "validation", batch_size=4)
