"""What k workers sharing one device train together: images/s of the space's first baseline in
k processes at once, as a multiple of one process alone (``runners/parallel.py``'s
``GPU_SHARING``, which sizes a search under ``--jobs N``).

The largest k's processes are started once, each loading the data onto the device, building
the model and warming up (cuDNN's choice of kernels) before anything is timed. Then, for each k
in turn, the first k train together for ``--seconds`` (the loop of ``measure_speed``: forward,
backward and an SGD step on augmented batches in the search's precision) while the others
wait, and ``nvidia-smi`` samples how busy the GPU is. Rounds go k = 1, 2, 4, 8, 1, 2, ... so a
drift hits every k alike; each k's figure is the median over rounds.

    python benchmarks/bench_concurrency.py --dataset mnist:/tmp/idx60k --device cuda
    python benchmarks/bench_concurrency.py --dataset digits --device cpu --workers 1 2 --seconds 2
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))


def worker(index: int, args: dict[str, Any], threads: int, ready: Any, go: list[Any],
           results: Any) -> None:
    import optuna
    import torch
    import torch.nn.functional as F

    from automl_cnn.data import load_dataset, make_batches
    from automl_cnn.device import resolve_device
    from automl_cnn.model import build_model
    from automl_cnn.search_spaces import load_space
    from automl_cnn.training import silence_lightning

    silence_lightning()
    torch.set_num_threads(threads)
    device = resolve_device(args["device"])
    data = load_dataset(args["dataset"], seed=0).to(device.torch_device)
    space = load_space(args["space"])
    spec = space.sample(optuna.trial.FixedTrial(space.baselines[0].params), flip_ok=data.flip_ok)
    t = spec.train
    torch.manual_seed(index)
    model = build_model(spec, data.input_shape, data.num_classes).to(device.torch_device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def batches() -> Any:
        epoch = 0
        while True:
            yield from make_batches(data, "train", batch_size=t.batch_size, shuffle=True,
                                    seed=index * 1000 + epoch, crop_padding=t.crop_padding,
                                    flip=t.flip, drop_last=True)
            epoch += 1

    def step(x: Any, y: Any) -> None:
        with device.autocast():
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sync() -> None:
        if device.accelerator == "gpu":
            torch.cuda.synchronize()

    stream = batches()
    for _ in range(10):  # warm-up: CUDA's context, cuDNN's choice of kernels
        step(*next(stream))
    sync()
    ready.put(index)
    for round_no, k in enumerate(args["rounds"]):
        go[round_no].wait()
        if index >= k:
            continue
        seen, started = 0, time.perf_counter()
        while time.perf_counter() - started < args["seconds"]:
            x, y = next(stream)
            step(x, y)
            seen += len(y)
        sync()
        results.put((round_no, index, seen, time.perf_counter() - started))


def main() -> None:
    from emit import emit  # benchmarks/ is on the path when run as a script

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--device", default="auto")
    p.add_argument("--space", default="default")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--seconds", type=float, default=8.0, help="each k trains this long")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()

    from bench_throughput import BusySampler

    gpu = a.device.startswith("cuda") or a.device in ("gpu", "auto") and _has_gpu()
    most = max(a.workers)
    rounds = [k for _ in range(a.rounds) for k in a.workers]
    args = {"dataset": a.dataset, "device": a.device, "space": a.space, "seconds": a.seconds,
            "rounds": rounds}
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    ctx = mp.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    go = [ctx.Event() for _ in rounds]
    started = time.perf_counter()
    procs = [ctx.Process(target=worker, args=(i, args, max(1, cores // most), ready, go, results))
             for i in range(most)]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=600)
    setup = time.perf_counter() - started
    sampler = BusySampler(gpu)
    per_round = []
    for round_no, k in enumerate(rounds):
        begin = time.time()
        go[round_no].set()
        got = [results.get(timeout=120 + 4 * a.seconds) for _ in range(k)]
        end = time.time()
        images = sum(seen for _, _, seen, _ in got)
        seconds = max(secs for _, _, _, secs in got)
        per_round.append({"k": k, "images_per_s": round(images / seconds, 1),
                          "device_busy_pct": sampler.mean(begin, end)})
    sampler.stop()
    for proc in procs:
        proc.join(timeout=60)
    table = []
    for k in a.workers:
        mine = [r for r in per_round if r["k"] == k]
        table.append({"workers": k,
                      "images_per_s": statistics.median(r["images_per_s"] for r in mine),
                      "device_busy_pct": statistics.median(r["device_busy_pct"] for r in mine)})
    one = next((row["images_per_s"] for row in table if row["workers"] == 1), None)
    for row in table:  # the figure GPU_SHARING holds
        row["multiple_of_one"] = round(row["images_per_s"] / one, 2) if one else None
    # The table as runners/parallel.py's $AUTOML_CNN_GPU_SHARING reads it.
    sharing = ",".join(f"{row['workers']}:{min(row['workers'], row['multiple_of_one'])}"
                       for row in table if row["workers"] > 1 and row["multiple_of_one"])
    emit({"dataset": a.dataset, "device": a.device, "seconds_each": a.seconds,
          "setup_s": round(setup, 1), "cores": cores, "table": table, "rounds": per_round,
          "sharing_env": sharing}, a.json)


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
