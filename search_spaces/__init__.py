"""Search spaces written in YAML, and the only code that calls ``trial.suggest_*``.

A space file lists, per section, either a fixed value or a distribution for each setting:

    depth: {low: 1, high: 4}            # integer range
    block:
      kernel: {choices: [3, 5]}         # categorical
    optim:
      lr: {low: 1.0e-4, high: 1.0e-2, log: true}
      epochs: 10                        # fixed: not searched

Parameter names are stable strings (``depth``, ``block2.kernel``, ``head.dropout``,
``optim.lr`` ...). Per-block parameters exist only for blocks that exist, pooling size and
stride only when the block pools, momentum only for sgd, flips only for datasets where a
mirrored image keeps its label.

Example:
    >>> import optuna
    >>> space = load_space("tiny")
    >>> spec = space.sample(optuna.trial.FixedTrial(space.baselines[0].params))
    >>> spec.depth >= 1
    True
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from automl_cnn.arch import (
    ACTIVATIONS, GLOBAL_POOLS, OPTIMIZERS, POOLS, SCHEDULES, ArchSpec, ConvBlock, HeadSpec,
    TrainSpec,
)
from automl_cnn.errors import UserError

SPACES_DIR = Path(__file__).resolve().parent

__all__ = ["SPACES_DIR", "Baseline", "Param", "SearchSpace", "SpaceError", "available_spaces",
           "load_space", "space_key"]


class SpaceError(UserError):
    """A search-space file that cannot be used; the message names the file, key and fix."""


@dataclass(frozen=True)
class Rule:
    """What one YAML key may hold: a value kind and a check on each value."""

    kind: type  # int, float, bool or str
    check: Any  # callable value -> bool
    expect: str  # words for the error message


def _in(allowed: tuple[str, ...]) -> Rule:
    return Rule(str, lambda v: v in allowed, f"one of {', '.join(allowed)}")


def _ints(low: int, high: int) -> Rule:
    return Rule(int, lambda v: low <= v <= high, f"an integer from {low} to {high}")


# Upper ends: far beyond any sensible CNN, low enough that a typo (an extra zero or three)
# fails here instead of sampling a 10,000-block stack or a 10^12-filter layer.
_POS = _ints(1, 65536)  # filters, widths, sizes, strides, batch size, epochs
_NONNEG = _ints(0, 1024)  # padding, crop padding
_DEPTH = _ints(1, 64)  # conv blocks (no skip connections: deeper plain stacks do not train)
_FC = _ints(0, 16)  # hidden fully connected layers
_UNIT = Rule(float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")
_BOOL = Rule(bool, lambda v: True, "true or false")

RULES: dict[str, dict[str, Rule]] = {
    "": {"depth": _DEPTH},
    "block": {"filters": _POS, "kernel": _POS, "stride": _POS, "padding": _NONNEG,
              "activation": _in(ACTIVATIONS), "batch_norm": _BOOL, "pool": _in(POOLS),
              "pool_size": _POS, "pool_stride": _POS},
    "head": {"layers": _FC, "width": _POS, "dropout": _UNIT,
             "activation": _in(ACTIVATIONS), "global_pool": _in(GLOBAL_POOLS)},
    "optim": {"name": _in(OPTIMIZERS),
              "lr": Rule(float, lambda v: 0 < v <= 100, "a number in (0, 100]"),
              "momentum": _UNIT,
              "weight_decay": Rule(float, lambda v: 0 <= v <= 100, "a number in [0, 100]"),
              "schedule": _in(SCHEDULES), "label_smoothing": _UNIT, "batch_size": _POS,
              "epochs": _POS},
    "augment": {"crop_padding": _NONNEG, "flip": _BOOL},
}
TOP_KEYS = {"description", "depth", "block", "head", "optim", "augment", "baselines"}


@dataclass(frozen=True)
class Param:
    """One setting: fixed (``value``), categorical (``choices``) or a range (``low``..``high``)."""

    name: str
    value: Any = None
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    is_int: bool = False

    @property
    def tunable(self) -> bool:
        """Whether the sampler chooses this setting (a fixed value is not a choice)."""
        return (self.choices is not None and len(self.choices) > 1) or (
            self.low is not None and self.high is not None and self.high > self.low)

    def suggest(self, trial: Any, name: str | None = None) -> Any:
        name = name or self.name
        if self.choices is not None:
            return trial.suggest_categorical(name, list(self.choices))
        if self.low is None:
            return self.value
        if self.is_int:
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log,
                                     step=int(self.step or 1))
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)

    @property
    def upper(self) -> Any:
        """The largest value this setting can take."""
        if self.choices is not None:
            return max(self.choices)
        return self.value if self.low is None else self.high


def space_key(name: str) -> str:
    """The space's key of trial parameter ``name``: ``block3.kernel`` -> ``block.kernel``,
    ``head.width2`` -> ``head.width``; other names are their own key.

        >>> space_key("block3.kernel"), space_key("head.width2"), space_key("optim.lr")
        ('block.kernel', 'head.width', 'optim.lr')
    """
    return re.sub(r"^block\d+\.", "block.", re.sub(r"^head\.width\d+$", "head.width", name))


#: The most kinds of parameter one neighbour of the first baseline leaves to the sampler.
NEIGHBOUR_KINDS = 3


@dataclass(frozen=True)
class Baseline:
    """A known-good architecture, as trial params, enqueued as one of the first trials."""

    name: str
    params: dict[str, Any]


@dataclass(frozen=True)
class SearchSpace:
    """A parsed, validated space file. :meth:`sample` turns a trial into an :class:`ArchSpec`."""

    name: str
    path: Path
    description: str
    params: dict[str, Param]  # keyed "depth", "block.kernel", "optim.lr", ...
    baselines: tuple[Baseline, ...]

    def p(self, key: str) -> Param:
        return self.params[key]

    @property
    def max_epochs(self) -> int:
        """The epoch budget's upper end: the pruners' maximum resource."""
        return int(self.params["optim.epochs"].upper)

    @property
    def min_epochs(self) -> int:
        p = self.params["optim.epochs"]
        if p.choices is not None:
            return int(min(p.choices))
        return int(p.value if p.low is None else p.low)

    def sample(self, trial: Any, *, flip_ok: bool = True) -> ArchSpec:
        """Ask ``trial`` for every parameter and assemble the architecture."""
        blocks = tuple(self._sample_block(trial, i)
                       for i in range(1, self.p("depth").suggest(trial) + 1))
        n_fc = self.p("head.layers").suggest(trial)
        head = HeadSpec(
            widths=tuple(self.p("head.width").suggest(trial, f"head.width{j}")
                         for j in range(1, n_fc + 1)),
            dropout=float(self.p("head.dropout").suggest(trial)),
            activation=self.p("head.activation").suggest(trial),
            global_pool=self.p("head.global_pool").suggest(trial),
        )
        optimizer = self.p("optim.name").suggest(trial)
        train = TrainSpec(
            optimizer=optimizer,
            lr=float(self.p("optim.lr").suggest(trial)),
            momentum=float(self.p("optim.momentum").suggest(trial)) if optimizer == "sgd"
            else TrainSpec.momentum,
            weight_decay=float(self.p("optim.weight_decay").suggest(trial)),
            schedule=self.p("optim.schedule").suggest(trial),
            label_smoothing=float(self.p("optim.label_smoothing").suggest(trial)),
            batch_size=self.p("optim.batch_size").suggest(trial),
            epochs=self.p("optim.epochs").suggest(trial),
            crop_padding=self.p("augment.crop_padding").suggest(trial),
            flip=bool(self.p("augment.flip").suggest(trial)) if flip_ok else False,
        )
        return ArchSpec(blocks=blocks, head=head, train=train)

    def neighbours(self, count: int, *, seed: int,
                   around: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """``count`` partial trials around the first baseline (or the trial parameters
        ``around``): each keeps its parameters but those of a few kinds (every block's filters,
        say, and the learning rate), which the sampler draws. The kinds the baseline sets are
        shuffled with ``seed`` and dealt out, up to :data:`NEIGHBOUR_KINDS` to a trial, so
        the neighbours together vary each kind once where they can.

        Most of a wide space's corners do not learn in a short training (on clutter, 13 random
        draws of the default space scored 0.04-0.21 validation accuracy at 12 epochs, where
        the first baseline scored 0.72; README, *Where the lottery comes from*): a search with
        a budget of a few dozen trials finds its better networks near the recipes that work.

        Example:
            >>> space = load_space("default")
            >>> first = space.neighbours(2, seed=0)[0]
            >>> 0 < len(space.baselines[0].params) - len(first) <= 4 * NEIGHBOUR_KINDS
            True
        """
        import random

        if (around is None and not self.baselines) or count < 1:
            return []
        base = self.baselines[0].params if around is None else around

        kinds = sorted({key for key in map(space_key, base)
                        if (param := self.params.get(key)) is not None and param.tunable})
        random.Random(seed).shuffle(kinds)
        per = min(NEIGHBOUR_KINDS, max(1, -(-len(kinds) // count)))
        dealt = [set(kinds[i * per:(i + 1) * per]) for i in range(count)]
        return [{k: v for k, v in base.items() if space_key(k) not in left}
                for left in dealt if left]

    def _sample_block(self, trial: Any, i: int) -> ConvBlock:
        def s(key: str) -> Any:
            return self.p(f"block.{key}").suggest(trial, f"block{i}.{key}")

        values = {k: s(k) for k in ("filters", "kernel", "stride", "padding", "activation",
                                    "batch_norm", "pool")}
        if values["pool"] != "none":
            values["pool_size"] = s("pool_size")
            values["pool_stride"] = s("pool_stride")
        return ConvBlock(**values)


def available_spaces() -> list[str]:
    """Names of the spaces shipped in ``search_spaces/``."""
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def load_space(name_or_path: str | Path) -> SearchSpace:
    """Load a shipped space by name (``"default"``, ``"tiny"``) or any YAML file by path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = SPACES_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise SpaceError(
                f"unknown search space {str(name_or_path)!r}. Shipped spaces: "
                f"{', '.join(available_spaces())}; or pass the path of a .yaml file."
            )
    if not path.exists():
        raise SpaceError(f"search space file {str(path)!r} does not exist; check the path.")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpaceError(f"{path}: not valid YAML ({exc}).") from None
    from .parse import parse_space

    return parse_space(raw, path)
