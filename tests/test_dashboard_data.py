"""The numbers behind the report's figures (compute, then draw: these test the compute)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import optuna
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from automl_cnn.arch import ArchSpec, ConvBlock, HeadSpec
from automl_cnn.dashboards import (
    describe,
    learning_curves,
    optimization_history,
    parallel_coordinates,
    param_importances,
    pareto_front,
    pruning_savings,
    timeline,
    tile,
    tradeoff,
    trial_rows,
    volume_boxes,
    weight_sharing,
)
from automl_cnn.dashboards.network_data import filter_images, normalise_each
from automl_cnn.dashboards.synthetic import CLASSES, INPUT_SHAPE, synthetic_study
from automl_cnn.model import build_model
from automl_cnn.results import ranked_trials


@pytest.fixture(scope="module")
def study() -> optuna.Study:
    return synthetic_study(120, seed=3, running=2)


@pytest.fixture(scope="module")
def rows(study):
    return trial_rows(study.get_trials(deepcopy=False))


def test_synthetic_study_has_every_outcome(rows):
    outcomes = {r.outcome for r in rows}
    assert {"complete", "pruned", "infeasible", "running"} <= outcomes


def test_best_so_far_is_the_running_maximum_of_completed_trials(study, rows):
    h = optimization_history(rows)
    assert h.best_so_far == sorted(h.best_so_far)  # monotone
    expected, best = [], -math.inf
    for r in rows:
        if r.outcome == "complete":
            best = max(best, r.val_acc)
            expected.append(best)
    assert h.best_so_far == expected
    assert h.best_so_far[-1] == ranked_trials(study)[0].val_acc
    # Pruned trials are shown but never set the best: their accuracy is an unfinished one.
    pruned = [v for v, o in zip(h.values, h.outcomes) if o == "pruned"]
    assert pruned and "infeasible" not in h.outcomes


def test_history_of_a_study_without_completed_trials_is_empty():
    h = optimization_history(trial_rows(synthetic_study(0, running=3).trials))
    assert h.best_so_far == [] and h.numbers == []


def test_learning_curves_mark_pruned_trials_where_they_stopped(rows):
    curves = {c.number: c for c in learning_curves(rows)}
    for r in rows:
        if r.outcome == "pruned":
            c = curves[r.number]
            assert c.stopped_epoch == c.epochs[-1] == r.epochs_trained - 1
            assert len(c.val_acc) == r.epochs_trained
        elif r.number in curves:
            assert curves[r.number].stopped_epoch is None


def _dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """a beats b: no more cost, no less accuracy, better in one."""
    return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 30), st.integers(0, 30)), min_size=0, max_size=40))
def test_pareto_front_is_non_dominated_and_complete(points):
    costs = [float(c) for c, _ in points]
    accs = [float(a) for _, a in points]
    front = pareto_front(costs, accs)
    pts = list(zip(costs, accs))
    for i in front:  # nobody beats a front point
        assert not any(_dominates(p, pts[i]) for p in pts)
    on_front = {pts[i] for i in front}
    for p in pts:  # every other point is beaten by, or equal to, a front point
        assert p in on_front or any(_dominates(pts[i], p) for i in front)
    assert len(on_front) == len(front)  # a duplicate point appears once
    assert [costs[i] for i in front] == sorted(costs[i] for i in front)


def test_pareto_front_by_hand():
    costs = [10, 20, 5, 30, 20]
    accs = [0.8, 0.9, 0.5, 0.85, 0.95]
    assert pareto_front(costs, accs) == [2, 0, 4]


def test_tradeoff_uses_completed_trials_and_their_recorded_costs(rows):
    t = tradeoff(rows, "flops")
    done = [r for r in rows if r.outcome == "complete"]
    assert t.numbers == [r.number for r in done]
    assert t.costs == [float(r.flops) for r in done]
    best = max(range(len(t.accuracies)), key=lambda i: (t.accuracies[i], -t.costs[i]))
    assert best in t.front  # the most accurate trial is always on the front


def test_pruning_savings_add_up(rows):
    s = pruning_savings(rows)
    pruned = [r for r in rows if r.outcome == "pruned"]
    assert s.total_trained == sum(r.epochs_trained for r in rows)
    assert s.saved == sum(r.epochs_budget - r.epochs_trained for r in pruned) > 0
    no_pruning = sum(r.epochs_budget if r.outcome == "pruned" else r.epochs_trained
                     for r in rows)
    assert s.without_pruning == no_pruning == s.total_trained + s.saved
    assert s.trained.get("infeasible", 0) == 0 and s.pruned_trials == len(pruned)
    assert 0 < s.saved_fraction < 1


def test_pruning_savings_estimate_seconds_from_each_trials_own_pace(rows):
    s = pruning_savings(rows)
    expected = sum((r.epochs_budget - r.epochs_trained) * r.train_seconds / r.epochs_trained
                   for r in rows if r.outcome == "pruned")
    assert s.seconds_saved == pytest.approx(expected)


def test_timeline_runs_unfinished_trials_up_to_now(rows):
    now = max(r.start for r in rows) + timedelta(minutes=5)
    spans = {s.number: s for s in timeline(rows, now=now)}
    for r in rows:
        assert spans[r.number].end == (r.end or now)
        assert spans[r.number].end >= spans[r.number].start


def test_parallel_coordinates_encode_categories_and_log_ranges():
    trials = [create_trial(params={"lr": lr, "opt": opt}, value=acc, distributions={
        "lr": FloatDistribution(1e-4, 1e-1, log=True),
        "opt": CategoricalDistribution(["adam", "sgd"])},
        user_attrs={"outcome": "complete"})
        for lr, opt, acc in [(1e-3, "sgd", 0.5), (1e-2, "adam", 0.7)]]
    for i, t in enumerate(trials):
        t.number = i
    p = parallel_coordinates(trial_rows(trials), ["lr", "opt"])
    assert [a.kind for a in p.axes] == ["log", "categorical"]
    assert p.columns[0] == pytest.approx([-3.0, -2.0])
    assert p.columns[1] == [1.0, 0.0]  # index into ("adam", "sgd")
    assert p.accuracies == [0.5, 0.7]


def test_importance_ranks_the_parameter_that_drives_accuracy_first():
    rng = np.random.default_rng(0)
    dists = {"x": FloatDistribution(0, 1), "noise": FloatDistribution(0, 1)}
    trials = []
    for i in range(60):
        x, noise = rng.random(), rng.random()
        t = create_trial(params={"x": x, "noise": noise}, distributions=dists,
                         value=0.5 + 0.4 * x, user_attrs={"outcome": "complete"})
        t.number = i
        trials.append(t)
    for evaluator in ("mdi", "fanova"):
        imp = param_importances(trial_rows(trials), evaluator=evaluator)
        assert imp.names[0] == "x" and imp.values[0] > 0.8
        assert sum(imp.values) == pytest.approx(1.0)


def test_importance_needs_two_completed_trials_and_says_so():
    one = create_trial(params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
                       value=0.9, user_attrs={"outcome": "complete"})
    imp = param_importances(trial_rows([one]))
    assert imp.names == [] and "at least 2 completed trials" in imp.notice


def test_volume_boxes_equal_the_recorded_layer_plan(study):
    for trial in ranked_trials(study)[:10]:
        spec = trial.spec
        boxes = volume_boxes(spec, INPUT_SHAPE, CLASSES)
        plan = trial.plan.layer_plan
        assert [b.name for b in boxes] == [row["layer"] for row in plan]
        assert [b.volume for b in boxes] == [row["output"] for row in plan]
        assert [b.receptive_field for b in boxes] == [row["receptive_field"] for row in plan]


def test_weight_sharing_of_a_known_conv():
    spec = ArchSpec(blocks=(ConvBlock(16, kernel=3, padding=1, pool="max"),
                            ConvBlock(32, kernel=3, padding=1, batch_norm=False)),
                    head=HeadSpec())
    first, second = weight_sharing(spec, (1, 8, 8), 10)
    # 3·3·1·16 weights + 16 BN scales + 16 BN shifts; a dense 8·8·1 → 8·8·16 layer.
    assert (first.in_volume, first.out_volume) == ("8×8×1", "8×8×16")
    assert first.conv_params == 3 * 3 * 1 * 16 + 2 * 16 == 176
    assert first.dense_params == 64 * 1024 + 1024 == 66_560
    # The second conv reads the pooled 4×4×16 volume; no BN, so 32 biases.
    assert (second.in_volume, second.out_volume) == ("4×4×16", "4×4×32")
    assert second.conv_params == 3 * 3 * 16 * 32 + 32
    assert second.dense_params == 256 * 512 + 512
    assert second.ratio == pytest.approx(second.dense_params / second.conv_params)
    model = build_model(spec, (1, 8, 8), 10)  # the conv count is what torch really holds
    conv = model.features.block2.conv
    assert sum(p.numel() for p in conv.parameters()) == second.conv_params


def test_tile_places_images_row_major_with_blank_gaps():
    images = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)
    mosaic = tile(images, columns=3)
    assert mosaic.shape == (2 * 3 - 1, 3 * 4 - 1)
    np.testing.assert_array_equal(mosaic[0:2, 4:7], images[1])
    np.testing.assert_array_equal(mosaic[3:5, 4:7], images[4])
    assert np.isnan(mosaic[2]).all() and np.isnan(mosaic[:, 3]).all()
    assert np.isnan(mosaic[3:5, 8:11]).all()  # the sixth slot is empty


def test_filter_images_are_the_first_conv_weights_scaled_each():
    model = build_model(ArchSpec(blocks=(ConvBlock(4, kernel=3),)), (1, 8, 8), 10)
    with torch.no_grad():
        model.features.block1.conv.weight.copy_(torch.arange(36.0).reshape(4, 1, 3, 3))
    images = filter_images(model)
    assert images.shape == (4, 3, 3)
    assert images.min() == 0 and images.max() == 1
    np.testing.assert_allclose(images[2], np.arange(9.0).reshape(3, 3) / 8)
    rgb = build_model(ArchSpec(blocks=(ConvBlock(2, kernel=5),)), (3, 8, 8), 10)
    assert filter_images(rgb).shape == (2, 5, 5, 3)


def test_normalise_each_keeps_a_constant_image_finite():
    out = normalise_each(np.ones((2, 3, 3)))
    assert np.isfinite(out).all() and (out == 0).all()


def test_describe_names_blocks_and_head():
    spec = ArchSpec(blocks=(ConvBlock(16, kernel=3, pool="max"), ConvBlock(32, stride=2)),
                    head=HeadSpec(widths=(64,), global_pool="avg"))
    assert describe(spec) == "16c3 relu bn maxpool → 32c3/s2 relu bn → gap fc64"


def test_running_trial_curve_comes_from_intermediate_values():
    t = create_trial(state=TrialState.RUNNING, params={}, distributions={},
                     intermediate_values={0: 0.3, 1: 0.4})
    t.number = 0
    t.datetime_start = datetime(2026, 1, 1)
    (curve,) = learning_curves(trial_rows([t]))
    assert curve.outcome == "running" and curve.val_acc == [0.3, 0.4]


def test_activation_maps_of_the_first_and_last_block():
    from automl_cnn.dashboards.network_data import activation_maps

    spec = ArchSpec(blocks=(ConvBlock(6, kernel=3, padding=1, pool="max"),
                            ConvBlock(4, kernel=3, padding=1)))
    model = build_model(spec, (1, 8, 8), 10).eval()
    images = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8)
    first, last = activation_maps(model, images, ["a", "b", "c"], channels=5)
    assert (first.layer, last.layer) == ("block1", "block2")
    assert first.maps.shape == (3, 5, 4, 4)  # pooled 8→4, first 5 of 6 channels
    assert last.maps.shape == (3, 4, 4, 4)  # only 4 channels exist
    assert first.inputs.shape == (3, 8, 8) and first.inputs.max() <= 1.0
    assert 0.0 <= first.maps.min() and first.maps.max() <= 1.0
    with torch.no_grad():  # the maps are the block's real output (up to per-map scaling)
        raw = model.features.block1(images.float() / 255)[0, 0].numpy()
    np.testing.assert_allclose(first.maps[0, 0], normalise_each(raw[None])[0], atol=1e-6)
