"""The timed training speed a budget is planned from: a cold first step must not read as the
machine's speed, and a speed that reads too slow must not leave a budgeted fit no time.

Both were found on a lent H100: a 60 s budget timed the first baseline at 105 images/s (its
first step, which pays for CUDA's context and cuDNN's choice of kernels, was the step timed),
kept back more time to score the fit than was left, and trained nothing (val_acc 0.10)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import optuna
import pytest

from automl_cnn.config import SearchConfig
from automl_cnn.data import load_dataset
from automl_cnn.device import resolve_device
from automl_cnn.ladder import Ladder
from automl_cnn.record import Outcome, TrialRecord
from automl_cnn.runners import climb
from automl_cnn.runners.climb import MAX_RESERVE_SHARE, fit_seconds, measure_speed
from automl_cnn.runners.trial import TrialRunner
from automl_cnn.search_spaces import load_space
from automl_cnn.tracking import Tracker

COLD_S = 0.5


def _tiny_baseline() -> Any:
    space = load_space("tiny")
    return space.sample(optuna.trial.FixedTrial(space.baselines[0].params), flip_ok=False)


def test_a_slow_first_step_is_not_timed(monkeypatch: pytest.MonkeyPatch) -> None:
    real = climb.build_model

    def cold_start(*args: Any, **kwargs: Any) -> Any:  # a first step that pays start-up costs
        model = real(*args, **kwargs)
        calls: list[int] = []

        def pause(*_: Any) -> None:
            if not calls:
                calls.append(1)
                time.sleep(COLD_S)

        model.register_forward_pre_hook(pause)
        return model

    monkeypatch.setattr(climb, "build_model", cold_start)
    spec = _tiny_baseline()
    data = load_dataset("digits", seed=0)
    # A time limit far shorter than the cold step: the steps after it are still timed.
    speed = measure_speed(spec, data, resolve_device("cpu"), steps=4, max_seconds=0.01)
    timing_the_cold_step = spec.train.batch_size / COLD_S
    assert speed > 10 * timing_the_cold_step, speed


def test_a_split_smaller_than_the_warm_up_is_still_timed() -> None:
    data = load_dataset("digits", seed=0)
    spec = _tiny_baseline()
    assert measure_speed(spec, data, resolve_device("cpu"), warmup=10_000) > 0


def test_the_time_kept_to_score_a_fit_never_takes_more_than_half_of_what_is_left() -> None:
    assert fit_seconds(100.0, 10.0) == 90.0
    assert fit_seconds(45.0, 63.0) == pytest.approx((1 - MAX_RESERVE_SHARE) * 45.0)


def test_a_speed_timed_far_too_slow_still_leaves_the_fit_time_to_train(tmp_path: Path) -> None:
    # The one trial of a budget too short to search, planned from 1 image/s: scoring the 360
    # validation images "would take" 240 s, more than all 10 s left.
    config = SearchConfig(space="tiny", mlflow=False, out=str(tmp_path), sampler="random")
    data = load_dataset("digits", seed=0)
    ladder = Ladder.whole_budget(len(data.y_train) + len(data.y_val), 3, "too short")
    runner = TrialRunner(config, load_space("tiny"), data, resolve_device("cpu"),
                         tracker=Tracker(), run_dir=tmp_path, ladder=ladder,
                         images_per_second=1.0, deadline=time.time() + 10)
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(load_space("tiny").baselines[0].params)
    study.optimize(runner, n_trials=1)
    record = TrialRecord.from_trial(study.trials[0])
    assert record.outcome is Outcome.COMPLETE
    assert record.history and record.val_acc is not None and record.val_acc > 0.5
