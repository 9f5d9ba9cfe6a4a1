"""One study-level progress bar: trials done, pruned, failed, best so far, elapsed."""

from __future__ import annotations

import sys
from typing import Any

import optuna

from automl_cnn.results import count_outcomes, ranked_trials, val_acc_of


class ProgressBar:
    """An Optuna callback that advances a tqdm bar after each trial (stderr, one line)."""

    def __init__(self, *, total: int | None, enabled: bool = True) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="trial", desc="search", file=sys.stderr,
                        disable=not enabled, dynamic_ncols=True, leave=True)

    def update(self, study: optuna.Study, _: Any) -> None:
        trials = study.get_trials(deepcopy=False)
        counts = count_outcomes(trials)
        ranked = ranked_trials(study)
        self.bar.set_postfix_str(
            f"done={counts['complete']} pruned={counts['pruned']} "
            f"infeasible={counts['infeasible']} failed={counts['failed']} "
            f"best={val_acc_of(ranked[0]):.4f}" if ranked else
            f"done=0 pruned={counts['pruned']} failed={counts['failed']}",
            refresh=False,
        )
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
