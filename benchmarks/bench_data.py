"""Images per second delivered to the model: the on-device path against a conventional
``TensorDataset`` + ``DataLoader`` over the same data.

Every row hands the training step the same thing: shuffled float batches in [0, 1] of
``--batch-size`` images, already on ``--device``. Rows:

- ``DeviceBatches``: automl-cnn's path; uint8 tensors on the device, one ``randperm`` per epoch,
  slicing and conversion per batch (``+ augment``: batched random crop and flip as well);
- ``DataLoader wN``: ``TensorDataset(x_uint8, y)`` + ``DataLoader(shuffle=True, num_workers=N,
  persistent_workers=N > 0)``, then the same ``.float().div(255)`` and move to the device
  (``+ augment``: the same batched crop and flip after loading);
- ``StreamBatches``: the streaming path over the same images written as PNG files (decoded
  every epoch by DataLoader workers), for scale.

Run: ``python benchmarks/bench_data.py [--dataset digits] [--device cpu] [--threads 1]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from automl_cnn.data import DeviceBatches, augment_batch, load_dataset, make_batches

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def epochs_rate(batches: Batches, *, epochs: int, device: torch.device,
                min_seconds: float = 0.0) -> float:
    """Images per second over at least ``epochs`` full passes and ``min_seconds``: fast rows
    run more epochs, so one scheduler hiccup on a busy machine cannot dominate a window."""
    seen, done = 0, 0
    start = time.perf_counter()
    while done < epochs or time.perf_counter() - start < min_seconds:
        for _, yb in batches:
            seen += len(yb)
        done += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return seen / (time.perf_counter() - start)


def measure(rows: dict[tuple[str, bool], Callable[[], Batches]], *, epochs: int, repeat: int,
            device: torch.device, min_seconds: float) -> dict[tuple[str, bool], float]:
    """Median images/s per row. Rows take turns within each repeat, so a noisy neighbour on
    a shared machine slows every row alike rather than whichever ran at that moment."""
    made = {key: make() for key, make in rows.items()}
    for batches in made.values():  # warm-up: worker start-up, thread pools, allocator
        epochs_rate(batches, epochs=3, device=device)
    rates: dict[tuple[str, bool], list[float]] = {key: [] for key in rows}
    for _ in range(repeat):
        for key, batches in made.items():
            rates[key].append(epochs_rate(batches, epochs=epochs, device=device,
                                          min_seconds=min_seconds))
    return {key: statistics.median(r) for key, r in rates.items()}


class LoaderBatches:
    """The conventional pipeline, finished the way a training step needs its input."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, batch_size: int, workers: int,
                 device: torch.device, augment: bool) -> None:
        self.loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True,
                                 num_workers=workers, persistent_workers=workers > 0,
                                 pin_memory=device.type == "cuda", drop_last=True)
        self.device, self.augment = device, augment
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(0)

    def __iter__(self):
        for xb, yb in self.loader:
            xb = xb.to(self.device, non_blocking=True).float().div_(255.0)
            if self.augment:
                xb = augment_batch(xb, crop_padding=2, flip=True, generator=self.generator)
            yield xb, yb.to(self.device, non_blocking=True)


def write_png_folder(x: torch.Tensor, y: torch.Tensor, classes: tuple[str, ...],
                     root: Path) -> None:
    for i, (img, label) in enumerate(zip(x.numpy(), y.tolist())):
        folder = root / classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        array = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
        Image.fromarray(np.ascontiguousarray(array)).save(folder / f"{i:06d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="at least this many per window")
    parser.add_argument("--min-seconds", type=float, default=0.5,
                        help="... and at least this long (fast rows run more epochs)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--no-stream", action="store_true", help="skip the PNG streaming row")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice); on a busy "
                             "machine 1 avoids OpenMP contention on these tiny tensors")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = load_dataset(args.dataset, seed=0)
    x_host, y_host = data.x_train, data.y_train
    on_device = data.to(device)
    bs = args.batch_size

    def device_rows(aug: bool) -> Callable[[], Batches]:
        return lambda: DeviceBatches(on_device.x_train, on_device.y_train, batch_size=bs,
                                     shuffle=True, crop_padding=2 if aug else 0, flip=aug,
                                     drop_last=True)

    rows: dict[tuple[str, bool], Callable[[], Batches]] = {}
    for aug in (False, True):
        rows["DeviceBatches", aug] = device_rows(aug)
        for w in args.workers:
            rows[f"DataLoader w{w}", aug] = lambda w=w, aug=aug: LoaderBatches(
                x_host, y_host, batch_size=bs, workers=w, device=device, augment=aug)
    tmp = tempfile.TemporaryDirectory()
    if not args.no_stream:
        write_png_folder(x_host, y_host, data.classes, Path(tmp.name))
        streamed = load_dataset(f"folder:{tmp.name}", memory_budget=0).to(device)
        for w in (0, 1):
            rows[f"StreamBatches PNG w{w}", False] = lambda w=w: make_batches(
                streamed, "train", batch_size=bs, shuffle=True, drop_last=True, workers=w)

    print(f"{args.dataset}: {len(y_host)} training images {tuple(x_host.shape[1:])}, batch {bs}, "
          f"device {device}, median of {args.repeat} windows of >= {args.epochs} epochs and "
          f">= {args.min_seconds:g} s each "
          f"(torch threads: {torch.get_num_threads()})\n")
    rates = measure(rows, epochs=args.epochs, repeat=args.repeat, device=device,
                    min_seconds=args.min_seconds)
    print(f"{'pipeline':<24}{'augment':>8}{'images/s':>14}{'vs DataLoader w0':>18}")
    for (name, aug), rate in rates.items():
        base = rates[("DataLoader w0", aug)] if ("DataLoader w0", aug) in rates else rate
        print(f"{name:<24}{'yes' if aug else 'no':>8}{rate:>14,.0f}{rate / base:>17.1f}×")
    tmp.cleanup()


if __name__ == "__main__":
    main()
