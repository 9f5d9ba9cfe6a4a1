"""A hard wall-clock budget for a whole command: parse ``--timeout``, split it into phases.

``--timeout 20m`` bounds everything the command does: the search, the final fit of the winner,
the test evaluation and the report. :class:`Budget` is built once when the command starts and
answers, at any moment, how long each phase has left. The schedule is planned to end in time
(the final fit's epochs are sized to its share); the deadlines are also enforced as guards (a
trial running at the search deadline is stopped and recorded as interrupted for "budget").

Example:
    >>> parse_duration("1h30m"), parse_duration("90s"), parse_duration("1.5h")
    (5400.0, 90.0, 5400.0)
    >>> budget = Budget.start(600, final_share=0.3, clock=lambda: 0.0)
    >>> round(budget.search_left(), 1), round(budget.final_left(), 1)
    (408.8, 584.0)
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from automl_cnn.errors import UserError

UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhd])", re.IGNORECASE)

#: Default share of the budget for the final fit of the winner on train + validation
#: (chosen with benchmarks/bench_budget.py; see the README's budget section).
FINAL_SHARE = 0.5
#: Kept back at the end for the test evaluation, the report and summary.json: a fixed part
#: (loading, Plotly import, writing the HTML: ~2-4 s measured on a 2-core CPU) plus a sliver of
#: the budget, never more than a tenth of it.
RESERVE_SECONDS = 4.0
RESERVE_SHARE = 0.02
#: On a busy machine everything slows down together: the end (test, report) took about a
#: tenth of the start (imports, data) on a 2-core CPU at load 12-20 (3.7 s after 70 s, 10 s
#: after 89 s, 11 s after 97 s), so the reserve grows to this share of the measured start.
STARTUP_RESERVE_FACTOR = 0.15


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``text``: ``90``, ``90s``, ``20m``, ``1h30m``, ``1.5h``, ``2d`` (a plain
    number is seconds). Raises :class:`UserError` naming the text on anything else."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        seconds = _parse_text(str(text))
    if not seconds > 0 or seconds == float("inf"):
        raise UserError(f"--timeout must be a positive duration, but got {text!r}. Write it as "
                        "seconds (90) or with units: 90s, 20m, 1h30m, 1.5h.")
    return seconds


def _parse_text(text: str) -> float:
    clean = text.strip().replace(" ", "")
    try:
        return float(clean)
    except ValueError:
        pass
    parts = _PART.findall(clean)
    if not clean or "".join(n + u for n, u in parts).lower() != clean.lower():
        raise UserError(f"--timeout {text!r} is not a duration. Write it as seconds (90) or "
                        "with units s, m, h, d: 90s, 20m, 1h30m, 1.5h.")
    return sum(float(n) * UNITS[u.lower()] for n, u in parts)


def format_duration(seconds: float) -> str:
    """A short human duration: ``14m``, ``2m05s``, ``45s``, ``1h20m``."""
    s = max(0, int(round(seconds)))
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 600:
        return f"{s // 60}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def reserve_for(total: float) -> float:
    """Seconds kept for the test evaluation, report and summary at the end of a budget."""
    return min(RESERVE_SECONDS + RESERVE_SHARE * total, 0.1 * total)


@dataclass(frozen=True)
class Budget:
    """A wall budget started at ``started`` (a ``clock()`` reading), split into phases:

    ``[search | final fit (final_share of what is left after the reserve) | reserve]``.
    The phases' ends are fixed at the start; a phase that ends early leaves its time to the
    next one, since every phase reads the clock against the same fixed end points.
    """

    total: float
    started: float
    final_share: float = FINAL_SHARE
    reserve: float = 0.0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    @classmethod
    def start(cls, total: float, *, final_share: float = FINAL_SHARE,
              reserve: float | None = None, started: float | None = None,
              clock: Callable[[], float] = time.monotonic) -> Budget:
        """A budget of ``total`` seconds from ``started`` (a ``clock()`` reading; now)."""
        if not 0.0 <= final_share < 1.0:
            raise UserError(f"--final-share must be at least 0 and below 1, but got "
                            f"{final_share}. It is the share of --timeout given to the final "
                            "fit, e.g. 0.3.")
        kept = reserve_for(total) if reserve is None else reserve
        return cls(total, clock() if started is None else started, final_share, kept, clock)

    def after_startup(self) -> Budget:
        """The budget with its reserve grown to :data:`STARTUP_RESERVE_FACTOR` × the seconds
        spent so far (imports, data, study), never above a quarter of the budget."""
        grown = max(self.reserve, STARTUP_RESERVE_FACTOR * self.elapsed())
        return replace(self, reserve=min(grown, 0.25 * self.total))

    def reserving(self, seconds: float) -> Budget:
        """The budget with ``seconds`` more kept for the end (the test split's scoring, as
        measured before the search), never above a quarter of the budget."""
        return replace(self, reserve=min(self.reserve + max(0.0, seconds), 0.25 * self.total))

    # -- fixed end points (clock readings) ----------------------------------------------------
    @property
    def end(self) -> float:
        return self.started + self.total

    @property
    def final_end(self) -> float:
        return self.end - self.reserve

    @property
    def search_end(self) -> float:
        return self.final_end - self.final_share * (self.total - self.reserve)

    # -- what is left now --------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.clock() - self.started

    def left(self) -> float:
        return max(0.0, self.end - self.clock())

    def search_left(self) -> float:
        return max(0.0, self.search_end - self.clock())

    def final_left(self) -> float:
        return max(0.0, self.final_end - self.clock())

    @property
    def search_seconds(self) -> float:
        return self.search_end - self.started


__all__ = ["FINAL_SHARE", "Budget", "format_duration", "parse_duration", "reserve_for"]
