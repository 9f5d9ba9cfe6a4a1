"""Measured inference latency and peak inference memory of an architecture, on a target device.

Latency does not depend on weight values, so an untrained network is timed before any training:
``measure_latency`` builds the network the spec describes, warms it up, then times single
forward passes (batch ``target.batch``) until it has at least ``min_runs`` of them and
``min_seconds`` of timing, and reports the median with the 10th-90th percentile spread.

- CPU: wall time of each forward (``time.perf_counter``) with torch limited to
  ``target.threads`` threads while timing (the setting is restored afterwards).
- CUDA: CUDA events around each forward, so the time is the GPU's, not the launch's.

Peak inference memory (``peak_memory_mb``) is *measured* on CUDA
(``torch.cuda.max_memory_allocated`` around a forward, less what was allocated before) and
*estimated* on the CPU from the layer plan: weights plus the two largest consecutive
activations, times the batch, at 4 bytes per float.

Example:
    >>> target = LatencyTarget("cpu", threads=1, batch=1)
    >>> lat = measure_spec_latency(spec, (1, 8, 8), 10, target)
    >>> lat.median_ms < 5.0, lat.device
    (True, 'cpu (1 thread)')
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from automl_cnn.arch import ArchSpec
from automl_cnn.shapes import LayerPlan

MIB = 2**20
BYTES_PER_FLOAT = 4


@dataclass(frozen=True)
class LatencyTarget:
    """Where and how a model will be timed: ``cpu`` or ``cuda[:N]``, threads, batch size."""

    device: str = "cpu"
    threads: int = 1  # torch CPU threads while timing; ignored on CUDA
    batch: int = 1

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def label(self) -> str:
        """What the record stores as ``latency_device``: ``cpu (1 thread)``, ``cuda:0 (H100)``."""
        batch = f", batch {self.batch}" if self.batch != 1 else ""
        if self.is_cuda:
            name = torch.cuda.get_device_name(torch.device(self.device))
            return f"{self.device} ({name}){batch}"
        return f"cpu ({self.threads} thread{'s' if self.threads != 1 else ''}){batch}"


@dataclass(frozen=True)
class Latency:
    """Median time of one forward pass at ``batch``, with its 10th-90th percentile spread."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    batch: int
    device: str  # LatencyTarget.label

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, float | int | str]) -> Latency:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


@contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """torch uses ``n`` intra-op threads inside the block, its old setting after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _percentile(sorted_ms: list[float], q: float) -> float:
    i = min(len(sorted_ms) - 1, max(0, round(q * (len(sorted_ms) - 1))))
    return sorted_ms[i]


def _timer(device: str) -> Callable[[Callable[[], object]], float]:
    """A function that runs ``step`` once and returns its time in milliseconds."""
    if device.startswith("cuda"):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)

        def cuda_time(step: Callable[[], object]) -> float:
            start.record()
            step()
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end))

        return cuda_time

    def cpu_time(step: Callable[[], object]) -> float:
        started = time.perf_counter()
        step()
        return (time.perf_counter() - started) * 1000.0

    return cpu_time


def measure_latency(model: nn.Module, input_shape: tuple[int, ...], target: LatencyTarget, *,
                    min_runs: int = 50, min_seconds: float = 0.15, warmup_runs: int = 10,
                    max_seconds: float = 3.0) -> Latency:
    """Time ``model`` on ``target``: median of at least ``min_runs`` forwards after warm-up."""
    model = model.to(target.device).eval()
    x = torch.rand(target.batch, *input_shape, device=target.device)  # (B, C, H, W)
    timer = _timer(target.device)

    def step() -> object:
        return model(x)

    times: list[float] = []
    with torch.inference_mode(), cpu_threads(target.threads if not target.is_cuda
                                             else torch.get_num_threads()):
        for _ in range(warmup_runs):
            timer(step)
        started = time.perf_counter()
        while True:
            times.append(timer(step))
            spent = time.perf_counter() - started
            if (len(times) >= min_runs and spent >= min_seconds) or spent >= max_seconds:
                break
    times.sort()
    return Latency(median_ms=statistics.median(times), p10_ms=_percentile(times, 0.1),
                   p90_ms=_percentile(times, 0.9), runs=len(times), batch=target.batch,
                   device=target.label)


def untrained(spec: ArchSpec, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """The network ``spec`` describes with fixed random weights (values do not change speed)."""
    from automl_cnn.model import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_model(spec, input_shape, num_classes)


def measure_spec_latency(spec: ArchSpec, input_shape: tuple[int, int, int], num_classes: int,
                         target: LatencyTarget, **timing: float) -> Latency:
    """:func:`measure_latency` of the untrained network ``spec`` describes."""
    return measure_latency(untrained(spec, input_shape, num_classes), input_shape, target,
                           **timing)  # type: ignore[arg-type]


def estimated_memory_mb(plan: LayerPlan, batch: int) -> float:
    """CPU estimate of peak inference memory: the weights plus the two largest consecutive
    activations (a layer's input and output live together), times ``batch``, 4 bytes each."""
    sizes = [_numel(layer.out_shape) for layer in plan.layers]
    pair = max((a + b for a, b in zip(sizes, sizes[1:])), default=sizes[0] if sizes else 0)
    return (plan.params + pair * batch) * BYTES_PER_FLOAT / MIB


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def measured_cuda_memory_mb(spec: ArchSpec, input_shape: tuple[int, int, int], num_classes: int,
                            target: LatencyTarget) -> float:
    """Peak CUDA memory of building the model on ``target`` and one forward at its batch."""
    device = torch.device(target.device)
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    model = untrained(spec, input_shape, num_classes).to(device).eval()
    with torch.inference_mode():
        model(torch.rand(target.batch, *input_shape, device=device))
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    del model
    return peak / MIB


def peak_memory_mb(spec: ArchSpec, plan: LayerPlan, input_shape: tuple[int, int, int],
                   num_classes: int, target: LatencyTarget) -> float:
    """Measured on CUDA, estimated from the plan on the CPU (see the module docstring)."""
    if target.is_cuda:
        return measured_cuda_memory_mb(spec, input_shape, num_classes, target)
    return estimated_memory_mb(plan, target.batch)


def cache_key(spec: ArchSpec, input_shape: tuple[int, ...], target: LatencyTarget) -> str:
    """Same blocks and head, input, batch, device and threads: same latency (the training
    recipe does not change the network that runs)."""
    arch = spec.to_dict()
    text = json.dumps({"blocks": arch["blocks"], "head": arch["head"],
                       "input": list(input_shape), "batch": target.batch,
                       "device": target.device, "threads": target.threads}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:20]


class LatencyCache:
    """Latencies by :func:`cache_key`, in memory and in a small JSON file (``path``) that
    resumed searches and other workers sharing the run directory read too."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else None
        self._memory: dict[str, Latency] = {}

    def _read_file(self) -> dict[str, dict[str, float | int | str]]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}  # a torn or foreign file costs a re-measurement, not the search
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> Latency | None:
        if key not in self._memory:
            raw = self._read_file().get(key)
            if raw is not None:
                try:
                    self._memory[key] = Latency.from_dict(raw)
                except (KeyError, TypeError):
                    return None
        return self._memory.get(key)

    def put(self, key: str, latency: Latency) -> None:
        self._memory[key] = latency
        if self.path is None:
            return
        data = self._read_file()  # merge: another worker may have written meanwhile
        data[key] = latency.to_dict()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, self.path)  # readers see the old file or the new one, never half

    def latency(self, spec: ArchSpec, input_shape: tuple[int, int, int], num_classes: int,
                target: LatencyTarget) -> Latency:
        """The cached latency of ``spec`` on ``target``, measured on first request."""
        key = cache_key(spec, input_shape, target)
        found = self.get(key)
        if found is None:
            found = measure_spec_latency(spec, input_shape, num_classes, target)
            self.put(key, found)
        return found


__all__ = ["Latency", "LatencyCache", "LatencyTarget", "cache_key", "estimated_memory_mb",
           "measure_latency", "measure_spec_latency", "peak_memory_mb"]
