"""Hard limits on what an architecture may cost: parameters, FLOPs, latency, memory.

Every cost here is known before training (the layer plan gives parameters and FLOPs; latency
and memory are measured or estimated on an untrained network), so an architecture over a limit
is never trained. The same numbers become Optuna constraint values (``<= 0`` is feasible),
which TPE, NSGA-II and GP samplers read through ``constraints_func`` to learn where the
feasible region is.

Example:
    >>> limits = Limits(max_params=50_000)
    >>> limits.breach(Costs(params=120_000, flops=1_000_000))
    Breach(limit='max_params', value=120000, bound=50000)
    >>> limits.constraint_values(Costs(params=25_000, flops=1))
    [-0.5]
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

#: Limit name (a SearchConfig field) -> (the Costs field it bounds, its CLI flag, its unit).
LIMITS: dict[str, tuple[str, str, str]] = {
    "max_params": ("params", "--max-params", "parameters"),
    "max_flops": ("flops", "--max-flops", "FLOPs"),
    "max_latency_ms": ("latency_ms", "--max-latency-ms", "ms"),
    "max_memory_mb": ("memory_mb", "--max-memory-mb", "MB"),
    "max_train_memory_mb": ("train_memory_mb", "--max-train-memory-mb", "MB"),
}


@dataclass(frozen=True)
class Costs:
    """What an architecture costs, known before training (None: not measured)."""

    params: int
    flops: int
    latency_ms: float | None = None
    memory_mb: float | None = None
    train_memory_mb: float | None = None


@dataclass(frozen=True)
class Breach:
    """The first limit an architecture breaks, with its value and the bound."""

    limit: str
    value: float
    bound: float

    @property
    def reason(self) -> str:
        """``over --max-params: 120,000 parameters > 50,000``."""
        _, flag, unit = LIMITS[self.limit]
        return f"over {flag}: {_fmt(self.value)} {unit} > {_fmt(self.bound)}"


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() and abs(x) >= 1 else f"{x:.4g}"


@dataclass(frozen=True)
class Limits:
    """The hard limits a search was given; None means no limit."""

    max_params: int | None = None
    max_flops: int | None = None
    max_latency_ms: float | None = None
    max_memory_mb: float | None = None
    max_train_memory_mb: float | None = None

    @classmethod
    def of(cls, config: Any) -> Limits:
        """The limits of a :class:`automl_cnn.config.SearchConfig` (or anything with them)."""
        return cls(**{f.name: getattr(config, f.name, None) for f in fields(cls)})

    @property
    def active(self) -> dict[str, float]:
        """Limit name -> bound, for the limits that are set, in :data:`LIMITS` order."""
        return {name: float(getattr(self, name)) for name in LIMITS
                if getattr(self, name) is not None}

    def __bool__(self) -> bool:
        return bool(self.active)

    @property
    def needs_latency(self) -> bool:
        return self.max_latency_ms is not None

    @property
    def needs_memory(self) -> bool:
        return self.max_memory_mb is not None

    @property
    def needs_train_memory(self) -> bool:
        return self.max_train_memory_mb is not None

    def breach(self, costs: Costs) -> Breach | None:
        """The first limit ``costs`` breaks (in :data:`LIMITS` order), or None."""
        for name, bound in self.active.items():
            value = getattr(costs, LIMITS[name][0])
            if value is not None and value > bound:
                return Breach(name, value, bound)
        return None

    def constraint_values(self, costs: Costs | None) -> list[float]:
        """One value per active limit, ``(value - bound) / bound``: <= 0 is feasible, and the
        relative scale lets a sampler weigh "10 % over on latency" like "10 % over on params".
        An unmeasured cost (or no costs: a shape-infeasible trial) counts as 0."""
        values = []
        for name, bound in self.active.items():
            value = getattr(costs, LIMITS[name][0]) if costs is not None else None
            values.append(0.0 if value is None else (float(value) - bound) / bound)
        return values


__all__ = ["LIMITS", "Breach", "Costs", "Limits"]
