"""Validate a space file's YAML and turn it into a :class:`SearchSpace`.

Every problem is reported before anything trains, naming the file, the key and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import (
    RULES, TOP_KEYS, Baseline, Param, Rule, SearchSpace, SpaceError,
)

# Settings a space may leave out, and the fixed value they then take.
DEFAULTS: dict[str, Any] = {
    "depth": 2, "block.filters": 32, "block.kernel": 3, "block.stride": 1, "block.padding": 1,
    "block.activation": "relu", "block.batch_norm": True, "block.pool": "none",
    "block.pool_size": 2, "block.pool_stride": 2, "head.layers": 0, "head.width": 128,
    "head.dropout": 0.0, "head.activation": "relu", "head.global_pool": "avg",
    "optim.name": "adamw", "optim.lr": 3e-3, "optim.momentum": 0.9, "optim.weight_decay": 5e-4,
    "optim.schedule": "onecycle", "optim.label_smoothing": 0.1, "optim.batch_size": 64,
    "optim.epochs": 10, "augment.crop_padding": 0, "augment.flip": False,
}


def parse_space(raw: Any, path: Path) -> SearchSpace:
    where = str(path)
    if not isinstance(raw, dict):
        raise SpaceError(f"{where}: the file must hold a mapping of sections "
                         f"({', '.join(sorted(TOP_KEYS))}), but holds {type(raw).__name__}.")
    _no_unknown(raw, TOP_KEYS, where, "top level")
    params: dict[str, Param] = {}
    for section, rules in RULES.items():
        body = raw if section == "" else raw.get(section) or {}
        if not isinstance(body, dict):
            raise SpaceError(f"{where}: section {section!r} must be a mapping of settings, "
                             f"but got {body!r}.")
        if section:
            _no_unknown(body, set(rules), where, f"section {section!r}")
        for key, rule in rules.items():
            name = f"{section}.{key}" if section else key
            spec = body.get(key, DEFAULTS[name])
            params[name] = _parse_param(name, spec, rule, where)
    space = SearchSpace(
        name=path.stem, path=path, description=str(raw.get("description", "")),
        params=params, baselines=(),
    )
    listed = raw.get("baselines") or []
    if not isinstance(listed, list):
        raise SpaceError(f"{where}: baselines must be a list of {{name, params}} entries, but "
                         f"got {listed!r}. Write baselines: [] for none.")
    baselines = tuple(_parse_baseline(b, space, where) for b in listed)
    return SearchSpace(space.name, path, space.description, params, baselines)


def _no_unknown(body: dict[str, Any], known: set[str], where: str, what: str) -> None:
    unknown = sorted(set(body) - known)
    if unknown:
        raise SpaceError(f"{where}: unknown key {unknown[0]!r} in {what}. "
                         f"Valid keys: {', '.join(sorted(known))}.")


def _check_value(name: str, value: Any, rule: Rule, where: str) -> Any:
    if rule.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    ok_type = isinstance(value, rule.kind) and not (rule.kind is int and isinstance(value, bool))
    if not ok_type or not rule.check(value):
        raise SpaceError(f"{where}: {name} must be {rule.expect}, but got {value!r}. "
                         "Fix the value in the space file.")
    return value


def _parse_param(name: str, spec: Any, rule: Rule, where: str) -> Param:
    if not isinstance(spec, dict):
        return Param(name, value=_check_value(name, spec, rule, where))
    keys = set(spec)
    if "choices" in keys:
        _no_unknown(spec, {"choices"}, where, name)
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{where}: {name}.choices must be a non-empty list, but got "
                             f"{choices!r}. List at least one value, or give a fixed value.")
        return Param(name, choices=tuple(_check_value(name, c, rule, where) for c in choices))
    _no_unknown(spec, {"low", "high", "log", "step"}, where, name)
    if rule.kind not in (int, float):
        raise SpaceError(f"{where}: {name} takes choices or a fixed value, not a range; write "
                         f"{name.split('.')[-1]}: {{choices: [...]}}.")
    if "low" not in keys or "high" not in keys:
        raise SpaceError(f"{where}: {name} needs both low and high (or choices), but got "
                         f"{spec!r}.")
    low = _check_value(name, spec["low"], rule, where)
    high = _check_value(name, spec["high"], rule, where)
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"{where}: {name}.log must be true or false, but got {log!r}.")
    if low > high:
        raise SpaceError(f"{where}: {name} has low={low!r} > high={high!r}; swap them.")
    if log and low <= 0:
        raise SpaceError(f"{where}: {name} is log-scaled but its range [{low}, {high}] reaches "
                         "zero or below; use a positive low, or drop log: true.")
    step = spec.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float))
                             or not step > 0 or log):
        raise SpaceError(f"{where}: {name}.step must be a positive number and cannot be combined "
                         f"with log, but got step={step!r}, log={log!r}.")
    if step is not None and rule.kind is int and not isinstance(step, int):
        raise SpaceError(f"{where}: {name} is a whole number, so its step must be one too, but "
                         f"got step={step!r}. Write e.g. step: 1 or step: 2.")
    return Param(name, low=low, high=high, log=log, step=step, is_int=rule.kind is int)


class _ParamsTrial:
    """Answers ``suggest_*`` from a baseline's params, checking each value against the space."""

    def __init__(self, params: dict[str, Any], label: str) -> None:
        self.params, self.label, self.used = params, label, set()

    def _get(self, name: str, ok: bool, expect: str) -> Any:
        if name not in self.params:
            raise SpaceError(f"{self.label}: missing parameter {name!r}; add it to the baseline.")
        self.used.add(name)
        if not ok:
            raise SpaceError(f"{self.label}: {name}={self.params[name]!r} is outside the space "
                             f"({expect}); change the baseline or widen the space.")
        return self.params[name]

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        return self._get(name, self.params.get(name) in choices, f"choices {choices}")

    def suggest_int(self, name: str, low: int, high: int, **_: Any) -> int:
        v = self.params.get(name)
        return self._get(name, isinstance(v, int) and low <= v <= high, f"{low}..{high}")

    def suggest_float(self, name: str, low: float, high: float, **_: Any) -> float:
        v = self.params.get(name)
        return self._get(name, isinstance(v, (int, float)) and low <= v <= high,
                         f"{low}..{high}")


def _parse_baseline(raw: Any, space: SearchSpace, where: str) -> Baseline:
    if not isinstance(raw, dict) or set(raw) != {"name", "params"}:
        raise SpaceError(f"{where}: each baseline needs exactly 'name' and 'params', "
                         f"but got {raw!r}.")
    label = f"{where}: baseline {raw['name']!r}"
    params = raw["params"]
    if not isinstance(params, dict):
        raise SpaceError(f"{label}: params must be a mapping of parameter names to values.")
    trial = _ParamsTrial(params, label)
    try:
        space.sample(trial, flip_ok=True)
    except (ValueError, TypeError) as exc:  # SpecError and friends
        raise SpaceError(f"{label}: {exc}") from None
    unused = sorted(set(params) - trial.used)
    if unused:
        raise SpaceError(f"{label}: parameter {unused[0]!r} is not searched by this space "
                         "(fixed, or not a parameter name); remove it from the baseline.")
    return Baseline(str(raw["name"]), dict(params))
