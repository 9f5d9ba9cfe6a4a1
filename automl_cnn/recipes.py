"""Training recipes by name: optimisers and learning-rate schedules as name -> constructor dicts.

``TrainSpec.optimizer`` and ``TrainSpec.schedule`` name an entry here; the lookups' errors list
the valid names (the pattern of :mod:`automl_cnn.data.registry`).

Example:
    >>> from automl_cnn.arch import TrainSpec
    >>> opt = optimizer_for("sgd")([torch.nn.Parameter(torch.zeros(1))], TrainSpec())
    >>> type(opt).__name__
    'SGD'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from automl_cnn.arch import TrainSpec
from automl_cnn.errors import UserError

Optimizer = torch.optim.Optimizer
Schedule = torch.optim.lr_scheduler.LRScheduler

#: Optimiser name (``TrainSpec.optimizer``) -> constructor from (parameters, recipe).
OPTIMIZERS: dict[str, Callable[[Iterable[nn.Parameter], TrainSpec], Optimizer]] = {
    "sgd": lambda p, t: torch.optim.SGD(p, lr=t.lr, momentum=t.momentum, nesterov=True,
                                        weight_decay=t.weight_decay),
    "adam": lambda p, t: torch.optim.Adam(p, lr=t.lr, weight_decay=t.weight_decay),
    "adamw": lambda p, t: torch.optim.AdamW(p, lr=t.lr, weight_decay=t.weight_decay),
}

#: Schedule name (``TrainSpec.schedule``) -> constructor from (optimiser, recipe, total steps);
#: ``None`` keeps the learning rate constant. Stepped once per batch.
SCHEDULES: dict[str, Callable[[Optimizer, TrainSpec, int], Schedule | None]] = {
    "constant": lambda opt, t, total: None,
    "cosine": lambda opt, t, total: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total),
    "onecycle": lambda opt, t, total: one_cycle(opt, t, total),
}
#: One-cycle's share of the steps spent warming up.
WARMUP_SHARE = 0.25


def one_cycle(opt: Optimizer, t: TrainSpec, total: int) -> Schedule:
    """One-cycle over ``total`` steps; a fit of 4 steps or fewer (a small data set: 52 images
    at batch 64 for 4 epochs) has no room for a warm-up, and torch's ``OneCycleLR`` divides by
    zero there, so it anneals from the peak by a cosine instead.

        >>> from automl_cnn.arch import TrainSpec
        >>> opt = optimizer_for("sgd")([torch.nn.Parameter(torch.zeros(1))], TrainSpec(lr=0.1))
        >>> type(one_cycle(opt, TrainSpec(lr=0.1), 4)).__name__
        'CosineAnnealingLR'
    """
    if WARMUP_SHARE * total <= 1:
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total))
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=t.lr, total_steps=total,
                                               pct_start=WARMUP_SHARE)


def _lookup(table: dict[str, Any], kind: str, name: str) -> Any:
    if name not in table:
        raise UserError(f"unknown {kind} {name!r}. Valid {kind}s: {', '.join(sorted(table))}.")
    return table[name]


def optimizer_for(name: str) -> Callable[[Iterable[nn.Parameter], TrainSpec], Optimizer]:
    """The optimiser constructor named ``name``; the error lists the valid names."""
    return _lookup(OPTIMIZERS, "optimizer", name)


def schedule_for(name: str) -> Callable[[Optimizer, TrainSpec, int], Schedule | None]:
    """The learning-rate schedule constructor named ``name``; the error lists the valid names."""
    return _lookup(SCHEDULES, "schedule", name)
