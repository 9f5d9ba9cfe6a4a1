"""The Pareto front of points with any number of objectives, each maximised or minimised.

One function, used by ``summary.json``, ``automl-cnn best --pareto``, ``load_best(pareto=i)``,
export, MLflow and the dashboards' accuracy-against-cost plots.

Example:
    >>> pareto_front([(0.9, 100), (0.8, 50), (0.7, 80), (0.9, 120)], ["maximize", "minimize"])
    [0, 1]
"""

from __future__ import annotations

from collections.abc import Sequence

DIRECTIONS = ("maximize", "minimize")


def _oriented(point: Sequence[float], signs: Sequence[float]) -> tuple[float, ...]:
    """The point with every objective turned into "smaller is better"."""
    return tuple(s * float(v) for s, v in zip(signs, point))


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """a is no worse than b in every objective and better in one (smaller is better)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_front(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices of the points no other point dominates, in a stable order: best first in the
    first objective, then the next (ties by index). Of exact duplicates only the first counts.
    """
    for d in directions:
        if d not in DIRECTIONS:
            raise ValueError(f"a direction must be maximize or minimize, but got {d!r}.")
    signs = [-1.0 if d == "maximize" else 1.0 for d in directions]
    keyed = [_oriented(p, signs) for p in points]
    # Lexicographic order: a point can only be dominated by (or equal) a point before it.
    order = sorted(range(len(keyed)), key=lambda i: (keyed[i], i))
    front: list[int] = []
    for i in order:
        if not any(keyed[j] == keyed[i] or _dominates(keyed[j], keyed[i]) for j in front):
            front.append(i)
    return front


__all__ = ["DIRECTIONS", "pareto_front"]
