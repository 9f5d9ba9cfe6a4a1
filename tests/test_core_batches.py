"""Built-in datasets, device-resident batching and batched augmentation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from automl_cnn.data import DeviceBatches, augment_batch, load_dataset
from automl_cnn.device import cpu_has_bf16, resolve_device
from automl_cnn.errors import UserError


def test_digits_is_the_real_bundled_set_with_a_fixed_test_split() -> None:
    a, b = load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    assert a.input_shape == (1, 8, 8) and a.classes == tuple("0123456789")
    assert sum(a.sizes().values()) == 1797
    assert a.x_train.dtype == torch.uint8 and int(a.x_train.max()) == 255
    assert torch.equal(a.x_test, b.x_test)  # --seed never moves the test split
    assert not torch.equal(a.y_val, b.y_val)  # ... but re-carves validation
    assert not a.flip_ok  # a mirrored 2 is not a 2


def test_shapes_is_seeded_balanced_and_colour() -> None:
    a, b = load_dataset("shapes"), load_dataset("shapes")
    assert a.input_shape == (3, 32, 32) and a.classes == ("line", "curve", "square", "circle")
    assert torch.equal(a.x_train, b.x_train)
    counts = torch.bincount(a.y_train, minlength=4)
    assert int(counts.max() - counts.min()) <= 1 and a.flip_ok


def test_batches_cover_every_sample_once_per_epoch_as_unit_floats() -> None:
    x = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).repeat(1, 1, 2, 2) * 20
    y = torch.arange(10)
    batches = DeviceBatches(x, y, batch_size=4, shuffle=True, seed=3)
    assert len(batches) == 3
    for _ in range(2):
        seen = torch.cat([yb for _, yb in batches])
        assert sorted(seen.tolist()) == list(range(10))
    xb, yb = next(iter(batches))
    assert xb.dtype == torch.float32 and torch.allclose(xb[:, 0, 0, 0], yb.float() * 20 / 255)
    assert len(DeviceBatches(x, y, batch_size=4, drop_last=True)) == 2


def test_random_crop_is_a_shift_of_the_zero_padded_image() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 2, 6, 5)
    p = 2
    out = augment_batch(x, crop_padding=p, flip=False, generator=g)
    padded = F.pad(x, (p, p, p, p))
    shifts = set()
    for i in range(len(x)):
        matches = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                   if torch.equal(out[i], padded[i, :, dy:dy + 6, dx:dx + 5])]
        assert matches, f"image {i} is not a crop of its padded self"
        shifts.add(matches[0])
    assert len(shifts) > 5  # offsets differ per image


def test_flip_mirrors_about_half_the_images() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, 1, 3, 4)
    out = augment_batch(x, crop_padding=0, flip=True, generator=g)
    flipped = [torch.equal(o, i.flip(2)) for o, i in zip(out, x)]
    kept = [torch.equal(o, i) for o, i in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 60 < sum(flipped) < 140


def test_device_resolution_on_a_cpu_machine() -> None:
    # auto trains in bf16 where the CPU computes it natively, else in fp32; both can be asked for
    assert resolve_device("cpu").precision == ("bf16-mixed" if cpu_has_bf16() else "32-true")
    assert resolve_device("cpu", "32").precision == "32-true"
    assert resolve_device("cpu", "bf16").precision == "bf16-mixed"
    with pytest.raises(UserError, match="unknown precision 'fp8'.*auto, 32, bf16"):
        resolve_device("cpu", "fp8")
    auto = resolve_device("auto")
    if torch.cuda.is_available():
        assert auto.accelerator == "gpu" and auto.precision in ("bf16-mixed", "16-mixed")
    else:
        assert auto.torch_device == "cpu"
        with pytest.raises(UserError, match="no CUDA device"):
            resolve_device("gpu")


def test_cpu_autocast_computes_in_bf16_only_when_asked() -> None:
    conv = torch.nn.Conv2d(1, 4, 3)
    x = torch.rand(2, 1, 8, 8)
    with resolve_device("cpu", "bf16").autocast():
        assert conv(x).dtype == torch.bfloat16
    with resolve_device("cpu", "32").autocast():
        assert conv(x).dtype == torch.float32
    assert conv.weight.dtype == torch.float32  # autocast never changes the weights' kind
