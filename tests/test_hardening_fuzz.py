"""Issue 13: random mutations of the shipped YAML spaces (wrong types, missing and unknown
keys, odd and huge numbers, broken ranges and choices, broken baselines) never produce a
traceback. Each mutated space is either refused with a :class:`UserError` naming the file, or
it loads and every trial it samples is a valid :class:`ArchSpec` whose layer plan is either
computed or :class:`InfeasibleArchitecture` with a reason. No training: an in-memory Optuna
study samples, :func:`plan_layers` checks the shapes."""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path
from typing import Any

import optuna
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automl_cnn.arch import ArchSpec
from automl_cnn.errors import UserError
from automl_cnn.search_spaces import SPACES_DIR, available_spaces
from automl_cnn.search_spaces.parse import parse_space
from automl_cnn.shapes import InfeasibleArchitecture, plan_layers

BASES = {name: yaml.safe_load((SPACES_DIR / f"{name}.yaml").read_text())
         for name in available_spaces()}
INPUTS = ((1, 8, 8), (3, 32, 32))
ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.text(max_size=6),
    st.integers(-3, 5), st.sampled_from([0, 1, 2**31, 10**12, -(10**9)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.5, 1e-300, 1e300, -0.0]),
    st.lists(st.integers(-2, 4), max_size=3),
    st.sampled_from([{}, {"low": 1}, {"choices": []}, {"choices": 5}, {"low": 5, "high": 1},
                     {"low": 1, "high": 10**9}, {"low": 0, "high": 1, "log": True},
                     {"low": 1, "high": 8, "step": 0.5}, {"low": 1, "high": 9, "step": 4},
                     {"low": 1e-9, "high": 1e9, "log": True}, {"low": 1, "high": 3, "log": "yes"},
                     {"choices": [1, "two", None]}, {"choices": [[1]]}, {"low": "a", "high": 2},
                     {"low": 0.0, "high": 0.99999}, {"unknown": 1}]),
)


NUMERIC = [("", "depth"), *(("block", k) for k in ("filters", "kernel", "stride", "padding",
                                                  "pool_size", "pool_stride")),
           *(("head", k) for k in ("layers", "width", "dropout")),
           *(("optim", k) for k in ("lr", "momentum", "weight_decay", "label_smoothing",
                                    "batch_size", "epochs")), ("augment", "crop_padding")]


def paths(raw: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into the YAML tree (mapping keys and list indices)."""
    found = [prefix] if prefix else []
    items = raw.items() if isinstance(raw, dict) else enumerate(raw) if isinstance(
        raw, list) else ()
    for key, value in items:
        found += paths(value, (*prefix, key))
    return found


def mutate(raw: dict[str, Any], draw: Any) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    if draw(st.booleans()):
        raw.pop("baselines", None)  # baselines name every setting: most mutations break them
    for _ in range(draw(st.integers(1, 3))):
        settings_only = [p for p in paths(raw) if p[0] != "baselines"]
        where = draw(st.sampled_from(paths(raw) if draw(st.integers(0, 4)) == 0
                                     else settings_only or [("depth",)]))
        parent = raw
        for key in where[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add", "scale", "range", "range"]))
        last = where[-1]
        if action == "delete" and isinstance(parent, dict):
            parent.pop(last, None)
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["extra", "low", "choices", "params", "name"]))] = \
                copy.deepcopy(draw(ODD_VALUES))  # drawn dicts are shared: never mutate them
        elif action == "scale" and isinstance(parent[last], (int, float)) \
                and not isinstance(parent[last], bool):
            parent[last] = parent[last] * draw(st.sampled_from([-1, 0, 3, 1000, 10**6]))
        elif action == "range":  # an odd or huge range on a numeric setting
            section, key = draw(st.sampled_from(NUMERIC))
            body = raw if not section else raw.setdefault(section, {})
            if isinstance(body, dict):
                body[key] = {"low": draw(st.sampled_from([0, 1, 2, 1e-6, 0.5])),
                             "high": draw(st.sampled_from([1, 3, 64, 10**4, 10**9, 2**40,
                                                           0.9, 1e30]))}
                if draw(st.booleans()):
                    body[key]["step"] = draw(st.sampled_from([1, 2, 7, 0.1, 10**6]))
        else:
            parent[last] = copy.deepcopy(draw(ODD_VALUES))
    return raw


@st.composite
def mutated_spaces(draw: Any) -> tuple[str, Any]:
    name = draw(st.sampled_from(sorted(BASES)))
    raw: Any = mutate(BASES[name], draw)
    if draw(st.integers(0, 19)) == 0:
        raw = copy.deepcopy(draw(ODD_VALUES))  # not a mapping at all
    return name, raw


def sample_and_plan(space: Any) -> None:
    """Sample like a search does (baselines first), then plan each spec on two inputs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's notes on odd steps and enqueued params
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for baseline in space.baselines:
            study.enqueue_trial(baseline.params)
        for _ in range(len(space.baselines) + 4):
            trial = study.ask()
            spec = space.sample(trial, flip_ok=True)
            assert isinstance(spec, ArchSpec)
            assert ArchSpec.from_json(spec.to_json()) == spec
            for shape in INPUTS:
                try:
                    plan = plan_layers(spec, shape, num_classes=10)
                except InfeasibleArchitecture as exc:
                    assert str(exc)
                    continue
                assert plan.params > 0 and plan.receptive_field >= 1
            study.tell(trial, 0.5)


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated_spaces())
def test_mutated_spaces_load_cleanly_or_are_refused(case: tuple[str, Any]) -> None:
    name, raw = case
    path = Path(f"/fuzz/{name}-mutated.yaml")
    try:
        space = parse_space(raw, path)
    except UserError as exc:
        message = str(exc)
        assert str(path) in message and "\n" not in message.strip()
        return
    for param in space.params.values():
        for bound in (param.low, param.high):
            assert bound is None or math.isfinite(bound)
    sample_and_plan(space)


def test_the_shipped_spaces_sample_and_plan() -> None:
    for name, raw in BASES.items():
        sample_and_plan(parse_space(raw, Path(f"{name}.yaml")))
