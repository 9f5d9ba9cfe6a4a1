"""Scoring batch and memory layout on this device, measured on the real paths.

- scoring: :func:`automl_cnn.evaluation.evaluate` on clutter's 6,000 test images with the
  VGG-style baseline, by batch size;
- training: one epoch of :func:`automl_cnn.training.fit_spec` per baseline of the default space
  on clutter:6000, in the default (NCHW) layout and in channels-last (the model converted when
  training starts, by a callback, so nothing in the package changes for the benchmark).

Runs alternate (default, channels-last, default, ...) so a busy moment hits both sides alike;
each figure is the median of ``--repeats``.

    python benchmarks/bench_layout.py --repeats 3 [--json layout.json]

What it decided: ``evaluation.scoring_batch`` (128 on a CPU) and the default layout for
training (channels-last was faster for a bare step on a fixed batch, not inside ``fit_spec``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import optuna
import torch

from automl_cnn.data import load_dataset
from automl_cnn.device import resolve_device
from automl_cnn.evaluation import evaluate
from automl_cnn.model import build_model
from automl_cnn.search_spaces import load_space
from automl_cnn.training import fit_spec, silence_lightning
from emit import emit  # benchmarks/ is on the path when run as a script


class ChannelsLast(L.Callback):
    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        module.model.to(memory_format=torch.channels_last)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="clutter:6000")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    silence_lightning()
    device = resolve_device(args.device)
    data = load_dataset(args.dataset, seed=0).to(device.torch_device)
    space = load_space("default")
    specs = [(b.name, space.sample(optuna.trial.FixedTrial(b.params), flip_ok=data.flip_ok))
             for b in space.baselines]
    result: dict[str, Any] = {"device": device.torch_device, "dataset": args.dataset,
                              "threads": torch.get_num_threads(), "score": [], "train": []}
    model = build_model(specs[0][1], data.input_shape, data.num_classes).to(device.torch_device)
    for batch in (128, 512, 1024):
        seconds = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            evaluate(model, data.x_test, data.y_test, batch_size=batch)
            seconds.append(time.perf_counter() - started)
        result["score"].append({"batch": batch, "images_per_s": round(
            len(data.y_test) / statistics.median(seconds))})
        print(result["score"][-1], flush=True)
    for label, spec in specs:
        runs: dict[str, list[float]] = {"default": [], "channels_last": []}
        for _ in range(args.repeats):
            for key, callbacks in (("default", []), ("channels_last", [ChannelsLast()])):
                fit = fit_spec(spec, data, device, seed=0, epochs=1, val_split=None,
                               callbacks=callbacks)
                runs[key].append(len(data.y_train) / fit.seconds)
        med = {k: statistics.median(v) for k, v in runs.items()}
        result["train"].append({"baseline": label, **{f"{k}_images_per_s": round(v)
                                                      for k, v in med.items()},
                                "channels_last_ratio": round(med["channels_last"]
                                                             / med["default"], 2)})
        print(result["train"][-1], flush=True)
    emit(result, args.json)


if __name__ == "__main__":
    main()
