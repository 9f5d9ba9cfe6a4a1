"""A fidelity ladder: cheap rungs first, the best candidates promoted to more data and epochs.

Pure arithmetic, no torch or optuna. A rung is (class-balanced training images, epochs); its
*resource* is images × epochs, which is what a rung costs in training steps. Rungs grow by the
reduction factor ``eta`` (3): a rung costs ``eta`` times the one below, and a trial is promoted
to it only if it is in the top ``1/eta`` of the trials that finished the rung below so far
(asynchronous successive halving, "ASHA"): no trial waits for a cohort, so every worker keeps
training and a search can stop at any moment.

:func:`plan_ladder` sizes the rungs from what the search phase can buy: the dataset size, the
measured training speed (images per second) and the seconds the search has. When the search
can afford many full trials (the built-in digits: 1,050 training images), there is no ladder:
one rung is the whole training split at each trial's own epoch count, and the epoch pruner does
the early stopping, as in a search without a budget.

Example:
    >>> ladder = plan_ladder(train_images=50_000, num_classes=10, spec_epochs=12,
    ...                      search_seconds=600, images_per_second=1500)
    >>> [(r.images, r.epochs) for r in ladder.rungs]
    [(1388, 2), (4166, 2), (12500, 2), (37500, 2)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

ETA = 3
#: No ladder when the search phase can afford this many trials at full fidelity: the epoch
#: pruner alone then explores enough (digits affords hundreds).
MIN_FULL_TRIALS = 30
MAX_RUNGS = 4
#: No search at all when the whole budget (search and final fit together) buys fewer full
#: trainings than this, and the time goes to training one good recipe for longer (see
#: :meth:`Ladder.whole` and the README's budget benchmark). Measured: at 0.8 trainings (clutter,
#: 2 minutes) a ladder's lowest rung could not tell candidates apart; at 7.6 and ~15 (clutter:6000,
#: 4 and 8 minutes on a 2-core CPU) the ladder found nothing better than the first baseline and
#: scored 0.872 and 0.882 where that baseline trained for the whole budget scored 0.879 and
#: 0.888 (means of 2 seeds). 20 is above every budget where searching lost; on a GPU most
#: budgets clear it many times.
MIN_SEARCH_TRAININGS = 20
#: On a split too small to ladder, trials are cheap (the median pruner stops most after an
#: epoch or two), so a search pays from fewer full trainings: digits at 60 s bought 19.5-20,
#: and the first baseline trained alone tested 98.9-99.2 % where the search's average reached
#: 99.4 %. But not from as few as its three baselines need (6, the rule before): clutter:2400
#: (2,040 training images) at 300 s bought 11, the search compared the baselines, kept the
#: first and fit it for half the budget, and tested 0.771 and 0.757 where that baseline trained
#: alone for the whole budget tested 0.784 and 0.772 (flips averaged in both). 15 lies between.
MIN_SMALL_SEARCH_TRAININGS = 15
#: A rung trains at least this many epochs (one-cycle needs a warm-up and an annealing) ...
MIN_EPOCHS = 2
#: ... on at least this many images of each class, or its scores are noise.
MIN_IMAGES_PER_CLASS = 50


@dataclass(frozen=True)
class Rung:
    """One fidelity: train on ``images`` class-balanced training images for ``epochs`` epochs
    (``epochs=None``: the trial's own sampled epoch count)."""

    index: int
    images: int
    epochs: int | None

    @property
    def resource(self) -> int:
        return self.images * (self.epochs or 1)


@dataclass(frozen=True)
class Ladder:
    """Rungs from cheapest to the top; ``flat`` when there is one rung at full data."""

    rungs: tuple[Rung, ...]
    eta: int = ETA
    reason: str = ""
    #: No search: one trial (the space's first baseline) trains on the whole training split
    #: for ``rungs[0].epochs``, stretched to fill the budget; there is no final fit.
    whole: bool = False

    @classmethod
    def flat(cls, train_images: int, reason: str = "no budget") -> Ladder:
        return cls((Rung(0, train_images, None),), ETA, reason)

    @classmethod
    def whole_budget(cls, train_images: int, epochs: int, reason: str) -> Ladder:
        """One trial on the whole split for ``epochs``: the budget is too short to search."""
        return cls((Rung(0, train_images, max(1, epochs)),), ETA, reason, whole=True)

    @property
    def is_flat(self) -> bool:
        return len(self.rungs) == 1 and self.rungs[0].epochs is None

    @property
    def top(self) -> int:
        return len(self.rungs) - 1

    def to_dict(self) -> dict[str, object]:
        return {"eta": self.eta, "reason": self.reason, "whole": self.whole,
                "rungs": [{"rung": r.index, "images": r.images, "epochs": r.epochs}
                          for r in self.rungs]}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Ladder:
        rows = data.get("rungs") or []
        rungs = tuple(Rung(int(r["rung"]), int(r["images"]),  # type: ignore[index]
                           None if r["epochs"] is None else int(r["epochs"]))  # type: ignore[index]
                      for r in rows)  # type: ignore[union-attr]
        eta = int(data.get("eta", ETA))  # type: ignore[call-overload]
        return cls(rungs, eta, str(data.get("reason", "")), bool(data.get("whole", False)))


def plan_ladder(*, train_images: int, num_classes: int, spec_epochs: int,
                search_seconds: float | None, images_per_second: float | None,
                eta: int = ETA, min_full_trials: int = MIN_FULL_TRIALS,
                max_rungs: int = MAX_RUNGS) -> Ladder:
    """The rungs a search of ``search_seconds`` should climb (see the module docstring).

    ``spec_epochs`` is a typical trial's epoch count (a baseline's); ``images_per_second`` the
    measured training speed of a typical candidate. The top rung is what about ``eta`` full
    trials' share of the search affords (up to the whole split for ``spec_epochs``); each rung
    below costs ``1/eta`` of the next, spent on fewer images rather than fewer epochs (down to
    :data:`MIN_EPOCHS`), since fresh images teach more than repeated ones.
    """
    if search_seconds is None or not images_per_second:
        return Ladder.flat(train_images, "no time budget")
    if too_small_to_ladder(train_images, num_classes, eta):
        return Ladder.flat(train_images, f"{train_images:,} training images: too few to "
                           "subsample")
    affordable = search_seconds * images_per_second  # image-epochs the search phase buys
    full = train_images * spec_epochs
    if affordable >= min_full_trials * full:
        return Ladder.flat(train_images, f"{affordable / full:.0f} full trials fit the budget")
    floor = MIN_IMAGES_PER_CLASS * num_classes * MIN_EPOCHS  # the smallest useful rung
    for rungs in range(max_rungs, 1, -1):
        # Each rung of a full ASHA bracket costs about the same in total (eta times the
        # trials at 1/eta the resource). Sized so that about eta trials reach the top rung
        # (the top rung costs 1/(eta * rungs) of the search): with room for one only, the
        # first trial (always promoted while it is the best so far) took the whole search.
        top = min(full, affordable / (eta * rungs))
        if top / eta ** (rungs - 1) >= floor:
            break
    else:
        rungs, top = 1, min(full, affordable / eta)
    sizes = [_rung_size(top / eta ** (rungs - 1 - k), train_images, spec_epochs, num_classes)
             for k in range(rungs)]
    return Ladder(tuple(Rung(k, n, e) for k, (n, e) in enumerate(sizes)), eta,
                  f"{affordable / full:.1f} full trials fit the budget")


def too_small_to_ladder(train_images: int, num_classes: int, eta: int = ETA) -> bool:
    """Whether a training split is too small for a ladder: rung 0 could not be a third of the
    next, and subsets this close to the whole split save little and rank worse (digits at
    60 s: 98.4 % laddered, 99.5 % flat, 3 seeds). Such a split is searched flat, with pruning,
    from :data:`MIN_SMALL_SEARCH_TRAININGS` full trainings: its trials are cheap (the median
    pruner stops most after an epoch or two), so :data:`MIN_SEARCH_TRAININGS` undercounts what
    a search buys there."""
    return train_images < eta * MIN_IMAGES_PER_CLASS * num_classes


def min_search_trainings(train_images: int, num_classes: int) -> int:
    """The full trainings a budget must buy before a search pays (see :func:`search_pays`)."""
    return (MIN_SMALL_SEARCH_TRAININGS if too_small_to_ladder(train_images, num_classes)
            else MIN_SEARCH_TRAININGS)


def search_pays(*, total_seconds: float, images_per_second: float, train_images: int,
                spec_epochs: int, min_trainings: int = MIN_SEARCH_TRAININGS) -> bool:
    """Whether ``total_seconds`` at ``images_per_second`` buys at least ``min_trainings`` full
    trainings (``train_images`` x ``spec_epochs``): below that, searching costs more than it
    can find, and the budget goes to one recipe trained for all of it.

    Example:
        >>> search_pays(total_seconds=110, images_per_second=1300, train_images=20_000,
        ...             spec_epochs=12)
        False
        >>> search_pays(total_seconds=50, images_per_second=10_000, train_images=1_050,
        ...             spec_epochs=12)
        True
    """
    return total_seconds * images_per_second >= min_trainings * train_images * spec_epochs


def _rung_size(resource: float, train_images: int, spec_epochs: int,
               num_classes: int) -> tuple[int, int]:
    """(images, epochs) of about ``resource`` image-epochs: images first, epochs after."""
    least = min(train_images, MIN_IMAGES_PER_CLASS * num_classes)
    images = int(min(train_images, max(least, resource / MIN_EPOCHS)))
    epochs = max(MIN_EPOCHS, min(spec_epochs, int(round(resource / images))))
    return images, epochs


def promotable(value: float, finished: Sequence[float], eta: int = ETA) -> bool:
    """Whether a trial scoring ``value`` at a rung goes on to the next one.

    ``finished`` are the scores of every trial that finished this rung so far, this one
    included. It is promoted if it is among the best ``len(finished) // eta`` of them; while
    fewer than ``eta`` have finished, only a trial that beats all of them goes on (the first
    trial always does), as in Optuna's successive-halving pruner.

    Example:
        >>> promotable(0.9, [0.5, 0.9, 0.7]), promotable(0.7, [0.5, 0.9, 0.7])
        (True, False)
    """
    if not finished:
        return True
    keep = max(1, len(finished) // eta)
    bar = sorted(finished, reverse=True)[keep - 1]
    return value >= bar


__all__ = ["ETA", "MIN_SEARCH_TRAININGS", "MIN_SMALL_SEARCH_TRAININGS", "Ladder", "Rung",
           "min_search_trainings", "plan_ladder", "promotable", "search_pays",
           "too_small_to_ladder"]
