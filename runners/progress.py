"""One study-level progress bar: trials done, pruned, failed, best so far, elapsed."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import optuna

from automl_cnn.budget import Budget, format_duration
from automl_cnn.results import counts_apart, ranked_trials


class ProgressBar:
    """An Optuna callback that advances a tqdm bar after each trial (stderr, one line)."""

    def __init__(self, *, total: int | None, enabled: bool = True,
                 budget: Budget | None = None) -> None:
        from tqdm.auto import tqdm

        self.budget = budget
        self.bar = tqdm(total=total, unit="trial", desc="search", file=sys.stderr,
                        disable=not enabled, dynamic_ncols=True, leave=True)

    def update(self, study: optuna.Study, _: Any) -> None:
        counts = counts_apart(study)
        ranked = ranked_trials(study)
        left = f"{format_duration(self.budget.search_left())} left " if self.budget else ""
        over = f"over_limit={counts['over_limit']} " if counts["over_limit"] else ""
        self.bar.set_postfix_str(
            left + f"done={counts['complete']} pruned={counts['pruned']} "
            f"infeasible={counts['infeasible']} {over}failed={counts['failed']} "
            f"best={ranked[0].val_acc:.4f}" if ranked else
            left + f"done=0 pruned={counts['pruned']} failed={counts['failed']}",
            refresh=False,
        )
        self.bar.update(1)

    after_trial = update  # the Optuna callback

    def close(self) -> None:
        self.bar.close()


def poll_progress(study: optuna.Study, bar: ProgressBar) -> Callable[[], None]:
    """For ``--jobs N``: a function that advances ``bar`` to the trials other processes have
    finished in ``study`` since now (it reads the storage)."""
    before = _finished(study)
    shown = [0]  # not bar.bar.n: a disabled tqdm bar never counts

    def poll() -> None:
        done = _finished(study) - before
        while shown[0] < done:
            bar.update(study, None)
            shown[0] += 1

    return poll


def _finished(study: optuna.Study) -> int:
    from .slots import count_slots  # trials that count towards the target, as the workers see

    return count_slots(study.get_trials(deepcopy=False)).used


class EpochBar:
    """``final fit 12/40 epochs · 4m left`` on stderr."""

    def __init__(self, epochs: int, budget: Budget | None, *, enabled: bool,
                 desc: str = "final fit") -> None:
        from tqdm.auto import tqdm

        self.budget = budget
        self.bar = tqdm(total=epochs, unit="epoch", desc=desc, file=sys.stderr,
                        disable=not enabled, dynamic_ncols=True, leave=True)

    def after_trial(self, *_: Any) -> None:
        """As an Optuna callback: the epochs are what this bar counts."""

    def update(self, _: dict[str, float]) -> None:
        if self.budget is not None:
            self.bar.set_postfix_str(f"{format_duration(self.budget.left())} left",
                                     refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


__all__ = ["EpochBar", "ProgressBar", "poll_progress"]
