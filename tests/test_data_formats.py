"""Array formats read from real files: MNIST-style IDX (raw and gzipped), CIFAR-10/100 python
batches (unpickled safely), and .npz in every layout; a corrupted variant of each fails clearly."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from automl_cnn.data import DatasetError, load_dataset
from automl_cnn.errors import UserError


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False) -> Path:
    """An IDX file as MNIST ships it: 0x0000, type 0x08 (ubyte), ndim, big-endian dims, data."""
    data = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def mnist_arrays(n: int, seed: int, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, size=(n, 6, 5), dtype=np.uint8),  # 6 rows × 5 columns
            (np.arange(n) % classes).astype(np.uint8))


def write_mnist(folder: Path, *, gz: bool, test: bool = True) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    x, y = mnist_arrays(30, seed=1)
    write_idx(folder / "train-images-idx3-ubyte", x, gz=gz)
    write_idx(folder / "train-labels-idx1-ubyte", y, gz=gz)
    arrays = {"x": x, "y": y}
    if test:
        xt, yt = mnist_arrays(9, seed=2)
        write_idx(folder / "t10k-images-idx3-ubyte", xt, gz=gz)
        write_idx(folder / "t10k-labels-idx1-ubyte", yt, gz=gz)
        arrays.update(x_test=xt, y_test=yt)
    return arrays


def rows(x: torch.Tensor, y: torch.Tensor) -> list[tuple[int, bytes]]:
    """Images with their labels as a sortable multiset, to compare splits with the files."""
    return sorted((int(label), img.numpy().tobytes()) for img, label in zip(x, y))


# -- MNIST / IDX --------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzipped"])
def test_mnist_idx_files_become_exact_splits(tmp_path: Path, gz: bool) -> None:
    files = write_mnist(tmp_path / "mnist", gz=gz)
    data = load_dataset(f"mnist:{tmp_path / 'mnist'}", seed=0)
    assert data.input_shape == (1, 6, 5)
    assert data.classes == ("0", "1", "2") and data.num_classes == 3
    # 10 images per class, 15% of each class held out for validation; test = t10k as shipped.
    assert data.sizes() == {"train": 24, "val": 6, "test": 9}
    assert torch.equal(data.x_test[:, 0], torch.from_numpy(files["x_test"]))
    assert data.y_test.tolist() == files["y_test"].tolist()
    together = rows(torch.cat([data.x_train, data.x_val])[:, 0],
                    torch.cat([data.y_train, data.y_val]))
    assert together == rows(torch.from_numpy(files["x"]), torch.from_numpy(files["y"]))
    assert not data.flip_ok


def test_mnist_without_test_files_carves_a_test_split_and_reads_class_names(tmp_path: Path) -> None:
    write_mnist(tmp_path, gz=True, test=False)
    (tmp_path / "classes.txt").write_text("zero\none\ntwo\n")
    data = load_dataset(f"mnist:{tmp_path}", seed=0)
    assert data.classes == ("zero", "one", "two")
    assert data.sizes() == {"train": 21, "val": 3, "test": 6}  # 20% per class for test first


def test_mnist_variant_names_and_non_zero_based_labels(tmp_path: Path) -> None:
    x, _ = mnist_arrays(15, seed=3)  # 5 a class: the fewest that measure a model
    y = np.array([1, 2, 26] * 5, dtype=np.uint8)  # EMNIST letters start at 1
    write_idx(tmp_path / "emnist-letters-train-images.idx3-ubyte", x)
    write_idx(tmp_path / "emnist-letters-train-labels.idx1-ubyte", y)
    data = load_dataset(f"mnist:{tmp_path}")
    assert data.classes == ("1", "2", "26")
    labels = torch.cat([data.y_train, data.y_val, data.y_test])
    assert sorted(labels.tolist()) == [0] * 5 + [1] * 5 + [2] * 5


def _expect(match: str, dataset: str, **kwargs: object) -> DatasetError:
    with pytest.raises(DatasetError, match=match) as info:
        load_dataset(dataset, **kwargs)
    assert isinstance(info.value, UserError)
    return info.value


def test_mnist_bad_files_name_the_file_and_the_problem(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    write_mnist(folder, gz=False)
    images = folder / "train-images-idx3-ubyte"
    labels = folder / "train-labels-idx1-ubyte"
    good_images, good_labels = images.read_bytes(), labels.read_bytes()

    images.write_bytes(good_labels)  # a labels file under the images name
    err = _expect("wrong magic number 0x00000801", f"mnist:{folder}")
    assert str(images) in str(err)

    images.write_bytes(good_images[:-7])
    _expect(r"truncated: the header promises shape \(30, 6, 5\)", f"mnist:{folder}")
    images.write_bytes(b"<html>not found</html>")
    _expect("wrong magic number", f"mnist:{folder}")
    images.write_bytes(good_images)

    labels.write_bytes(struct.pack(">HBBI", 0, 8, 1, 29) + good_labels[8:-1])
    err = _expect("holds 30 images but .* holds 29 labels", f"mnist:{folder}")
    assert str(labels) in str(err)
    labels.write_bytes(good_labels)

    write_idx(folder / "t10k-images-idx3-ubyte", np.zeros((9, 7, 5), np.uint8))
    _expect("t10k-images-idx3-ubyte: images are 7×5, but the training images are 6×5",
            f"mnist:{folder}")

    (folder / "t10k-labels-idx1-ubyte").unlink()
    _expect("only one of t10k-images", f"mnist:{folder}")


def test_mnist_truncated_gzip_and_missing_files(tmp_path: Path) -> None:
    write_mnist(tmp_path / "g", gz=True)
    gzipped = tmp_path / "g" / "train-images-idx3-ubyte.gz"
    gzipped.write_bytes(gzipped.read_bytes()[:40])
    err = _expect("damaged or truncated gzip", f"mnist:{tmp_path / 'g'}")
    assert str(gzipped) in str(err)
    (tmp_path / "empty").mkdir()
    _expect("lacks train-images-idx3-ubyte", f"mnist:{tmp_path / 'empty'}")
    _expect("does not exist", f"mnist:{tmp_path / 'nowhere'}")


# -- CIFAR --------------------------------------------------------------------------------------

def cifar_batch(n: int, seed: int, label_key: str, classes: int, *, text_keys: bool) -> dict:
    rng = np.random.default_rng(seed)
    batch = {"batch_label": "training batch",
             "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             label_key: [int(v) for v in rng.permutation(np.arange(n) % classes)],
             "filenames": [f"img_{seed}_{i}.png" for i in range(n)]}
    if text_keys:
        return batch
    # What the real files hold: Python 2 str keys and values, read back as bytes.
    return {k.encode(): (v.encode() if isinstance(v, str) else
                         [f.encode() for f in v] if k == "filenames" else v)
            for k, v in batch.items()}


def write_cifar10(folder: Path, *, protocol: int = 2) -> dict[str, dict]:
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for i in range(1, 6):
        written[f"data_batch_{i}"] = cifar_batch(6, i, "labels", 3, text_keys=False)
    written["test_batch"] = cifar_batch(6, 9, "labels", 3, text_keys=False)
    written["batches.meta"] = {b"label_names": [b"cat", b"dog", b"frog"], b"num_vis": 3072}
    for name, obj in written.items():
        raw = pickle.dumps(obj, protocol=protocol)
        # The real files name numpy's array rebuilder by its numpy 1.x module path.
        raw = raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
        (folder / name).write_bytes(raw)
    return written


@pytest.mark.parametrize("nested", [False, True], ids=["dir", "archive-subfolder"])
def test_cifar10_batches_become_exact_splits(tmp_path: Path, nested: bool) -> None:
    inner = tmp_path / "cifar-10-batches-py" if nested else tmp_path
    written = write_cifar10(inner)
    data = load_dataset(f"cifar10:{tmp_path}", seed=0)
    assert data.input_shape == (3, 32, 32) and data.classes == ("cat", "dog", "frog")
    assert data.sizes() == {"train": 24, "val": 6, "test": 6}  # 30 = 5 batches × 6
    test = written["test_batch"]
    first = test[b"data"][0]
    assert torch.equal(data.x_test[0, 0], torch.from_numpy(first[:1024].reshape(32, 32)))  # red
    assert torch.equal(data.x_test[0, 2], torch.from_numpy(first[2048:].reshape(32, 32)))  # blue
    assert data.y_test.tolist() == test[b"labels"]
    train = [written[f"data_batch_{i}"] for i in range(1, 6)]
    x = torch.from_numpy(np.concatenate([b[b"data"] for b in train]).reshape(-1, 3, 32, 32))
    y = torch.tensor([v for b in train for v in b[b"labels"]])
    assert rows(torch.cat([data.x_train, data.x_val]), torch.cat([data.y_train, data.y_val])) \
        == rows(x, y)
    assert data.flip_ok


def test_cifar100_modern_pickles_with_text_keys(tmp_path: Path) -> None:
    for name, n, seed in (("train", 40, 1), ("test", 8, 2)):
        batch = cifar_batch(n, seed, "fine_labels", 4, text_keys=True)
        batch["coarse_labels"] = [v // 2 for v in batch["fine_labels"]]
        (tmp_path / name).write_bytes(pickle.dumps(batch, protocol=5))
    names = {"fine_label_names": ["apple", "bee", "cloud", "dolphin"],
             "coarse_label_names": ["a", "b"]}
    (tmp_path / "meta").write_bytes(pickle.dumps(names, protocol=4))
    data = load_dataset(f"cifar100:{tmp_path}", seed=1)
    assert data.classes == ("apple", "bee", "cloud", "dolphin")
    assert data.sizes() == {"train": 32, "val": 8, "test": 8}


class _Exploit:
    """A pickle that would create ``marker`` when loaded by a plain pickle.load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_cifar_unpickling_refuses_code_and_bad_contents(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    write_cifar10(folder)
    marker = tmp_path / "pwned"
    evil = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": _Exploit(marker)}
    (folder / "data_batch_2").write_bytes(pickle.dumps(evil, protocol=2))
    err = _expect("global .* is not allowed in a dataset file", f"cifar10:{folder}")
    assert "data_batch_2" in str(err) and not marker.exists()

    write_cifar10(folder)
    bad = cifar_batch(6, 3, "labels", 3, text_keys=False)
    bad[b"labels"] = bad[b"labels"][:5]
    (folder / "data_batch_3").write_bytes(pickle.dumps(bad, protocol=2))
    _expect(r"data_batch_3 \['data'\] holds 6 images but .* holds 5 labels", f"cifar10:{folder}")

    bad[b"data"] = np.zeros((5, 1024), np.uint8)
    (folder / "data_batch_3").write_bytes(pickle.dumps(bad, protocol=2))
    _expect(r"uint8 array of shape \(N, 3072\), got uint8 \(5, 1024\)", f"cifar10:{folder}")

    (folder / "data_batch_3").write_bytes(b"\x80\x02garbage")
    _expect("data_batch_3: not a readable CIFAR python batch", f"cifar10:{folder}")
    _expect("holds no data_batch_1", f"cifar10:{tmp_path}")
    _expect("holds no 'train' file", f"cifar100:{folder}")


# -- npz ----------------------------------------------------------------------------------------

NCHW = np.random.default_rng(0).integers(0, 256, size=(20, 3, 7, 9), dtype=np.uint8)
LABELS = np.arange(20) % 2


@pytest.mark.parametrize("layout", ["NHW", "NHWC", "NCHW", "NHW1", "float01"])
def test_npz_layouts_give_channels_first_uint8(tmp_path: Path, layout: str) -> None:
    x = {"NHW": NCHW[:, 0], "NHWC": NCHW.transpose(0, 2, 3, 1), "NCHW": NCHW,
         "NHW1": NCHW[:, :1].transpose(0, 2, 3, 1), "float01": NCHW / 255.0}[layout]
    expected = NCHW[:, :1] if layout in ("NHW", "NHW1") else NCHW
    path = tmp_path / "set.npz"
    np.savez(path, x=x[:16], y=LABELS[:16], x_test=x[16:], y_test=LABELS[16:])
    data = load_dataset(f"npz:{path}")
    assert data.input_shape == (expected.shape[1], 7, 9)
    assert data.sizes() == {"train": 14, "val": 2, "test": 4}
    assert torch.equal(data.x_test, torch.from_numpy(expected[16:]))
    assert data.classes == ("0", "1") and data.x_train.dtype == torch.uint8


def test_npz_with_class_names_and_column_labels(tmp_path: Path) -> None:
    path = tmp_path / "named.npz"
    np.savez_compressed(path, x=NCHW, y=LABELS[:, None], classes=np.array(["no", "yes"]))
    data = load_dataset(f"npz:{path}")
    assert data.classes == ("no", "yes") and sum(data.sizes().values()) == 20


@pytest.mark.parametrize("arrays, match", [
    ({"images": NCHW, "y": LABELS}, r"no array named x \(found: images, y\)"),
    ({"x": NCHW, "y": LABELS[:19]}, r"\[x\] holds 20 images but .*\[y\] holds 19 labels"),
    ({"x": NCHW, "y": LABELS, "x_test": NCHW[:, :, :5], "y_test": LABELS},
     r"x_test images have shape \(3, 5, 9\)"),
    ({"x": NCHW, "y": LABELS, "x_test": NCHW}, "only one of x_test and y_test"),
    ({"x": NCHW.astype(np.int32) * 2, "y": LABELS}, "must lie in 0..255"),
    ({"x": NCHW, "y": LABELS * 0.5}, "labels must be a 1-D array of integers"),
    ({"x": NCHW[:, :, 0, 0], "y": LABELS}, r"array has shape \(20, 3\)"),
])
def test_npz_bad_contents_are_named(tmp_path: Path, arrays: dict, match: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    err = _expect(match, f"npz:{path}")
    assert str(path) in str(err)


def test_npz_never_unpickles_and_rejects_other_files(tmp_path: Path) -> None:
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.array([object()] * 3, dtype=object), y=np.arange(3))
    _expect("Object arrays cannot be loaded", f"npz:{path}")
    (tmp_path / "not.npz").write_text("hello")
    _expect("cannot read it as an .npz archive", f"npz:{tmp_path / 'not.npz'}")
    _expect("is a folder, but a file is expected", f"npz:{tmp_path}")
