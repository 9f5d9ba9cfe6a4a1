"""Host synchronisations per training step on CUDA (``torch.cuda.set_sync_debug_mode``).

Trains the 2-conv CNN of ``bench_overhead.py`` with ``fit_spec`` for a few epochs while torch
reports every call that makes the host wait for the GPU; a step that syncs stalls the launch
queue, which is what limits small CNNs on a big GPU. Prints syncs in all, per epoch and per
training step (the target is about one per epoch: the metrics read once at its end).

    python benchmarks/bench_syncs.py --dataset digits --epochs 3
"""

from __future__ import annotations

import argparse
import collections
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_overhead import two_conv_spec  # noqa: E402
from emit import emit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import torch

    from automl_cnn.data import load_dataset
    from automl_cnn.device import resolve_device
    from automl_cnn.training import fit_spec, silence_lightning

    if not torch.cuda.is_available():
        raise SystemExit("bench_syncs needs CUDA (torch reports host syncs only there)")
    silence_lightning()
    device = resolve_device("cuda")
    data = load_dataset(args.dataset, seed=0).to(device.torch_device)
    spec = two_conv_spec(batch_size=64, epochs=args.epochs)
    fit_spec(spec, data, device, seed=0)  # warm-up outside the count
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        fit_spec(spec, data, device, seed=1)
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    where = collections.Counter(f"{Path(w.filename).name}:{w.lineno}" for w in syncs)
    steps = len(data.y_train) // 64 * args.epochs
    result = {"syncs": len(syncs), "epochs": args.epochs, "steps": steps,
              "per_epoch": round(len(syncs) / args.epochs, 2),
              "per_step": round(len(syncs) / steps, 4), "top_sites": where.most_common(8)}
    emit(result, args.json)


if __name__ == "__main__":
    main()
