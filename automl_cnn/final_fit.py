"""The final fit: the search's winner trained once more, on train + validation, for the time
the budget kept for it.

The search chose the architecture and its recipe on the validation split; once chosen, the
validation images are just more training data, and the winner deserves a longer schedule than
any one search trial could be given. The epochs are sized to fill the final share of the budget
(``seconds / measured seconds per epoch``, capped) for the progress bar, but the
learning-rate schedule runs by the clock: it anneals over the seconds given (or the capped
epochs, if those end first), so the fit ends annealed at its deadline whether the machine runs
faster or slower than measured. Without a time
budget (``--trials N``), the winner is retrained for its own epoch count on train + validation.
Where several trials are too close on validation to tell apart, each is fit and the model
handed over is their average (:func:`fit_ensemble`; who they are: :mod:`automl_cnn.finalists`).

Example:
    >>> plan = plan_final_fit(seconds=120, epoch_seconds=4.0, spec_epochs=12)
    >>> plan.epochs
    30
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl_cnn.arch import ArchSpec

if TYPE_CHECKING:
    from automl_cnn.checkpoint import CheckpointMeta
    from automl_cnn.config import SearchConfig
    from automl_cnn.data import ImageSplits
    from automl_cnn.device import Device
    from automl_cnn.training import FitResult

HISTORY_FILE = "history.json"
#: The stretched schedule never trains more than this many times the winner's own epochs:
#: beyond it, a bigger budget buys little on a small set and risks a silent hour-long fit.
MAX_EPOCH_FACTOR = 8
MAX_EPOCHS = 200


@dataclass(frozen=True)
class FinalPlan:
    """How long the final fit trains: ``epochs`` over train + validation, expected to take
    ``epochs * epoch_seconds`` of the ``seconds`` it was given (``None``: no time budget)."""

    epochs: int
    epoch_seconds: float | None
    seconds: float | None

    @property
    def train_seconds(self) -> float:
        """Seconds its epochs take at ``epoch_seconds`` (0 where that is unknown)."""
        return self.epochs * (self.epoch_seconds or 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "epoch_seconds": self.epoch_seconds,
                "seconds": self.seconds}


def trial_seed(seed: int, number: int, again: int = 0) -> int:
    """The training seed of trial ``number`` in a search seeded ``seed``; ``again`` > 0: of
    its ``again``-th further training with another seed (more seeds after a capped fit, a
    final team).

        >>> trial_seed(0, 4), trial_seed(0, 4, again=1)
        (4, 7923)
    """
    return seed * 100_003 + number + 7_919 * again


def plan_final_fit(*, seconds: float | None, epoch_seconds: float | None,
                   spec_epochs: int) -> FinalPlan:
    """Epochs that fill ``seconds`` at ``epoch_seconds`` each, between 1 and
    ``MAX_EPOCH_FACTOR`` × ``spec_epochs`` (and :data:`MAX_EPOCHS`). Without a budget or a
    measured speed, the spec's own epochs."""
    if seconds is None or not epoch_seconds:
        return FinalPlan(spec_epochs, epoch_seconds, seconds)
    fits = math.floor(seconds / epoch_seconds)
    return FinalPlan(max(1, min(epoch_cap(spec_epochs), fits)), epoch_seconds, seconds)


def with_tta(spec: ArchSpec, config: SearchConfig, flip_ok: bool) -> ArchSpec:
    """``spec`` with flip test-time augmentation (``head.tta="flip"``: in eval mode the network
    averages its logits over each image and its mirror image) for the model a search hands
    over, where that is sound: ``--tta auto``, the data's labels survive a horizontal flip
    (``flip_ok``), and neither a latency limit nor a latency objective is set (it doubles the
    inference cost). On clutter at 2 minutes it added 1.3-2.0 test points to the same weights
    (benchmarks/bench_budget.py, README)."""
    return replace(spec, head=replace(spec.head, tta="flip")) \
        if tta_views(config, flip_ok) == 2 else spec


def tta_views(config: SearchConfig, flip_ok: bool) -> int:
    """How many times the model a search hands over sees each image: 2 where :func:`with_tta`
    averages flips, else 1."""
    return 1 if config.tta == "off" or not flip_ok or config.measures_latency else 2


def epoch_cap(spec_epochs: int) -> int:
    """The most epochs a budgeted fit of a spec with ``spec_epochs`` epochs trains."""
    return max(1, min(MAX_EPOCHS, MAX_EPOCH_FACTOR * spec_epochs))


def epoch_seconds_for(history: list[dict[str, float]], images_trained: int,
                      images_final: int) -> float | None:
    """Seconds one epoch over ``images_final`` images should take, from a trial's history
    (its ``seconds`` column is cumulative) trained on ``images_trained`` images per epoch."""
    if not history or not images_trained:
        return None
    per_epoch = float(history[-1]["seconds"]) / len(history)
    return per_epoch * images_final / images_trained


def fit_final(spec: ArchSpec, data: ImageSplits, device: Device, *, seed: int,
              plan: FinalPlan, max_seconds: float | None,
              on_epoch: Callable[[dict[str, float]], None] | None = None,
              clocked: bool = True, callbacks: Sequence[Any] = ()) -> FitResult:
    """Train ``spec`` on train + validation (no validation, no pruning). With
    ``max_seconds`` and ``clocked``, for those seconds with the schedule run by the clock (at
    most :func:`epoch_cap` epochs); otherwise for ``plan.epochs``, stopping after
    ``max_seconds`` at the latest. ``callbacks``: Lightning callbacks after ours."""
    from automl_cnn.training import EpochEnd, fit_spec

    callbacks = [*([EpochEnd(on_epoch)] if on_epoch else []), *callbacks]
    clocked = clocked and max_seconds is not None and plan.seconds is not None
    return fit_spec(spec, data, device, seed=seed, train_split="train+val", val_split=None,
                    epochs=epoch_cap(spec.train.epochs) if clocked else plan.epochs,
                    callbacks=callbacks, max_seconds=max_seconds, clocked=clocked)


def fit_ensemble(specs: Sequence[ArchSpec], plans: Sequence[FinalPlan], data: ImageSplits,
                 device: Device, *, seed: int, deadline: float | None,
                 on_epoch: Callable[[dict[str, float]], None] | None = None
                 ) -> tuple[ArchSpec, FitResult]:
    """:func:`fit_final` of each spec in turn, all with ``seed`` (each with ``plans[i]``; with
    a ``deadline``, a ``time.time()`` reading, each gets an equal share of the time left when
    it starts); one spec gives its own fit, several an :class:`automl_cnn.network.Ensemble`
    of them (:func:`ensemble_of`)."""
    return ensemble_of(*fit_each(specs, plans, data, device, seeds=[seed] * len(specs),
                                 deadline=deadline, on_epoch=on_epoch))


def fit_each(specs: Sequence[ArchSpec], plans: Sequence[FinalPlan], data: ImageSplits,
             device: Device, *, seeds: Sequence[int], deadline: float | None,
             on_epoch: Callable[[dict[str, float]], None] | None = None
             ) -> tuple[list[ArchSpec], list[FitResult]]:
    """:func:`fit_final` of each spec in turn, as :func:`fit_ensemble` describes, each with its
    own ``seeds[i]``: the specs (each holding the epochs it trained) and their fits."""
    fits, trained = [], []
    for i, (spec, plan) in enumerate(zip(specs, plans)):
        share = None if deadline is None else max(0.0, deadline - time.time()) / (len(specs) - i)
        fit = fit_final(spec, data, device, seed=seeds[i], plan=plan, max_seconds=share,
                        on_epoch=on_epoch)
        fits.append(fit)
        trained.append(replace(spec, train=replace(spec.train,
                                                   epochs=len(fit.history) or plan.epochs)))
    return trained, fits


def ensemble_of(specs: Sequence[ArchSpec], fits: Sequence[FitResult]
                ) -> tuple[ArchSpec, FitResult]:
    """One fit as it is; several as an :class:`automl_cnn.network.Ensemble` with the spec that
    rebuilds it (the first spec, the others as its ``members``; each spec holds the epochs its
    network trained). The result's history is the first network's learning curve."""
    from automl_cnn.network import Ensemble
    from automl_cnn.training import FitResult

    if len(fits) == 1:
        return specs[0], fits[0]
    model = Ensemble([f.model for f in fits]).eval()
    return (replace(specs[0], members=tuple(specs[1:])),
            FitResult(model, fits[0].history, sum(f.seconds for f in fits),
                      fits[0].stopped_reason))


#: A further training of a model that reached its epoch cap with time left must get at least
#: this share of the time the first took (:func:`more_trainings`): its schedule anneals by the
#: clock, so a short member is a finished model, weaker alone but still adding to the average
#: (benchmarks/bench_seed_share.py, clutter:3600, two pairs of seeds: a member given 1/3 of the
#: first's time trained 34-36 epochs, tested 2 points under the first alone, and lifted the
#: average by +0.75 and +0.68 points; at 0.45, +0.95 and +1.22). At 0.75, clutter:3600 at 930 s
#: on a slow CPU left 355 s of 930 unused; at 0.5, 90 s of 720 after a 200 s first training.
MIN_SEED_SHARE = 1 / 3


def more_trainings(seconds: float, first_seconds: float, most: int) -> int:
    """How many more trainings of the same recipe (other seeds) ``seconds`` buys, when the first
    took ``first_seconds`` to reach its epoch cap: each must get at least
    :data:`MIN_SEED_SHARE` of that time (the clock anneals a shorter one, at fewer epochs), and
    at most ``most``. A budget too short to search but longer than the cap (clutter:6000 at
    8 minutes on a fast 2-core CPU: the cap at 232-267 s) would otherwise leave the rest unused.

        >>> more_trainings(90.0, 240.0, 2), more_trainings(70.0, 240.0, 2)
        (1, 0)
        >>> more_trainings(1000.0, 240.0, 2), more_trainings(1000.0, 240.0, 0)
        (2, 0)
    """
    if first_seconds <= 0 or seconds <= 0:
        return 0
    return max(0, min(most, math.floor(seconds / (MIN_SEED_SHARE * first_seconds))))


def save_final(run_dir: Path, fit: FitResult, spec: ArchSpec, meta: CheckpointMeta) -> Path:
    """Checkpoint the final model in ``RUN_DIR/final`` (``spec`` as :func:`fit_ensemble`
    returns it, holding the epochs each network trained) with its learning curve beside it
    (``history.json``)."""
    from automl_cnn.checkpoint import save_checkpoint
    from automl_cnn.rundir import RunDir

    folder = save_checkpoint(RunDir(run_dir).final, fit.model.to("cpu"), spec, meta)
    (folder / HISTORY_FILE).write_text(json.dumps(fit.history, indent=1))
    return folder


def read_final_history(run_dir: Path) -> list[dict[str, float]]:
    """The final fit's per-epoch rows (``[]`` when the run has no final model)."""
    from automl_cnn.rundir import RunDir

    path = RunDir(run_dir).final / HISTORY_FILE
    return json.loads(path.read_text()) if path.exists() else []


def read_final_networks(run_dir: Path) -> int:
    """How many networks the final model averages (1: one network; 0: no final model)."""
    return len(final_networks(run_dir))


def one_recipe(networks: Sequence[ArchSpec]) -> bool:
    """Whether ``networks`` (several) are all trainings of one recipe (more seeds of a winner
    that reached its epoch cap), not different finalists."""
    recipes = [replace(n, train=replace(n.train, epochs=1)) for n in networks]
    return len(recipes) > 1 and all(r == recipes[0] for r in recipes)


def final_networks(run_dir: Path) -> tuple[ArchSpec, ...]:
    """The networks of the run's final model (``()``: none)."""
    from automl_cnn.checkpoint import CheckpointError, read_spec
    from automl_cnn.rundir import RunDir

    try:
        return read_spec(RunDir(run_dir).final).networks
    except CheckpointError:
        return ()


__all__ = ["MIN_SEED_SHARE", "FinalPlan", "ensemble_of", "epoch_cap", "epoch_seconds_for",
           "final_networks", "one_recipe", "trial_seed",
           "fit_each", "fit_ensemble", "fit_final", "more_trainings", "plan_final_fit",
           "read_final_history", "read_final_networks", "save_final", "tta_views", "with_tta"]
