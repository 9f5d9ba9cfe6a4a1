"""Does the architecture matter on ``clutter``? Three fixed specs, each trained for the same wall
budget through the project's training code (``CNNModule`` + ``make_trainer``), test accuracy.

Each spec's epoch count is fitted to ``--seconds``: a few timed steps estimate its time per
epoch, and the one-cycle schedule then spans that many epochs, so every net gets a complete
schedule in about the same time. Rows:

- ``1 block, no pooling``: conv 32 (3×3) + BN + ReLU, flatten head: a wide linear read-out of
  local features;
- ``2 blocks (space baseline)``: the default space's "conv-bn-relu x2" (32, 64 + max pool,
  flatten head);
- ``4 blocks + BN``: 32, 64, 128, 128, max pooling after blocks 1-3, global average head
  (an airbench-style stack one block deeper than the space's second baseline).

Also printed: the generation time of the set and a shortcut check (a linear classifier on
per-image brightness statistics, which should sit near chance).

Run: ``python benchmarks/bench_clutter.py [--dataset clutter] [--seconds 90] [--seed 0]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from automl_cnn.arch import ArchSpec, ConvBlock, HeadSpec, TrainSpec
from automl_cnn.data import ImageSplits, load_dataset, make_batches
from automl_cnn.device import Device, resolve_device
from automl_cnn.model import build_model
from automl_cnn.shapes import plan_layers
from automl_cnn.training import CNNModule, evaluate, make_trainer

RECIPE = TrainSpec(optimizer="adamw", lr=5e-3, weight_decay=5e-4, schedule="onecycle",
                   label_smoothing=0.1, batch_size=64, epochs=1, crop_padding=1, flip=False)
SPECS = {
    "1 block, no pooling": ArchSpec(
        blocks=(ConvBlock(32),), head=HeadSpec(global_pool="flatten", dropout=0.1), train=RECIPE),
    "2 blocks (space baseline)": ArchSpec(
        blocks=(ConvBlock(32), ConvBlock(64, pool="max")),
        head=HeadSpec(global_pool="flatten", dropout=0.1), train=RECIPE),
    "4 blocks + BN": ArchSpec(
        blocks=(ConvBlock(32, pool="max"), ConvBlock(64, pool="max"), ConvBlock(128, pool="max"),
                ConvBlock(128)),
        head=HeadSpec(global_pool="avg"), train=RECIPE),
}


def seconds_per_epoch(spec: ArchSpec, data: ImageSplits, *, steps: int = 12) -> float:
    """Wall time of one training epoch, from ``steps`` timed steps of a throwaway copy."""
    model = build_model(spec, data.input_shape, data.num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.train.lr)
    batches = make_batches(data, "train", batch_size=spec.train.batch_size, shuffle=True,
                           crop_padding=spec.train.crop_padding, drop_last=True)
    times = []
    for i, (xb, yb) in enumerate(batches):
        if i == steps + 2:
            break
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return float(np.median(times[2:])) * len(batches)


def train_for(spec: ArchSpec, data: ImageSplits, device: Device, *, seconds: float,
              seed: int) -> dict[str, float]:
    """Train ``spec`` with its schedule fitted to about ``seconds``; test accuracy and more."""
    per_epoch = seconds_per_epoch(spec, data)
    epochs = max(1, round(seconds / per_epoch))
    spec = ArchSpec(spec.blocks, spec.head, TrainSpec(**{**vars(spec.train), "epochs": epochs}))
    torch.manual_seed(seed)
    model = build_model(spec, data.input_shape, data.num_classes)
    t = spec.train
    train = make_batches(data, "train", batch_size=t.batch_size, shuffle=True, seed=seed,
                         crop_padding=t.crop_padding, flip=t.flip, drop_last=True)
    module = CNNModule(model, t, steps_per_epoch=len(train))
    started = time.perf_counter()
    make_trainer(max_epochs=epochs, device=device, callbacks=[]).fit(
        module, train, make_batches(data, "val", batch_size=1024))
    took = time.perf_counter() - started
    plan = plan_layers(spec, data.input_shape, data.num_classes)
    return {"epochs": epochs, "seconds": took, "params": plan.params,
            "val_acc": module.history[-1]["val_acc"],
            "test_acc": evaluate(module.model.eval(), data.x_test, data.y_test)["accuracy"]}


def brightness_shortcut(data: ImageSplits) -> float:
    """Test accuracy of a linear classifier on per-image mean, std and 8-bin histogram."""
    from sklearn.linear_model import LogisticRegression

    def stats(x: torch.Tensor) -> np.ndarray:
        a = x.flatten(1).float().numpy() / 255.0
        hist = np.stack([np.histogram(row, bins=8, range=(0, 1))[0] for row in a]) / a.shape[1]
        return np.column_stack([a.mean(1), a.std(1), hist])

    clf = LogisticRegression(max_iter=2000).fit(stats(data.x_train), data.y_train.numpy())
    return float(clf.score(stats(data.x_test), data.y_test.numpy()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="clutter")
    parser.add_argument("--seconds", type=float, default=90.0, help="training budget per spec")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    data = load_dataset(args.dataset, seed=args.seed)
    print(f"{args.dataset}: {data.sizes()} images {data.input_shape}, {data.num_classes} "
          f"classes, loaded in {time.perf_counter() - started:.1f} s")
    print(f"brightness/histogram shortcut (logistic regression): test "
          f"{brightness_shortcut(data):.3f} (chance {1 / data.num_classes:.3f})")
    device = resolve_device("cpu")
    print(f"{'spec':28} {'params':>9} {'epochs':>6} {'train s':>8} {'val acc':>8} {'test acc':>8}")
    for name, spec in SPECS.items():
        row = train_for(spec, data, device, seconds=args.seconds, seed=args.seed)
        print(f"{name:28} {row['params']:>9,} {row['epochs']:>6} {row['seconds']:>8.1f} "
              f"{row['val_acc']:>8.3f} {row['test_acc']:>8.3f}", flush=True)


if __name__ == "__main__":
    main()
