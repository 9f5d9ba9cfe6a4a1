"""The report's "Pareto front and limits" section: every non-dominated trial with all its
objectives (the same points, in the same order, as ``summary.json`` and
``automl-cnn best --pareto``), and how many architectures the hard limits kept from training."""

from __future__ import annotations

import html

from automl_cnn.config import SearchConfig
from automl_cnn.front import pareto_points
from automl_cnn.limits import LIMITS, Limits
from automl_cnn.record import Outcome, TrialRecord

from .sections import Html, Notice, Section


def front_table(records: list[TrialRecord], config: SearchConfig) -> Html | Notice:
    points = pareto_points(records, config)
    if not points:
        return Notice("No trial has completed yet, so there is no Pareto front.")
    names = list(points[0].values)
    head = ["point", "trial", *names, "latency measured on"]
    rows = []
    for p in points:
        cells = [p.index, p.trial, *(_show(n, v) for n, v in p.values.items()),
                 p.latency_device or "-"]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return Html(f"<table class='top'><thead><tr>{header}</tr></thead><tbody>"
                + "".join(rows) + "</tbody></table>")


def _show(name: str, value: float) -> str:
    if name == "val_acc":
        return f"{value:.4f}"
    return f"{value:.3f} ms" if name == "latency" else f"{value:,.0f}"


def limits_text(records: list[TrialRecord], config: SearchConfig) -> str:
    """One sentence: the limits, and the trials over each (apart from shapes that do not fit)."""
    active = Limits.of(config).active
    if not active:
        return "No hard limits were set (--max-params, --max-flops, --max-latency-ms, " \
               "--max-memory-mb)."
    over = {name: sum(1 for r in records if r.limit == name) for name in active}
    shapes = sum(1 for r in records if r.outcome == Outcome.INFEASIBLE and r.limit is None)
    parts = [f"{LIMITS[n][1]} {b:g}: {over[n]} over" for n, b in active.items()]
    return (f"Hard limits: {'; '.join(parts)}. These {sum(over.values())} architectures were "
            f"recorded and never trained, apart from the {shapes} whose shapes do not fit.")


def front_section(records: list[TrialRecord], config: SearchConfig | None) -> Section:
    if config is None:
        return Section("Pareto front and limits", "", [Notice("The study records no settings.")])
    intro = ("The completed trials no other completed trial beats on every objective at once; "
             "load one with automl_cnn.load_best(RUN_DIR, pareto=I) or ship it with "
             "automl-cnn export --pareto I. " + limits_text(records, config))
    return Section("Pareto front and limits", html.escape(intro),
                   [front_table(records, config)])


__all__ = ["front_section", "front_table", "limits_text"]
