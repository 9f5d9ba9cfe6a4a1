"""A trial's climb up the fidelity ladder: the data of each rung, the scores to beat, and the
speed measurement the ladder is sized from.

Every trial trains rung 0 on the same class-balanced subset of the training split (chosen with
the search seed, so scores at a rung compare like with like), reports its validation accuracy
with ``step = rung``, and goes on to the next rung only if it is in the top ``1/eta`` of those
that finished the rung (:func:`automl_cnn.ladder.promotable`), or later, once it is
(:func:`promote_late`); each rung retrains from scratch on more images, so a rung's score never
depends on the path that led there.

Beside the sampler, the ladder searches locally: when no trial is queued, every trial the
sampler drew queues, as it finishes rung 0, one neighbour of the best network so far
(:func:`queue_local`), so about half the trials after the first neighbours vary a few kinds of
parameter of the incumbent instead of drawing the whole space.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import lightning.pytorch as L

import numpy as np
import optuna
import torch
import torch.nn.functional as F
from optuna.trial import FrozenTrial, TrialState

from automl_cnn.arch import ArchSpec
from automl_cnn.data import ImageSplits, make_batches
from automl_cnn.data.registry import balanced_indices
from automl_cnn.device import Device
from automl_cnn.ladder import Rung, promotable
from automl_cnn.model import build_model
from automl_cnn.record import (Outcome, Promotion, enqueue_neighbour, enqueue_promotion,
                               promotion_of, record_of)
from automl_cnn.results import finished_a_rung
from automl_cnn.search_spaces import SearchSpace

#: A rung that runs this many times longer than planned (plus a few seconds) is stopped: under
#: a budget, a candidate that cannot train in its share is not a candidate.
SLOW_FACTOR = 4.0
SLOW_GRACE_S = 5.0


class BudgetSpent(Exception):
    """The search phase's deadline passed while a trial was training."""


class DeadlineCheck(L.Callback):
    """Raises :class:`BudgetSpent` once ``time.time()`` passes ``deadline``: checked before
    training starts and around every training and validation batch, so a trial that starts
    (or validates) at the deadline stops within one batch."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline

    def _check(self, *_: Any) -> None:
        if self.deadline is not None and time.time() >= self.deadline:
            raise BudgetSpent

    on_train_start = on_train_batch_start = on_train_batch_end = _check
    on_validation_batch_start = _check


class RungTooSlow(Exception):
    """A rung ran far past its planned time."""


def rung_data(data: ImageSplits, rung: Rung, *, seed: int) -> ImageSplits:
    """``data`` with its training split cut to ``rung.images`` class-balanced images (the same
    images for every trial of a search); validation and test stay whole."""
    if rung.images >= len(data.y_train):
        return data
    idx = balanced_indices(data.y_train.cpu().numpy(), rung.images, seed=seed)
    rows = torch.from_numpy(idx.astype(np.int64)).to(data.y_train.device)
    return replace(data, x_train=data.x_train[rows], y_train=data.y_train[rows])


def rung_scores(study: optuna.Study, step: int,
                trials: list[FrozenTrial] | None = None) -> list[float]:
    """Validation accuracies reported at ``step`` by every trial so far (running ones too);
    ``trials``: the study's trials, when already read."""
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    if trials is None:
        trials = study.get_trials(deepcopy=False, states=states)
    return [t.intermediate_values[step] for t in trials
            if t.state in states and step in t.intermediate_values]


def late_promotions(study: optuna.Study, rung: int, eta: int) -> list[FrozenTrial]:
    """Trials stopped at ``rung`` that are now in its top ``1/eta`` and that no trial goes on
    for yet, earliest first.

    A trial is promoted when it finishes a rung only if it ranks in the top ``1/eta`` of those
    finished so far. Trials finish a rung at different times (the first baseline first), and
    the top third grows with every trial that finishes: one that was stopped behind a single
    better score may be among the best later. Asynchronous successive halving promotes it
    then; here, where every rung retrains from scratch, that is a new trial with its parameters
    starting at ``rung + 1`` (:func:`automl_cnn.record.enqueue_promotion`)."""
    trials = study.get_trials(deepcopy=False)
    scores = rung_scores(study, rung, trials)
    taken = {p.source for p in map(promotion_of, trials) if p is not None}
    found = []
    for t in trials:
        if t.state != TrialState.PRUNED or rung not in t.intermediate_values \
                or t.number in taken:
            continue
        record = record_of(t)
        fidelity = record.fidelity
        if (record.outcome == Outcome.PRUNED and fidelity is not None and fidelity.rung == rung
                and finished_a_rung(record)
                and promotable(t.intermediate_values[rung], scores, eta)):
            found.append(t)
    return found


def promote_late(study: optuna.Study, rung: int, eta: int) -> list[int]:
    """Queue a late promotion (:func:`late_promotions`) from ``rung`` to the next; the
    numbers of the trials promoted."""
    found = late_promotions(study, rung, eta)
    for t in found:
        enqueue_promotion(study, t, rung + 1)
    return [t.number for t in found]


def promoted_before(study: optuna.Study, number: int, promotion: Promotion) -> int | None:
    """The earlier trial that already promotes ``promotion.source`` (two workers that saw the
    same rung at the same moment both queue it), or None."""
    for t in study.get_trials(deepcopy=False):
        other = promotion_of(t)
        if t.number < number and other is not None and other.source == promotion.source:
            return t.number
    return None


def incumbent(trials: list[FrozenTrial]) -> FrozenTrial | None:
    """The best network so far: of the trials that reported, the one with the best score at
    the highest rung reported (like with like; running trials count), the earliest on ties."""
    best, key = None, None
    for t in trials:
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING) \
                or not t.intermediate_values:
            continue
        step = max(t.intermediate_values)
        if key is None or (step, t.intermediate_values[step]) > key:
            best, key = t, (step, t.intermediate_values[step])
    return best


def queue_local(study: optuna.Study, space: SearchSpace, *, seed: int) -> int | None:
    """Queue one neighbour of the :func:`incumbent` (its parameters, with those of up to
    :data:`~automl_cnn.search_spaces.NEIGHBOUR_KINDS` kinds left to the sampler,
    :meth:`~automl_cnn.search_spaces.SearchSpace.neighbours`), unless a trial is queued
    already; the incumbent's number, or None when nothing was queued.

    A short budget buys a few dozen rung-0 trials: too few for a sampler to learn a wide
    space, where most draws do not learn at all (README, *Where the lottery comes from*), and
    the networks that beat a strong recipe are found near it. Local search around the best
    so far is a strong baseline of architecture search (White et al., 2021, "Local search is
    state of the art for NAS benchmarks"); the sampler still draws the other half."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return None
    best = incumbent(trials)
    if best is None:
        return None
    found = space.neighbours(1, seed=seed, around=dict(best.params))
    if not found:  # nothing of it is the sampler's to vary
        return None
    enqueue_neighbour(study, found[0], best.number)
    return best.number


def rung_time_cap(rung: Rung, images_per_second: float | None) -> float | None:
    if not images_per_second or rung.epochs is None:
        return None
    return SLOW_FACTOR * rung.resource / images_per_second + SLOW_GRACE_S


def measure_speed(spec: ArchSpec, data: ImageSplits, device: Device, *, steps: int = 6,
                  warmup: int = 1, max_seconds: float = 5.0) -> float:
    """Training images per second of ``spec`` on ``data`` (forward, backward, SGD step on
    augmented batches, in the precision the search trains in), timed over a few steps after a
    warm-up, and never for longer than ``max_seconds`` (on a slow or busy machine, fewer steps
    are timed).

    The warm-up is never timed and ``max_seconds`` counts from its end: a first step pays
    one-off costs (CUDA's context, cuDNN's choice of kernels) that can take seconds on a GPU
    whose steps take milliseconds. Timing it made an H100 read 105 images/s instead of ~17,000
    once a short budget left less than its first step's time to the timing, and the plan then
    left no time to train. At least one step after the warm-up is always timed.
    """
    t = spec.train
    torch.manual_seed(0)
    model = build_model(spec, data.input_shape, data.num_classes).to(data.x_train.device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    batches = make_batches(data, "train", batch_size=t.batch_size, shuffle=True, seed=0,
                           crop_padding=t.crop_padding, flip=t.flip, drop_last=False)
    began = time.perf_counter()
    started: float | None = None
    seen = 0
    for i, (x, y) in enumerate(batches):
        if i == warmup:
            _sync(device)
            started, seen = time.perf_counter(), 0
        with device.autocast():
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(y)
        if started is not None and (i + 1 >= warmup + steps
                                    or time.perf_counter() - started > max_seconds):
            break
    _sync(device)
    # A split of no more batches than the warm-up: its steps are all there is to time.
    seconds = time.perf_counter() - (began if started is None else started)
    return seen / seconds if seconds > 0 and seen else 0.0


#: Scoring runs at least this many times the timed training images/s (clutter:6000's VGG-style
#: baseline: 1,689 scored against 1,133 trained per second, benchmarks/bench_layout.py).
SCORING_SPEEDUP = 1.5
#: Training in bf16 on a CPU ran the default space's baselines at up to 1.88x fp32's images/s
#: (benchmarks/bench_precision.py), while scoring stays fp32 (the model handed over runs in
#: fp32): against a speed timed in bf16 on a CPU, scoring gains this much less.
CPU_BF16_TRAINING_GAIN = 1.9


def scoring_seconds(images: int, images_per_second: float | None, views: int = 1, *,
                    timed_in_cpu_bf16: bool = False) -> float:
    """Seconds to score ``images`` (each seen ``views`` times: 2 with flip test-time
    augmentation, :func:`automl_cnn.final_fit.tta_views`) at a timed training speed; 0 when no
    speed was timed. ``timed_in_cpu_bf16``: that speed was timed in bf16 on a CPU, where
    scoring in fp32 is slower against it (:data:`CPU_BF16_TRAINING_GAIN`).

        >>> round(scoring_seconds(6000, 1000.0, 2), 1), scoring_seconds(6000, 1000.0, 2,
        ...                                                              timed_in_cpu_bf16=True)
        (8.0, 15.2)
    """
    if not images_per_second:
        return 0.0
    speedup = SCORING_SPEEDUP / (CPU_BF16_TRAINING_GAIN if timed_in_cpu_bf16 else 1.0)
    return images * views / (speedup * images_per_second)


#: The time kept back after a clocked fit (to score it) never takes more than this share of
#: what is left: a reserve estimated from a speed timed too slow must not leave no time to fit.
MAX_RESERVE_SHARE = 0.5


def fit_seconds(left: float, reserve: float) -> float:
    """Seconds a fit clocked to a deadline ``left`` seconds away may train: it keeps ``reserve``
    for what follows it, but never more than :data:`MAX_RESERVE_SHARE` of ``left``.

        >>> fit_seconds(100.0, 10.0), fit_seconds(60.0, 57.0)
        (90.0, 30.0)
    """
    return max(left - reserve, (1.0 - MAX_RESERVE_SHARE) * left)


def _sync(device: Device) -> None:
    if device.torch_device.startswith("cuda"):
        torch.cuda.synchronize()
