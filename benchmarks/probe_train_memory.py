"""Where one training step's CUDA memory goes: the measured peak of
``automl_cnn.train_memory`` against the CPU estimate, split into what the first step allocates
once (cuBLAS/cuDNN workspaces, kept by the caching allocator) and what a second step needs.

    python benchmarks/probe_train_memory.py                          # on a CUDA machine
    CUBLAS_WORKSPACE_CONFIG=:0:0 python benchmarks/probe_train_memory.py   # no cuBLAS workspace

It prints one JSON line: the test's spec at 28x28, batch 64 (fp32 and bf16).
"""

from __future__ import annotations

import json
import os

import torch

from automl_cnn.arch import ArchSpec, ConvBlock, HeadSpec
from automl_cnn.recipes import OPTIMIZERS
from automl_cnn.shapes import plan_layers
from automl_cnn.train_memory import estimated_train_memory_mb, measured_cuda_train_memory_mb
from automl_cnn.latency import MIB, untrained


def step_peaks(spec: ArchSpec, bf16: bool) -> list[float]:
    """Peak MiB above what was allocated before, of two consecutive steps of one model."""
    dev = torch.device("cuda:0")
    model = untrained(spec, (1, 28, 28), 10).to(dev).train()
    optimizer = OPTIMIZERS[spec.train.optimizer](model.parameters(), spec.train)
    x = torch.rand(spec.train.batch_size, 1, 28, 28, device=dev)
    y = torch.randint(0, 10, (spec.train.batch_size,), device=dev)
    peaks = []
    for _ in range(2):
        torch.cuda.synchronize(dev)
        before = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize(dev)
        peaks.append((torch.cuda.max_memory_allocated(dev) - before) / MIB)
    return peaks


def main() -> None:
    spec = ArchSpec(blocks=(ConvBlock(32, pool="max"), ConvBlock(64)), head=HeadSpec())
    plan = plan_layers(spec, (1, 28, 28), 10)
    row = {"cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
           "estimate_mb": round(estimated_train_memory_mb(spec, plan), 2),
           "measured_mb_fresh_process": round(measured_cuda_train_memory_mb(
               spec, (1, 28, 28), 10, "cuda:0", bf16=False), 2),
           "measured_mb_again": round(measured_cuda_train_memory_mb(
               spec, (1, 28, 28), 10, "cuda:0", bf16=False), 2),
           "fp32_steps_mb": [round(p, 2) for p in step_peaks(spec, False)],
           "bf16_steps_mb": [round(p, 2) for p in step_peaks(spec, True)],
           "allocated_after_mb": round(torch.cuda.memory_allocated() / MIB, 2)}
    print(json.dumps(row))


if __name__ == "__main__":
    main()
