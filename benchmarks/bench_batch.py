"""Bigger batches on a GPU: does accuracy hold, and under which learning-rate rule?

Trains the 2-conv CNN of ``bench_overhead.py`` with ``fit_spec`` (the trial's own path) at
batch 64 and at bigger batches, with the learning rate kept, scaled by √k, or scaled by k
(k = batch / 64), and reports seconds and final validation accuracy of each.

    python benchmarks/bench_batch.py --dataset mnist:/tmp/idx60k --device cuda --epochs 3
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from bench_overhead import sync, two_conv_spec  # noqa: E402

RULES = {"same": lambda k: 1.0, "sqrt": math.sqrt, "linear": lambda k: float(k)}


def measure(dataset: str, device_name: str, *, epochs: int, batches: list[int],
            base_lr: float) -> list[dict[str, Any]]:
    import time

    from automl_cnn.data import load_dataset
    from automl_cnn.device import resolve_device
    from automl_cnn.training import fit_spec, silence_lightning

    silence_lightning()
    device = resolve_device(device_name)
    data = load_dataset(dataset, seed=0).to(device.torch_device)
    base = two_conv_spec(batch_size=64, epochs=epochs)
    fit_spec(replace(base, train=replace(base.train, epochs=1)), data, device, seed=0)  # warm-up
    rows = []
    for batch in batches:
        k = batch / 64
        for rule, scale in RULES.items():
            if batch == 64 and rule != "same":
                continue
            spec = replace(base, train=replace(base.train, batch_size=batch,
                                               lr=base_lr * scale(k)))
            started = time.perf_counter()
            fit = fit_spec(spec, data, device, seed=0)
            sync(device)
            rows.append({"batch": batch, "rule": rule, "lr": round(spec.train.lr, 5),
                         "seconds": round(time.perf_counter() - started, 3),
                         "val_acc": round(fit.history[-1]["val_acc"], 4)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--lr", type=float, default=3e-3, help="the learning rate at batch 64")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = measure(args.dataset, args.device, epochs=args.epochs, batches=args.batches,
                   base_lr=args.lr)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
