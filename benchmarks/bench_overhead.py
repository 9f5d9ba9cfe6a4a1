"""Lightning's own cost: ``fit_spec`` (the Trainer every trial uses) against a bare PyTorch loop.

Both sides train the same architecture (a 2-conv CNN, the one in ../shared/MEASURED.md) with the
same recipe (AdamW + one-cycle, label smoothing), on the same device-resident batches
(``make_batches``), the same batch size and epochs, validate once per epoch with the metrics
kept on the device, and train in the device's precision (``--precision``: bf16 autocast on
CUDA and on a CPU with native bf16, as Lightning's ``bf16-mixed`` does). Runs are
taken in turns (Lightning, bare, Lightning, bare, ...) so a noisy neighbour hits both; the
figure is the median of the per-round ratios. Also prints the achieved TFLOP/s of a training
step (the layer plan's forward FLOPs × 3 for forward + backward × images per second).

    python benchmarks/bench_overhead.py --dataset digits --device cpu --epochs 10 --rounds 5
    python benchmarks/bench_overhead.py --dataset mnist:/data/60k --device cuda --epochs 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from automl_cnn.arch import ArchSpec, ConvBlock, HeadSpec, TrainSpec
from automl_cnn.data import ImageSplits, load_dataset, make_batches
from automl_cnn.device import Device, resolve_device
from automl_cnn.evaluation import scoring_batch
from automl_cnn.model import build_model
from automl_cnn.recipes import optimizer_for, schedule_for
from automl_cnn.shapes import plan_layers
from automl_cnn.training import fit_spec, silence_lightning

from emit import emit  # benchmarks/ is on the path when run as a script


def two_conv_spec(*, batch_size: int, epochs: int) -> ArchSpec:
    """conv32-BN-ReLU-maxpool, conv64-BN-ReLU-maxpool, flatten, linear."""
    return ArchSpec(
        blocks=(ConvBlock(32, kernel=3, padding=1, pool="max"),
                ConvBlock(64, kernel=3, padding=1, pool="max")),
        head=HeadSpec(global_pool="flatten"),
        train=TrainSpec(batch_size=batch_size, epochs=epochs),
    )


def sync(device: Device) -> None:
    if device.accelerator == "gpu":
        torch.cuda.synchronize()


def bare_fit(spec: ArchSpec, data: ImageSplits, device: Device, *, seed: int) -> float:
    """The same training as fit_spec, as a plain loop; returns its wall seconds."""
    started = time.perf_counter()
    t = spec.train
    torch.manual_seed(seed)
    model = build_model(spec, data.input_shape, data.num_classes).to(device.torch_device)
    train = make_batches(data, "train", batch_size=t.batch_size, shuffle=True, seed=seed,
                         crop_padding=t.crop_padding, flip=t.flip, drop_last=True)
    val = make_batches(data, "val", batch_size=scoring_batch(device.torch_device))
    opt = optimizer_for(t.optimizer)(model.parameters(), t)
    sched = schedule_for(t.schedule)(opt, t, max(t.epochs * len(train), 1))
    cast = device.autocast()  # what Lightning's precision flag does: bf16 on CUDA and bf16 CPUs
    for _ in range(t.epochs):
        model.train()
        total = torch.zeros((), device=device.torch_device)
        for x, y in train:
            with cast:
                loss = F.cross_entropy(model(x), y, label_smoothing=t.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total += loss.detach().float()
        model.eval()
        correct = torch.zeros((), dtype=torch.long, device=device.torch_device)
        with torch.no_grad(), cast:
            for x, y in val:
                correct += (model(x).float().argmax(1) == y).sum()
        _ = total.item(), correct.item()  # the epoch's one host sync, as CNNModule's
    sync(device)
    return time.perf_counter() - started


def lightning_fit(spec: ArchSpec, data: ImageSplits, device: Device, *, seed: int) -> float:
    started = time.perf_counter()
    fit_spec(spec, data, device, seed=seed)
    sync(device)
    return time.perf_counter() - started


def tflops(spec: ArchSpec, data: ImageSplits, seconds: float) -> float:
    """Achieved TFLOP/s of the training steps: forward FLOPs × 3 (forward + backward)."""
    flops = plan_layers(spec, data.input_shape, data.num_classes).flops
    images = (len(data.y_train) // spec.train.batch_size) * spec.train.batch_size
    return 3 * flops * images * spec.train.epochs / seconds / 1e12


def measure(dataset: str, device_name: str, *, epochs: int, batch: int, rounds: int,
            threads: int | None, precision: str = "auto") -> dict[str, Any]:
    silence_lightning()
    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(device_name, precision)
    data = load_dataset(dataset, seed=0).to(device.torch_device)
    spec = two_conv_spec(batch_size=batch, epochs=epochs)
    lightning_fit(spec, data, device, seed=0)  # warm-up: kernels, allocator, first Trainer
    bare_fit(spec, data, device, seed=0)
    light, bare = [], []
    for r in range(rounds):
        light.append(lightning_fit(spec, data, device, seed=r))
        bare.append(bare_fit(spec, data, device, seed=r))
    ratios = [a / b for a, b in zip(light, bare, strict=True)]
    steps = (len(data.y_train) // batch) * epochs
    return {
        "dataset": dataset, "device": device.torch_device, "precision": device.precision,
        "epochs": epochs, "batch_size": batch, "steps": steps, "rounds": rounds,
        "threads": torch.get_num_threads(),
        "lightning_s": [round(s, 4) for s in light], "bare_s": [round(s, 4) for s in bare],
        "ratio_median": round(statistics.median(ratios), 3),
        "overhead_ms_per_step": round(1000 * (statistics.median(light)
                                              - statistics.median(bare)) / steps, 3),
        "tflops_lightning": round(tflops(spec, data, statistics.median(light)), 4),
        "tflops_bare": round(tflops(spec, data, statistics.median(bare)), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precision", default="auto", help="auto | 32 | bf16 (--precision)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    result = measure(args.dataset, args.device, epochs=args.epochs, batch=args.batch,
                     rounds=args.rounds, threads=args.threads, precision=args.precision)
    emit(result, args.json)


if __name__ == "__main__":
    main()
