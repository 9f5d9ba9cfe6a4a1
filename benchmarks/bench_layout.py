"""Memory layout and scoring batch on this device: training images/s of each baseline of the
default space in the default (NCHW) layout against channels-last, and scoring images/s by batch
size and layout. Runs alternate (default, channels-last, default, ...) so a busy moment hits
both sides alike; each figure is the median of ``--repeats``.

    python benchmarks/bench_layout.py --repeats 3 [--json layout.json]

What it decided: ``Device.memory_format`` (channels-last on a CPU) and
``evaluation.scoring_batch`` (128 on a CPU).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import optuna
import torch
import torch.nn.functional as F

from automl_cnn.data import ImageSplits, load_dataset
from automl_cnn.device import resolve_device
from automl_cnn.model import build_model
from automl_cnn.search_spaces import load_space
from emit import emit  # benchmarks/ is on the path when run as a script

LAYOUTS = {"default": torch.contiguous_format, "channels_last": torch.channels_last}


def train_speed(spec: Any, data: ImageSplits, where: str, layout: torch.memory_format,
                images: int) -> float:
    """Training images/s (forward, backward, AdamW step) after 3 warm-up steps."""
    torch.manual_seed(0)
    model = build_model(spec, data.input_shape, data.num_classes).to(where, memory_format=layout)
    bs = spec.train.batch_size
    x = data.x_train[:bs].to(where).float().div(255.0)
    y = data.y_train[:bs].to(where)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    steps = max(5, images // bs)
    for i in range(3 + steps):
        if i == 3:
            _sync(where)
            started = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(where)
    return steps * bs / (time.perf_counter() - started)


@torch.no_grad()
def score_speed(spec: Any, data: ImageSplits, where: str, layout: torch.memory_format,
                batch: int, images: int) -> float:
    model = build_model(spec, data.input_shape, data.num_classes).to(where, memory_format=layout)
    model.eval()
    x = data.x_val[:images].to(where)
    model(x[:batch].float().div(255.0))  # warm-up
    _sync(where)
    started = time.perf_counter()
    for i in range(0, len(x), batch):
        model(x[i:i + batch].float().div(255.0))
    _sync(where)
    return len(x) / (time.perf_counter() - started)


def _sync(where: str) -> None:
    if where.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="clutter:6000,digits")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--images", type=int, default=3000, help="images per timed run")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    where = resolve_device(args.device).torch_device
    space = load_space("default")
    result: dict[str, Any] = {"device": where, "threads": torch.get_num_threads(),
                              "train": [], "score": []}
    for name in args.datasets.split(","):
        data = load_dataset(name, seed=0)
        specs = [(b.name, space.sample(optuna.trial.FixedTrial(b.params), flip_ok=data.flip_ok))
                 for b in space.baselines]
        for label, spec in specs:
            runs: dict[str, list[float]] = {k: [] for k in LAYOUTS}
            for _ in range(args.repeats):
                for key, layout in LAYOUTS.items():
                    runs[key].append(train_speed(spec, data, where, layout, args.images))
            med = {k: statistics.median(v) for k, v in runs.items()}
            result["train"].append({"dataset": name, "baseline": label, **{
                f"{k}_images_per_s": round(v) for k, v in med.items()},
                "channels_last_ratio": round(med["channels_last"] / med["default"], 2)})
            print(result["train"][-1], flush=True)
        label, spec = specs[0]
        for batch in (128, 1024):
            for key, layout in LAYOUTS.items():
                speed = statistics.median(score_speed(spec, data, where, layout, batch,
                                                      args.images) for _ in range(args.repeats))
                result["score"].append({"dataset": name, "baseline": label, "batch": batch,
                                        "layout": key, "images_per_s": round(speed)})
                print(result["score"][-1], flush=True)
    emit(result, args.json)


if __name__ == "__main__":
    main()
