"""Plain data → Plotly figures for the search as a whole. Thin: no numbers are computed here.

Only SVG trace types (plus parallel coordinates, Plotly's one WebGL trace, as Optuna uses it), so
the report draws in any browser; trials of one outcome share a trace (lines split by ``None``),
which keeps a 1,000-trial report small and quick to open.

Example:
    >>> fig = history_figure(optimization_history(rows))
    >>> fig.write_html("history.html")
"""

from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .data import (
    OUTCOME_COLORS,
    Curve,
    History,
    Importances,
    ParallelData,
    PruningSavings,
    SliceData,
    Span,
    Tradeoff,
)

ACC = "validation accuracy"
FRONT = "#d62828"


def base_layout(fig: go.Figure, *, height: int = 420, **layout: Any) -> go.Figure:
    layout.setdefault("margin", dict(l=60, r=20, t=30, b=50))
    fig.update_layout(template="plotly_white", height=height,
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0), **layout)
    return fig


def history_figure(h: History) -> go.Figure:
    fig = go.Figure()
    for outcome in ("complete", "pruned"):
        idx = [i for i, o in enumerate(h.outcomes) if o == outcome]
        fig.add_scatter(
            x=[h.numbers[i] for i in idx], y=[h.values[i] for i in idx], mode="markers",
            name=f"{outcome} (last epoch)" if outcome == "pruned" else outcome,
            marker=dict(color=OUTCOME_COLORS[outcome], size=7,
                        symbol="x" if outcome == "pruned" else "circle",
                        opacity=0.6 if outcome == "pruned" else 0.9),
            hovertemplate="trial %{x}<br>val_acc %{y:.4f}<extra></extra>")
    fig.add_scatter(x=h.best_numbers, y=h.best_so_far, mode="lines", name="best so far",
                    line=dict(color=FRONT, width=2, shape="hv"),
                    hovertemplate="best after trial %{x}: %{y:.4f}<extra></extra>")
    return base_layout(fig, xaxis_title="trial", yaxis_title=ACC)


def _joined(curves: list[Curve]) -> tuple[list[Any], list[Any], list[Any]]:
    """Many curves as one line trace: points separated by None, hover text per point."""
    xs: list[Any] = []
    ys: list[Any] = []
    texts: list[Any] = []
    for c in curves:
        xs += c.epochs + [None]
        ys += c.val_acc + [None]
        texts += [f"trial {c.number}"] * len(c.epochs) + [None]
    return xs, ys, texts


def curves_figure(curves: list[Curve]) -> go.Figure:
    fig = go.Figure()
    for outcome, color in OUTCOME_COLORS.items():
        group = [c for c in curves if c.outcome == outcome]
        if not group:
            continue
        xs, ys, texts = _joined(group)
        fig.add_scatter(x=xs, y=ys, text=texts, mode="lines", name=outcome,
                        line=dict(color=color, width=1), opacity=0.55,
                        hovertemplate="%{text}<br>epoch %{x}: %{y:.4f}<extra></extra>")
    stopped = [c for c in curves if c.stopped_epoch is not None]
    if stopped:
        fig.add_scatter(x=[c.stopped_epoch for c in stopped], y=[c.val_acc[-1] for c in stopped],
                        text=[f"trial {c.number}" for c in stopped], mode="markers",
                        name="pruned here", marker=dict(symbol="x", size=8,
                                                        color=OUTCOME_COLORS["pruned"]),
                        hovertemplate="%{text} pruned after epoch %{x}<extra></extra>")
    return base_layout(fig, xaxis_title="epoch", yaxis_title=ACC)


def importance_figure(imp: Importances) -> go.Figure:
    fig = go.Figure(go.Bar(x=imp.values[::-1], y=imp.names[::-1], orientation="h",
                           marker_color="#264653",
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    return base_layout(fig, height=max(260, 24 * len(imp.names) + 80),
                       xaxis_title=f"importance ({imp.method}, sums to 1)",
                       margin=dict(l=170, r=20, t=20, b=50))


def _dimension(label: str, values: list[float], axis: Any = None) -> dict[str, Any]:
    dim: dict[str, Any] = dict(label=label, values=values)
    if axis is not None and axis.kind == "categorical":
        dim.update(tickvals=list(range(len(axis.choices))), ticktext=list(axis.choices),
                   range=[-0.5, len(axis.choices) - 0.5])
    elif axis is not None and axis.kind == "log" and values:
        ticks = list(range(math.floor(min(values)), math.ceil(max(values)) + 1))
        dim.update(tickvals=ticks, ticktext=[f"1e{t}" for t in ticks])
    return dim


def parallel_figure(p: ParallelData) -> go.Figure:
    dims = [_dimension(ACC, p.accuracies)]
    dims += [_dimension(a.name, col, a) for a, col in zip(p.axes, p.columns)]
    fig = go.Figure(go.Parcoords(
        dimensions=dims,
        line=dict(color=p.accuracies, colorscale="Viridis", showscale=True,
                  colorbar=dict(title="val_acc")),
        labelangle=-25, labelside="bottom"))
    return base_layout(fig, height=460, margin=dict(l=70, r=40, t=50, b=90))


def slice_figure(slices: list[SliceData]) -> go.Figure:
    fig = make_subplots(rows=1, cols=max(len(slices), 1), shared_yaxes=True,
                        horizontal_spacing=0.03, subplot_titles=[s.axis.name for s in slices])
    for col, s in enumerate(slices, start=1):
        fig.add_scatter(x=s.values, y=s.accuracies, mode="markers", row=1, col=col,
                        marker=dict(color=s.numbers, colorscale="Blues", size=7, opacity=0.8,
                                    line=dict(width=0.5, color="#333"),
                                    showscale=col == len(slices),
                                    colorbar=dict(title="trial")),
                        text=[f"trial {n}" for n in s.numbers], showlegend=False,
                        hovertemplate="%{text}<br>%{x}: %{y:.4f}<extra></extra>")
        if s.axis.kind == "log":
            fig.update_xaxes(type="log", row=1, col=col)
        elif s.axis.kind == "categorical":
            fig.update_xaxes(type="category", categoryorder="array",
                             categoryarray=list(s.axis.choices), row=1, col=col)
    fig.update_yaxes(title_text=ACC, row=1, col=1)
    return base_layout(fig, height=360, margin=dict(l=60, r=20, t=40, b=50))


def tradeoff_figure(trades: list[Tradeoff]) -> go.Figure:
    titles = {"params": "parameters (log)", "flops": "FLOPs per image (log)"}
    fig = make_subplots(rows=1, cols=len(trades), shared_yaxes=True, horizontal_spacing=0.05,
                        subplot_titles=[f"accuracy vs {titles[t.cost_name]}" for t in trades])
    for col, t in enumerate(trades, start=1):
        text = [f"trial {n}" for n in t.numbers]
        fig.add_scatter(x=t.costs, y=t.accuracies, text=text, mode="markers", name="trials",
                        marker=dict(color=OUTCOME_COLORS["complete"], size=6, opacity=0.55),
                        showlegend=col == 1, legendgroup="trials", row=1, col=col,
                        hovertemplate="%{text}<br>%{x:,.0f}: %{y:.4f}<extra></extra>")
        fig.add_scatter(x=[t.costs[i] for i in t.front], y=[t.accuracies[i] for i in t.front],
                        text=[text[i] for i in t.front], mode="lines+markers",
                        name="Pareto front", line=dict(color=FRONT, shape="hv"),
                        marker=dict(color=FRONT, size=9, symbol="diamond"),
                        showlegend=col == 1, legendgroup="front", row=1, col=col,
                        hovertemplate="%{text} (Pareto)<br>%{x:,.0f}: %{y:.4f}<extra></extra>")
        fig.update_xaxes(type="log", title_text=titles[t.cost_name], row=1, col=col)
    fig.update_yaxes(title_text=ACC, row=1, col=1)
    return base_layout(fig, height=420, margin=dict(l=60, r=20, t=60, b=50))


def timeline_figure(spans: list[Span]) -> go.Figure:
    fig = go.Figure()
    for outcome, color in OUTCOME_COLORS.items():
        group = [s for s in spans if s.outcome == outcome]
        if not group:
            continue
        fig.add_bar(
            base=[s.start.isoformat() for s in group],
            x=[(s.end - s.start).total_seconds() * 1000 for s in group],  # ms on a date axis
            y=[s.number for s in group], orientation="h", name=outcome, marker_color=color,
            text=[f"trial {s.number}: {(s.end - s.start).total_seconds():.1f}s" for s in group],
            textposition="none", hovertemplate="%{text}<extra>" + outcome + "</extra>")
    fig.update_xaxes(type="date", title_text="wall-clock time")
    return base_layout(fig, height=420, yaxis_title="trial", bargap=0.1)


def savings_figure(s: PruningSavings) -> go.Figure:
    fig = go.Figure()
    for outcome, epochs in s.trained.items():
        fig.add_bar(x=[epochs], y=["this search"], orientation="h", name=f"trained: {outcome}",
                    marker_color=OUTCOME_COLORS[outcome],
                    hovertemplate=f"{outcome}: %{{x:,}} epochs<extra></extra>")
    fig.add_bar(x=[s.saved], y=["this search"], orientation="h", name="saved by pruning",
                marker=dict(color="white", line=dict(color=OUTCOME_COLORS["pruned"], width=2),
                            pattern=dict(shape="/", fgcolor=OUTCOME_COLORS["pruned"])),
                hovertemplate="not trained: %{x:,} epochs<extra></extra>")
    fig.add_bar(x=[s.without_pruning], y=["without pruning"], orientation="h",
                name="no-pruning search", marker_color="#adb5bd",
                hovertemplate="%{x:,} epochs<extra></extra>")
    return base_layout(fig, height=240, barmode="stack", xaxis_title="epochs trained",
                       margin=dict(l=110, r=20, t=40, b=50))
