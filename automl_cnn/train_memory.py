"""Peak memory of training an architecture: one optimiser step at the trial's batch size.

``--max-train-memory-mb`` keeps a search from training what would not fit the device it trains
on (a GPU's memory, a memory-capped container): the cost is known before training, so an
architecture over the limit is recorded as infeasible and never trained, like the other limits.

- CUDA: *measured*. The untrained network is built on the device and one full step runs —
  forward at the recipe's batch size (bf16 autocast where the search trains in bf16), backward,
  and the recipe's optimiser step (which allocates its state) — between
  ``torch.cuda.reset_peak_memory_stats`` and ``torch.cuda.max_memory_allocated``, less what was
  allocated before. Caching-allocator slack and cuDNN workspaces beyond the step are not counted,
  nor is cuBLAS's workspace: a process allocates it at its first matrix product and keeps it
  (65 MB on an H200 with CUDA 13), whatever it trains, so it is allocated before the reading
  (:func:`_warm_cublas`). Without that, the first measurement in a process read 100.7 MB for
  a step that needs 35.7 MB (``benchmarks/probe_train_memory.py``; 35.7 MB with
  ``CUBLAS_WORKSPACE_CONFIG=:0:0`` or on a second reading), 3.4x the 29.6 MB estimate.
- CPU: *estimated* from the layer plan (the CPU allocator keeps no peak statistics): weights,
  gradients and optimiser state (two moments for Adam/AdamW, one momentum buffer for SGD), plus
  every layer's output kept for the backward pass, three copies per batch-normalised block
  (convolution, normalisation and activation outputs) and two otherwise, times the batch, at
  4 bytes per float.

Example:
    >>> plan = plan_layers(spec, (1, 28, 28), 10)  # doctest: +SKIP
    >>> estimated_train_memory_mb(spec, plan) > estimated_memory_mb(plan, 1)  # doctest: +SKIP
    True
"""

from __future__ import annotations

import torch

from automl_cnn.arch import ArchSpec
from automl_cnn.latency import BYTES_PER_FLOAT, MIB, _numel, untrained
from automl_cnn.shapes import LayerPlan

#: Optimiser state, in copies of the weights.
OPTIMISER_STATE = {"adam": 2, "adamw": 2, "sgd": 1}


def estimated_train_memory_mb(spec: ArchSpec, plan: LayerPlan) -> float:
    """CPU estimate of one training step's peak memory (see the module docstring)."""
    weights = plan.params * (2 + OPTIMISER_STATE.get(spec.train.optimizer, 2))
    kept = sum(_copies(spec, layer.name, layer.kind) * _numel(layer.out_shape)
               for layer in plan.layers)
    return (weights + spec.train.batch_size * kept) * BYTES_PER_FLOAT / MIB


def _copies(spec: ArchSpec, name: str, kind: str) -> int:
    """Tensors of a layer's output size kept for the backward pass (a flatten is a view)."""
    if kind == "conv":  # the convolution's output, its activation's, and batch norm's if any
        index = int(name[len("block"):].split(".")[0]) - 1
        normalised = 0 <= index < len(spec.blocks) and spec.blocks[index].batch_norm
        return 3 if normalised else 2
    return {"linear": 2, "flatten": 0}.get(kind, 1)


def measured_cuda_train_memory_mb(spec: ArchSpec, input_shape: tuple[int, int, int],
                                  num_classes: int, device: str, *, bf16: bool) -> float:
    """Peak CUDA memory of one training step of the untrained network on ``device``."""
    from automl_cnn.recipes import OPTIMIZERS

    dev = torch.device(device)
    _warm_cublas(dev)
    torch.cuda.synchronize(dev)
    before = torch.cuda.memory_allocated(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    model = untrained(spec, input_shape, num_classes).to(dev).train()
    optimizer = OPTIMIZERS[spec.train.optimizer](model.parameters(), spec.train)
    x = torch.rand(spec.train.batch_size, *input_shape, device=dev)
    y = torch.randint(0, num_classes, (spec.train.batch_size,), device=dev)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    torch.cuda.synchronize(dev)
    peak = torch.cuda.max_memory_allocated(dev) - before
    del model, optimizer, x, y, loss
    torch.cuda.empty_cache()
    return peak / MIB


def _warm_cublas(dev: torch.device) -> None:
    """Have cuBLAS allocate the workspace it keeps for the process (a linear layer's forward
    and backward, in fp32 and under bf16 autocast), so a step's peak is the step's own."""
    layer = torch.nn.Linear(8, 8).to(dev)
    x = torch.rand(2, 8, device=dev, requires_grad=True)
    for bf16 in (False, True):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            layer(x).float().sum().backward()
    del layer, x


def train_memory_mb(spec: ArchSpec, plan: LayerPlan, input_shape: tuple[int, int, int],
                    num_classes: int, device: str, *, bf16: bool = False) -> float:
    """Measured on CUDA, estimated from the plan on the CPU."""
    if device.startswith("cuda"):
        return measured_cuda_train_memory_mb(spec, input_shape, num_classes, device, bf16=bf16)
    return estimated_train_memory_mb(spec, plan)


__all__ = ["estimated_train_memory_mb", "measured_cuda_train_memory_mb", "train_memory_mb"]
