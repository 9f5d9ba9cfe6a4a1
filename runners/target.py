"""Before a trial trains: what its architecture costs on the target device, and whether that
breaks a hard limit (``--max-params``, ``--max-flops``, ``--max-latency-ms``,
``--max-memory-mb``).

:class:`TargetCheck` is built once per process; it times latency (once per distinct
architecture, cached in ``RUN_DIR/latency.json`` so resumed searches and other workers reuse
it) only when the search needs it (``--objective latency`` or ``--max-latency-ms``), and only
for architectures the cheaper limits let through. :func:`tell_constraints` hands the same
numbers to Optuna's constrained samplers; :func:`shrunk_baselines` turns a baseline that breaks
a limit into a narrower one that meets it, so even a limit no baseline meets starts the search
with a feasible, known-good recipe.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from automl_cnn.arch import ArchSpec
from automl_cnn.config import SearchConfig
from automl_cnn.device import Device
from automl_cnn.errors import UserError
from automl_cnn.latency import (
    Latency,
    LatencyCache,
    LatencyTarget,
    estimated_memory_mb,
    peak_memory_mb,
)
from automl_cnn.limits import Breach, Costs, Limits
from automl_cnn.shapes import InfeasibleArchitecture, LayerPlan, plan_layers
from automl_cnn.train_memory import estimated_train_memory_mb, train_memory_mb

log = logging.getLogger(__name__)
LATENCY_FILE = "latency.json"


def latency_target(config: SearchConfig, device: Device) -> LatencyTarget:
    """``--latency-device`` (auto: the search's own device) with threads and batch."""
    name = config.latency_device
    if name == "auto":
        name = device.torch_device if device.torch_device.startswith("cuda") else "cpu"
    if name.startswith("cuda"):
        index = int(name.split(":")[1]) if ":" in name else 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise UserError(f"--latency-device {config.latency_device} asks for a GPU that "
                            f"torch cannot see ({torch.cuda.device_count()} CUDA devices). Use "
                            "--latency-device cpu to target this machine's CPU.")
        name = f"cuda:{index}"
    return LatencyTarget(name, threads=config.latency_threads, batch=config.latency_batch)


@dataclass(frozen=True)
class Checked:
    """An architecture's costs before training, and the limit it breaks (None: within all)."""

    costs: Costs
    latency: Latency | None
    breach: Breach | None


class TargetCheck:
    """Costs and limits of architectures on one input shape and one latency target."""

    def __init__(self, config: SearchConfig, input_shape: tuple[int, int, int],
                 num_classes: int, device: Device, run_dir: Path | None) -> None:
        self.limits = Limits.of(config)
        self.measure = config.measures_latency
        self.target = latency_target(config, device)
        self.input_shape, self.num_classes = input_shape, num_classes
        self.device = device  # where trials train: the training-memory limit's device
        self.cache = LatencyCache(Path(run_dir) / LATENCY_FILE if run_dir else None)

    def check(self, spec: ArchSpec, plan: LayerPlan) -> Checked:
        """Cheap limits first: latency is timed only when parameters and FLOPs are within."""
        costs = Costs(plan.params, plan.flops)
        breach = self.limits.breach(costs)
        limits = self.limits
        if breach is not None or not (self.measure or limits.needs_memory
                                      or limits.needs_train_memory):
            return Checked(costs, None, breach)
        training = (train_memory_mb(spec, plan, self.input_shape, self.num_classes,
                                    self.device.torch_device,
                                    bf16=self.device.precision.startswith("bf16"))
                    if limits.needs_train_memory else None)
        latency = None
        if self.measure and limits.breach(Costs(plan.params, plan.flops,
                                                train_memory_mb=training)) is None:
            latency = self.cache.latency(spec, self.input_shape, self.num_classes, self.target)
        memory = (peak_memory_mb(spec, plan, self.input_shape, self.num_classes, self.target)
                  if limits.needs_memory else None)
        costs = Costs(plan.params, plan.flops, latency.median_ms if latency else None, memory,
                      training)
        return Checked(costs, latency, limits.breach(costs))

    def breach_of(self, spec: ArchSpec) -> Breach | None | str:
        """The limit ``spec`` breaks, None if it fits, or the shape problem as a string."""
        try:
            plan = plan_layers(spec, self.input_shape, self.num_classes)
        except InfeasibleArchitecture as exc:
            return str(exc)
        return self.check(spec, plan).breach


#: The constraint every trial carries: 1 when its layers do not fit the input, else 0.
SHAPE_CONSTRAINT = "shape"


def tell_constraints(trial: Any, limits: Limits, costs: Costs | None, *,
                     fits: bool = True) -> None:
    """Give the sampler one constraint per limit, ``(cost - limit) / limit`` (<= 0 feasible),
    and :data:`SHAPE_CONSTRAINT` (1 where the layers do not fit, ``fits=False``), with Optuna
    5's ``Trial.set_constraint`` (stored as the trial's ``constraints:<name>`` system
    attributes, which TPE, NSGA-II and GP read; it replaces the deprecated
    ``constraints_func``; GP needs the same names on every trial, so every trial gets them).

    Without the shape constraint, a shape that does not fit was a COMPLETE trial worth 0, and
    TPE ranks every COMPLETE trial above every pruned one, whatever their values: in a search
    whose trials are mostly pruned (a ladder's lower rungs), the misfits filled TPE's "good"
    group and it sampled ever more of them (281 of 389 trials on an H200, where random
    sampling draws 16 %)."""
    for name, value in zip(limits.active, limits.constraint_values(costs)):
        trial.set_constraint(name, value)
    trial.set_constraint(SHAPE_CONSTRAINT, 0.0 if fits else 1.0)


# -- baselines that fit the limits ---------------------------------------------------------------
def _lower(param: Any, value: Any) -> Any:
    """The next smaller value ``param`` allows below ``value`` (None: none)."""
    if param.choices is not None:
        smaller = [c for c in param.choices if isinstance(c, (int, float)) and c < value]
        return max(smaller) if smaller else None
    if param.low is not None and param.is_int and value > param.low:
        return max(int(param.low), int(value) // 2)
    return None


def _moves(space: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every one-step narrowing of a baseline's params: average-pool head, fewer filters or
    head units, one block or head layer less."""
    out = []
    pool = space.p("head.global_pool")
    if params.get("head.global_pool") == "flatten" and "avg" in (pool.choices or ()):
        out.append({**params, "head.global_pool": "avg"})
    for key, value in params.items():
        kind = "block.filters" if key.endswith(".filters") else (
            "head.width" if key.startswith("head.width") else None)
        smaller = _lower(space.p(kind), value) if kind else None
        if smaller is not None:
            out.append({**params, key: smaller})
    for key, prefix in (("depth", "block"), ("head.layers", "head.width")):
        value = params.get(key)
        smaller = _lower(space.p(key), value) if value is not None else None
        if smaller is not None and smaller == value - 1:
            out.append({k: v for k, v in params.items() if not k.startswith(f"{prefix}{value}")}
                       | {key: smaller})
    return out


def _size(spec: ArchSpec, plan: LayerPlan, limits: Limits) -> float:
    """Greedy score of a narrowing step: each limited quantity relative to its bound, FLOPs
    standing in for latency (measured only once a candidate is chosen)."""
    score = 0.0
    if limits.max_params:
        score += plan.params / limits.max_params
    if limits.max_flops:
        score += plan.flops / limits.max_flops
    if limits.max_latency_ms:
        score += plan.flops / 1e6
    if limits.max_memory_mb:
        score += estimated_memory_mb(plan, 1) / limits.max_memory_mb
    if limits.max_train_memory_mb:
        score += estimated_train_memory_mb(spec, plan) / limits.max_train_memory_mb
    return score


def shrink(space: Any, params: dict[str, Any], check: TargetCheck, *, flip_ok: bool,
           max_steps: int = 40) -> dict[str, Any] | None:
    """Narrow ``params`` one gentle step at a time (of the steps that shrink the plan, the one
    that shrinks it least) until the architecture meets every limit, so the result is about
    the largest narrowing of the baseline that fits; None when no narrowing gets there."""
    from optuna.trial import FixedTrial

    for _ in range(max_steps):
        spec = space.sample(FixedTrial(params), flip_ok=flip_ok)
        if check.breach_of(spec) is None:
            return params
        now = _size(spec, plan_layers(spec, check.input_shape, check.num_classes), check.limits)
        scored = []
        for move in _moves(space, params):
            moved = space.sample(FixedTrial(move), flip_ok=flip_ok)
            try:
                scored.append((_size(moved, plan_layers(moved, check.input_shape,
                                                        check.num_classes), check.limits),
                               len(scored), move))
            except InfeasibleArchitecture:
                continue
        smaller = [s for s in scored if s[0] < now]
        keep_depth = [s for s in smaller if s[2].get("depth") == params.get("depth")]
        smaller = keep_depth or smaller  # drop a block only when nothing narrower helps
        if not smaller:
            return None
        params = max(smaller, key=lambda s: (s[0], -s[1]))[2]  # the gentlest step that helps
    return None


def shrunk_baselines(space: Any, check: TargetCheck, *, flip_ok: bool) -> list[tuple[str, dict]]:
    """(name, params) of a narrowed copy of every baseline that breaks a limit."""
    from optuna.trial import FixedTrial

    if not check.limits:
        return []
    found = []
    for baseline in space.baselines:
        breach = check.breach_of(space.sample(FixedTrial(baseline.params), flip_ok=flip_ok))
        if not isinstance(breach, Breach):
            continue
        params = shrink(space, dict(baseline.params), check, flip_ok=flip_ok)
        if params is None:
            log.info("baseline %s breaks %s and cannot be narrowed to fit", baseline.name,
                     breach.limit)
        elif params not in [p for _, p in found]:
            found.append((f"{baseline.name} (narrowed to fit {breach.limit})", params))
    return found


def fitted_baselines(config: SearchConfig, space: Any, data: Any) -> list[tuple[str, dict]]:
    """:func:`shrunk_baselines` for a new study on ``data`` (none without limits)."""
    if not Limits.of(config):
        return []
    from automl_cnn.device import resolve_device

    check = TargetCheck(config, data.input_shape, data.num_classes,
                        resolve_device(config.device, config.precision),
                        config.run_dir)
    return shrunk_baselines(space, check, flip_ok=data.flip_ok)


__all__ = ["Checked", "LATENCY_FILE", "TargetCheck", "fitted_baselines", "latency_target",
           "SHAPE_CONSTRAINT", "shrunk_baselines", "tell_constraints"]
