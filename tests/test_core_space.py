"""YAML search spaces: what they sample, and how they refuse bad files."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from automl_cnn.search_spaces import SpaceError, available_spaces, load_space


def test_shipped_spaces_exist_and_cover_every_knob() -> None:
    assert {"default", "tiny"} <= set(available_spaces())
    default, tiny = load_space("default"), load_space("tiny")

    def values(key: str) -> set:
        out: set = set()
        for space in (default, tiny):
            p = space.params[key]
            out |= set(p.choices) if p.choices else {p.value}
        return out

    assert values("block.activation") == {"relu", "leaky_relu", "gelu", "sigmoid", "tanh"}
    assert values("block.pool") == {"max", "avg", "l2", "none"}
    assert values("optim.name") == {"adam", "adamw", "sgd"}
    assert values("optim.schedule") == {"constant", "cosine", "onecycle"}
    assert default.params["block.batch_norm"].choices == (True, False)
    assert default.params["optim.lr"].log
    # The default space holds the strong-recipe ingredients and starts from baselines.
    assert default.baselines and default.params["optim.label_smoothing"].high > 0
    assert default.max_epochs > default.min_epochs


def test_per_block_parameters_exist_only_for_existing_blocks() -> None:
    space = load_space("default")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(30):
        trial = study.ask()
        spec = space.sample(trial, flip_ok=False)
        blocks = {name.split(".")[0] for name in trial.params if name.startswith("block")}
        assert blocks == {f"block{i}" for i in range(1, spec.depth + 1)}
        assert "augment.flip" not in trial.params and not spec.train.flip
        for i, block in enumerate(spec.blocks, start=1):
            assert (f"block{i}.pool_size" in trial.params) == (block.pool != "none")
        assert ("optim.momentum" in trial.params) == (spec.train.optimizer == "sgd")
        study.tell(trial, 0.5)


def test_space_by_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("depth: 1\nblock: {filters: {choices: [4, 8]}}\noptim: {epochs: 2}\n")
    space = load_space(str(path))
    assert space.name == "mine" and space.max_epochs == 2
    assert space.params["block.filters"].choices == (4, 8)


BAD = [
    ("block: {kernal: 3}", ["'kernal'", "Valid keys", "kernel"]),
    ("block: {filters: {choices: []}}", ["block.filters.choices", "non-empty"]),
    ("optim: {lr: {low: 0.1, high: 0.01}}", ["optim.lr", "low=0.1 > high=0.01"]),
    ("optim: {weight_decay: {low: 0.0, high: 0.01, log: true}}",
     ["optim.weight_decay", "log-scaled", "positive low"]),
    ("block: {filters: {choices: [16, big]}}", ["block.filters", "an integer from 1 to 65536", "'big'"]),
    ("block: {activation: {choices: [relu, swish]}}", ["block.activation", "'swish'"]),
    ("optimizer: {}", ["'optimizer'", "top level"]),
    ("baselines: [{name: b, params: {depth: 9}}]", ["baseline 'b'", "depth=9", "outside"]),
]


@pytest.mark.parametrize(("text", "needles"), BAD)
def test_bad_space_files_name_file_key_and_fix(tmp_path: Path, text: str,
                                               needles: list[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("depth: {low: 1, high: 2}\n" + text + "\n")
    with pytest.raises(SpaceError) as info:
        load_space(str(path))
    message = str(info.value)
    assert str(path) in message
    for needle in needles:
        assert needle in message


def test_unknown_space_lists_shipped_ones() -> None:
    with pytest.raises(SpaceError, match="default, tiny"):
        load_space("huge")


def test_baselines_sample_exactly_their_params() -> None:
    for name in ("default", "tiny"):
        space = load_space(name)
        for baseline in space.baselines:
            trial = optuna.trial.FixedTrial(baseline.params)
            spec = space.sample(trial)
            assert spec.depth == baseline.params["depth"]
            raw = yaml.safe_load(space.path.read_text())
            assert any(b["name"] == baseline.name for b in raw["baselines"])


def test_accuracy_is_always_the_first_objective() -> None:
    from automl_cnn.config import SearchConfig

    config = SearchConfig(objectives=("params", "val_acc", "flops"), pruner="none").check()
    assert config.objectives == ("val_acc", "params", "flops")
    assert config.directions == ["maximize", "minimize", "minimize"]


def test_neighbours_keep_the_first_baseline_but_a_few_kinds_each_varied_once() -> None:
    from automl_cnn.search_spaces import NEIGHBOUR_KINDS, space_key

    space = load_space("default")
    base = space.baselines[0].params
    found = space.neighbours(8, seed=0)
    assert len(found) == 8
    left_out = []
    for params in found:
        assert params.items() <= base.items()  # the baseline's own values, fewer of them
        kinds = {space_key(k) for k in base if k not in params}
        assert 1 <= len(kinds) <= NEIGHBOUR_KINDS
        assert all(space.params[k].tunable for k in kinds)  # only what the sampler chooses
        left_out += sorted(kinds)
    assert len(left_out) == len(set(left_out))  # each kind varied by one neighbour
    assert space.neighbours(8, seed=0) == found  # seeded: a resumed study queues the same
    assert space.neighbours(8, seed=1) != found
    assert len(space.neighbours(3, seed=0)) == 3 and space.neighbours(0, seed=0) == []
    # Every neighbour samples into a valid architecture with the sampler filling the rest.
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for params in found:
        study.enqueue_trial(params)
        trial = study.ask()
        space.sample(trial)
        # every value it fixes is the one asked (a block the drawn depth drops is not asked)
        assert all(trial.params.get(k, v) == v for k, v in params.items())
        assert "optim.lr" not in params or trial.params["optim.lr"] == params["optim.lr"]
        study.tell(trial, 0.0)


def test_a_new_study_queues_the_neighbours_after_the_baselines(tmp_path: Path) -> None:
    from automl_cnn.config import SearchConfig
    from automl_cnn.record import records
    from automl_cnn.runners.search import run_search

    outcome = run_search(SearchConfig(trials=4, space="tiny", mlflow=False,
                                      out=str(tmp_path / "run")), progress=False)
    space = load_space("tiny")
    recs = records(outcome.study)
    assert len(outcome.study.trials) == 4  # --trials 4: nothing left queued beyond them
    assert recs[0].baseline == space.baselines[0].name
    expected = space.neighbours(3, seed=0)
    for rec, fixed in zip(recs[1:], expected):
        assert rec.baseline is None  # digits asks no flip: a fixed flip goes unasked
        assert all(rec.hyperparameters.get(k, v) == v for k, v in fixed.items())
        assert len(set(fixed) & set(rec.hyperparameters)) >= len(fixed) - 1
