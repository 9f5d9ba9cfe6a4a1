"""What leaving the search costs and gains: export time and inference speed per format, and
the test accuracy of retraining the best architecture on train+validation.

Runs a search on digits (or reads --run-dir), exports its best model in every format, times
inference at batch 1 and 256 (median of repeated calls, ratios against eager PyTorch from
``load_best``), then retrains the best architecture over seeds and compares its test accuracy
with the search's own model.

    python benchmarks/bench_export.py [--run-dir DIR | --space tiny --trials 16] [--seeds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import optuna
import torch

import automl_cnn
from automl_cnn.config import SearchConfig
from automl_cnn.export import export_model
from automl_cnn.retrain import retrain
from automl_cnn.runners.search import run_search


def median_seconds(fn: Callable[[], Any], *, repeats: int) -> float:
    fn()  # warm up (TorchScript and ONNX Runtime optimise on the first call)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def runners(run_dir: Path, tmp: Path) -> tuple[dict[str, Callable[[torch.Tensor], Any]],
                                               dict[str, float]]:
    """Each format's forward function, and how long each export took."""
    import importlib.util

    import onnxruntime as ort

    exported: dict[str, Path] = {}
    export_s: dict[str, float] = {}
    for fmt in ("safetensors", "torchscript", "onnx"):
        started = time.perf_counter()
        exported[fmt] = export_model(run_dir, tmp / fmt, fmt=fmt)
        export_s[fmt] = time.perf_counter() - started
    eager = automl_cnn.load_best(run_dir)
    folder = exported["safetensors"]
    spec = importlib.util.spec_from_file_location("standalone", folder / "model.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    standalone = module.load(exported["safetensors"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.load(str(exported["torchscript"] / "model.torchscript.pt"))
    session = ort.InferenceSession(str(exported["onnx"] / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    return {
        "PyTorch eager (load_best)": eager,
        "standalone model.py": standalone,
        "TorchScript": scripted,
        "ONNX Runtime": lambda x: session.run(None, {"images": x.numpy()}),
    }, export_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run-dir", type=Path, default=None)
    parser.add_argument("--space", default="tiny")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)  # a fair, quiet comparison on a shared machine
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        run_dir = args.run_dir
        if run_dir is None:
            run_dir = tmp / "run"
            run_search(SearchConfig(trials=args.trials, space=args.space, out=str(run_dir),
                                    mlflow=False), progress=False)
        best = automl_cnn.top_architectures(run_dir, k=1)[0]
        print(f"Best of {run_dir}: trial {best.trial}, {best.params:,} params, "
              f"{best.flops:,} FLOPs\n")
        forwards, export_s = runners(run_dir, tmp)
        shape = tuple(automl_cnn.api.open_source(run_dir).input_shape)
        print("| runtime | batch 1 (ms) | vs eager | batch 256 (ms) | vs eager |")
        print("| --- | ---: | ---: | ---: | ---: |")
        base: dict[int, float] = {}
        for name, forward in forwards.items():
            cells = []
            for batch in (1, 256):
                x = torch.rand(batch, *shape)
                with torch.no_grad():
                    seconds = median_seconds(lambda: forward(x), repeats=args.repeats)
                base.setdefault(batch, seconds)
                cells += [f"{seconds * 1e3:.3f}", f"{seconds / base[batch]:.2f}×"]
            print(f"| {name} | " + " | ".join(cells) + " |")
        print("\n| export format | export time (s) |\n| --- | ---: |")
        for fmt, seconds in export_s.items():
            print(f"| {fmt} | {seconds:.2f} |")
        torch.set_num_threads(2)
        result = retrain(run_dir, 0, seeds=args.seeds, device="cpu")
        accs = ", ".join(f"{a:.4f}" for a in result.test_acc)
        print("\n| model of the best architecture | test accuracy |\n| --- | ---: |")
        print(f"| search's model (train split, val for selection) | {result.search_test_acc:.4f} |")
        print(f"| retrained on train+val, {len(result.seeds)} seeds, {result.spec.train.epochs} "
              f"epochs ({result.seconds:.1f} s) | {result.mean:.4f} ± {result.std:.4f} ({accs}) |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
