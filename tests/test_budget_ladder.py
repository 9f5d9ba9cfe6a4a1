"""The wall budget and the fidelity ladder: pure arithmetic, checked as numbers."""

from __future__ import annotations

from dataclasses import replace

import pytest

from automl_cnn.budget import Budget, format_duration, parse_duration, reserve_for
from automl_cnn.config import SearchConfig
from automl_cnn.errors import UserError
from automl_cnn.ladder import (
    ETA,
    MIN_SEARCH_TRAININGS,
    Ladder,
    plan_ladder,
    promotable,
    search_pays,
)


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90.0), (90, 90.0), ("90s", 90.0), ("20m", 1200.0), ("1h30m", 5400.0),
    ("1.5h", 5400.0), ("2m30s", 150.0), ("0.5m", 30.0), (" 1H ", 3600.0), ("1d", 86400.0),
])
def test_parse_duration_accepts_units(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "20x", "m", "1h30", "-5", "0", "0s", "5m-3s",
                                  "inf", "nan"])
def test_parse_duration_refuses_bad_text_naming_it(text: str) -> None:
    with pytest.raises(UserError, match="--timeout"):
        parse_duration(text)


def test_format_duration() -> None:
    assert [format_duration(s) for s in (5, 125, 840, 5400)] == ["5s", "2m05s", "14m", "1h30m"]


def test_budget_phases_split_the_wall_and_read_one_clock() -> None:
    now = [100.0]
    budget = Budget.start(1200, final_share=0.3, clock=lambda: now[0])
    reserve = reserve_for(1200)
    assert 4 <= reserve <= 120
    assert budget.end == 1300.0 and budget.final_end == 1300.0 - reserve
    final = budget.final_end - budget.search_end
    assert final == pytest.approx(0.3 * (1200 - reserve))
    assert budget.search_left() == pytest.approx(budget.search_seconds)
    now[0] = budget.search_end + 10  # the search overran: the final fit has 10 s less
    assert budget.search_left() == 0.0
    assert budget.final_left() == pytest.approx(final - 10)
    now[0] = 2000.0
    assert budget.left() == budget.final_left() == 0.0


def test_budget_refuses_a_final_share_of_one() -> None:
    with pytest.raises(UserError, match="--final-share"):
        Budget.start(60, final_share=1.0)


def test_the_end_keeps_the_time_to_score_the_test_split() -> None:
    from automl_cnn.runners.climb import SCORING_SPEEDUP, scoring_seconds

    # 6,000 test images, twice each (flips averaged), at 1,000 training images/s.
    assert scoring_seconds(6000, 1000.0, views=2) == pytest.approx(12_000 / (SCORING_SPEEDUP
                                                                             * 1000))
    assert scoring_seconds(6000, None) == 0.0  # nothing timed: nothing to go on
    # A speed timed in bf16 on a CPU outruns fp32 scoring by up to 1.9x: keep that much more.
    from automl_cnn.device import resolve_device
    from automl_cnn.runners.climb import CPU_BF16_TRAINING_GAIN

    assert scoring_seconds(6000, 1000.0, views=2, timed_in_cpu_bf16=True) == pytest.approx(
        CPU_BF16_TRAINING_GAIN * scoring_seconds(6000, 1000.0, views=2))
    assert resolve_device("cpu", "bf16").mixed_on_cpu
    assert not resolve_device("cpu", "32").mixed_on_cpu
    budget = Budget.start(120, clock=lambda: 0.0)
    kept = budget.reserving(8.0)
    assert kept.reserve == pytest.approx(budget.reserve + 8.0)
    assert kept.final_end == pytest.approx(budget.final_end - 8.0)  # training ends earlier
    assert budget.reserving(1e6).reserve == pytest.approx(30.0)  # never above a quarter


def test_the_end_keeps_the_scoring_of_every_network_handed_over_at_its_own_speed() -> None:
    # The reserve above is timed on the first baseline; the final fit may hand over a slower
    # winner (larger maps), or several finalists averaged: each scores the test split.
    from automl_cnn.data import load_dataset
    from automl_cnn.device import resolve_device
    from automl_cnn.final_fit import FinalPlan
    from automl_cnn.runners.climb import scoring_seconds
    from automl_cnn.runners.phases import member_scoring

    clutter = load_dataset("clutter:2000", seed=0)  # flips keep its labels: scored twice
    images = len(clutter.y_train) + len(clutter.y_val)
    fp32, bf16 = resolve_device("cpu", "32"), resolve_device("cpu", "bf16")
    slow, fast = FinalPlan(12, images / 500.0, None), FinalPlan(12, images / 2000.0, None)
    each = member_scoring([slow, fast, FinalPlan(12, None, None)], clutter, SearchConfig(),
                          fp32, default=1.25)
    assert each == pytest.approx([scoring_seconds(len(clutter.y_test), 500.0, 2),
                                  scoring_seconds(len(clutter.y_test), 2000.0, 2), 1.25])
    assert each[0] == pytest.approx(4 * each[1])  # a network 4x slower scores 4x slower
    assert member_scoring([slow], clutter, SearchConfig(tta="off"), fp32, 0.0) == \
        pytest.approx([each[0] / 2])  # no flips: each image once
    assert member_scoring([slow], clutter, SearchConfig(), bf16, 0.0)[0] > each[0]  # fp32 scoring


def test_small_budgets_keep_a_small_reserve() -> None:
    assert reserve_for(20) == pytest.approx(2.0)  # a tenth of a tiny budget
    assert reserve_for(1200) == pytest.approx(28.0)


def test_digits_gets_no_ladder() -> None:
    # digits: 1,050 training images, ~10k images/s measured for a baseline on a 2-core CPU.
    ladder = plan_ladder(train_images=1050, num_classes=10, spec_epochs=12,
                         search_seconds=42, images_per_second=10_000)
    assert ladder.is_flat and ladder.rungs[0].images == 1050
    # Even a short search does not subsample 1,050 images: rung 0 would be half of them.
    short = plan_ladder(train_images=1050, num_classes=10, spec_epochs=13,
                        search_seconds=24, images_per_second=8000)
    assert short.is_flat and "too few to subsample" in short.reason


def test_no_budget_means_no_ladder() -> None:
    ladder = plan_ladder(train_images=60_000, num_classes=10, spec_epochs=12,
                         search_seconds=None, images_per_second=1000)
    assert ladder.is_flat


def test_a_60k_set_is_laddered() -> None:
    # 60k images at ~1,000 images/s: a 20-minute search affords ~1.2 full trials.
    ladder = plan_ladder(train_images=60_000, num_classes=10, spec_epochs=12,
                         search_seconds=840, images_per_second=1000)
    assert not ladder.is_flat and len(ladder.rungs) >= 3
    sizes = [r.resource for r in ladder.rungs]
    assert ladder.rungs[-1].images >= 0.3 * 60_000
    assert ladder.rungs[0].images >= 50 * 10
    for low, high in zip(sizes, sizes[1:]):  # each rung costs about eta times the one below
        assert 2 <= high / low <= 4.5
    # The whole bracket (eta^k trials at rung 0 ... 1 at the top) fits the search phase.
    n = len(ladder.rungs)
    bracket = sum(ETA ** (n - 1 - r.index) * r.resource for r in ladder.rungs)
    assert bracket <= 1.3 * 840 * 1000 / ETA  # ~eta such brackets fit: eta trials at the top


def test_slower_training_means_smaller_rungs() -> None:
    fast, slow = (plan_ladder(train_images=20_000, num_classes=10, spec_epochs=12,
                              search_seconds=300, images_per_second=ips) for ips in (2000, 300))
    assert slow.rungs[0].resource < fast.rungs[0].resource
    assert slow.rungs[0].images >= 500


def test_ladder_round_trips_as_json() -> None:
    ladder = plan_ladder(train_images=20_000, num_classes=10, spec_epochs=12,
                         search_seconds=300, images_per_second=1000)
    assert Ladder.from_dict(ladder.to_dict()) == ladder
    whole = Ladder.whole_budget(20_000, 9, "too short")
    assert Ladder.from_dict(whole.to_dict()) == whole and whole.whole and not whole.is_flat


def test_a_search_needs_a_budget_that_buys_several_full_trainings() -> None:
    full = 20_000 * 12  # image-epochs of one full training
    just = MIN_SEARCH_TRAININGS * full / 1500
    assert search_pays(total_seconds=just, images_per_second=1500, train_images=20_000,
                       spec_epochs=12)
    assert not search_pays(total_seconds=0.99 * just, images_per_second=1500,
                           train_images=20_000, spec_epochs=12)
    # digits at one minute buys hundreds; clutter at two minutes on a 2-core CPU, under one.
    assert search_pays(total_seconds=50, images_per_second=10_000, train_images=1050,
                       spec_epochs=12)
    assert not search_pays(total_seconds=105, images_per_second=1770, train_images=20_400,
                           spec_epochs=12)


def test_a_budget_too_short_to_search_fills_itself_with_epochs() -> None:
    import torch

    from automl_cnn.data import ImageSplits
    from automl_cnn.runners.phases import TRIAL_SETUP_S, whole_budget_ladder

    def images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(n, 1, 4, 4, dtype=torch.uint8), torch.zeros(n, dtype=torch.long)

    (xt, yt), (xv, yv), (xs, ys) = images(20_000), images(3_000), images(10)
    data = ImageSplits("blank", tuple(str(i) for i in range(20)), xt, yt, xv, yv, xs, ys)
    # It trains on train + validation (the estimate at the timed speed; the clock ends it).
    epoch = 23_000 / 2000
    ladder = whole_budget_ladder(data, TRIAL_SETUP_S + 8.9 * epoch, 2000, spec_epochs=12)
    assert ladder.whole and ladder.rungs[0].images == 23_000 and ladder.rungs[0].epochs == 8
    assert f"fewer than the {MIN_SEARCH_TRAININGS}" in ladder.reason
    assert whole_budget_ladder(data, TRIAL_SETUP_S + 9.1 * epoch, 2000, 12).rungs[0].epochs == 9
    # Capped like a final fit, and never below one epoch.
    assert whole_budget_ladder(data, 1e6, 2000, 12).rungs[0].epochs == 96
    assert whole_budget_ladder(data, 1.0, 2000, 12).rungs[0].epochs == 1


def test_promotion_keeps_the_top_third_of_those_finished() -> None:
    assert promotable(0.5, [0.5])  # the first trial always goes on
    assert not promotable(0.4, [0.5, 0.4])  # fewer than eta finished: only a new best goes on
    assert promotable(0.6, [0.5, 0.6])
    scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    promoted = [s for s in scores if promotable(s, scores)]
    assert promoted == [0.7, 0.8, 0.9]
    assert promotable(0.9, [0.9, 0.9, 0.9])  # ties at the bar go on


def test_final_fit_fills_its_share_within_caps() -> None:
    from automl_cnn.final_fit import MAX_EPOCH_FACTOR, epoch_seconds_for, plan_final_fit

    assert plan_final_fit(seconds=120, epoch_seconds=4.0, spec_epochs=12).epochs == 30
    assert plan_final_fit(seconds=1e6, epoch_seconds=1.0, spec_epochs=4).epochs == \
        MAX_EPOCH_FACTOR * 4
    assert plan_final_fit(seconds=2, epoch_seconds=4.0, spec_epochs=12).epochs == 1
    assert plan_final_fit(seconds=None, epoch_seconds=None, spec_epochs=12).epochs == 12
    # A rung of 1,000 images took 2 s per epoch: 3,000 images take 6 s.
    history = [{"seconds": 2.0}, {"seconds": 4.0}]
    assert epoch_seconds_for(history, 1000, 3000) == pytest.approx(6.0)


def test_a_bad_timeout_is_one_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    from automl_cnn.cli import main

    assert main(["search", "--timeout", "20x", "--no-mlflow"]) == 2
    err = capsys.readouterr().err
    assert "--timeout '20x' is not a duration" in err and "Traceback" not in err
    assert main(["search", "--timeout", "1m", "--final-share", "1.5", "--no-mlflow"]) == 2
    assert "--final-share" in capsys.readouterr().err


def test_a_slow_start_grows_the_reserve() -> None:
    now = [0.0]
    budget = Budget.start(120, final_share=0.3, clock=lambda: now[0])
    assert budget.after_startup().reserve == budget.reserve  # a quick start changes nothing
    now[0] = 90.0  # imports and data took 90 s on a busy machine
    assert budget.after_startup().reserve == pytest.approx(13.5)
    now[0] = 1000.0
    assert budget.after_startup().reserve == pytest.approx(30.0)  # at most a quarter


def test_a_final_fit_by_default_unless_a_pareto_search_has_no_budget() -> None:
    from automl_cnn.config import SearchConfig

    assert SearchConfig(trials=100).fits_final
    assert SearchConfig(trials=None, timeout=60).fits_final
    assert not SearchConfig(timeout=60, final_fit=False).fits_final
    assert not SearchConfig(trials=100, final_fit=False).fits_final
    # Several objectives leave no single winner to refit, unless a budget or the flag asks.
    pareto = ("val_acc", "params")
    assert not SearchConfig(trials=100, objectives=pareto).fits_final
    assert SearchConfig(trials=100, objectives=pareto, final_fit=True).fits_final
    assert SearchConfig(timeout=60, objectives=pareto).fits_final


def test_the_model_handed_over_averages_flips_only_where_that_is_sound() -> None:
    from automl_cnn.arch import ArchSpec, ConvBlock
    from automl_cnn.final_fit import with_tta

    spec = ArchSpec(blocks=(ConvBlock(8),))
    assert with_tta(spec, SearchConfig(), flip_ok=True).head.tta == "flip"
    assert with_tta(spec, SearchConfig(), flip_ok=False) == spec  # digits: a 2 is no mirror 2
    assert with_tta(spec, SearchConfig(tta="off"), flip_ok=True) == spec
    # It doubles inference time, so never under a latency limit or objective.
    assert with_tta(spec, SearchConfig(max_latency_ms=1.0), flip_ok=True) == spec
    assert with_tta(spec, SearchConfig(objectives=("val_acc", "latency"), pruner="none"),
                    flip_ok=True) == spec


def test_a_split_too_small_to_ladder_searches_from_fewer_full_trainings() -> None:
    # digits (1,079 training images): its trials are cheap (pruned after an epoch or two), so
    # fewer *full* trainings than a laddered set's 20 still buy a search; training the first
    # baseline alone lost to the search at 60 s on a slow CPU (about 20 trainings: 0.9898
    # against 0.9944). But not as few as its baselines need: at 11 (clutter:2400) the search
    # kept its first baseline and lost to it trained alone. (2-fold margins either side of 15:
    # speeds timed on a loaded machine vary.)
    import optuna

    from automl_cnn.budget import Budget
    from automl_cnn.data import load_dataset
    from automl_cnn.device import resolve_device
    from automl_cnn.ladder import MIN_SMALL_SEARCH_TRAININGS, min_search_trainings
    from automl_cnn.runners.climb import measure_speed
    from automl_cnn.runners.phases import plan_search
    from automl_cnn.search_spaces import load_space

    assert min_search_trainings(1079, 10) == MIN_SMALL_SEARCH_TRAININGS < MIN_SEARCH_TRAININGS
    assert min_search_trainings(20_400, 20) == MIN_SEARCH_TRAININGS  # clutter: laddered
    data = load_dataset("digits", seed=0)
    space = load_space("default")
    first = space.sample(optuna.trial.FixedTrial(space.baselines[0].params), flip_ok=False)
    device = resolve_device("cpu")
    full = len(data.y_train) * first.train.epochs / measure_speed(first, data, device, steps=24)
    budget = Budget.start(30 * full, final_share=0.5)
    budget = replace(budget, total=budget.total + budget.reserve)  # 30 trainings after it
    plan = plan_search(SearchConfig(timeout=budget.total), space, data, device, budget)
    assert not plan.ladder.whole and plan.ladder.is_flat  # searched, flat
    short = replace(budget, total=7 * full + budget.reserve)  # 7 trainings: too short
    whole = plan_search(SearchConfig(timeout=short.total), space, data, device, short).ladder
    assert whole.whole and f"fewer than the {MIN_SMALL_SEARCH_TRAININGS}" in whole.reason
    # Workers that together train 8x one worker's speed make the same 7 trainings' budget a
    # search (its half of the budget buys 28 trainings' worth); the final fit stays one worker.
    shared = plan_search(SearchConfig(timeout=short.total), space, data, device, short,
                         speedup=8.0)
    assert not shared.ladder.whole and shared.speedup == 8.0
