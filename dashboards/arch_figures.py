"""Plain data → Plotly figures for the best architectures: volume diagrams, receptive fields,
weight sharing, first-layer filters and activation maps. Thin: no numbers are computed here
beyond the drawing's own coordinates.

Example:
    >>> volume_figure(volume_boxes(spec, (1, 8, 8), 10)).write_html("net.html")
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .arch_data import VECTOR_KINDS, SharingCard, VolumeBox
from .figures import base_layout
from .network_data import ActivationMaps, tile

KIND_COLORS = {"input": "#adb5bd", "conv": "#2a9d8f", "pool": "#e9c46a",
               "global_pool": "#9b5de5", "flatten": "#9b5de5", "linear": "#6d597a"}
MAP_SIDE = 120.0  # drawing units for the largest map's height
MAP_DEPTH = 70.0  # drawing units for the deepest map's thickness
SLANT = 0.45  # the receding (W) side is drawn at this fraction of its length, up and right


def _shade(hex_color: str, factor: float) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgb({int(r * factor)},{int(g * factor)},{int(b * factor)})"


def _faces(x: float, h: float, d: float, w: float) -> list[str]:
    """Front, top and side of a box standing on y=0 at x, as SVG paths (oblique projection)."""
    dx, dy = w * SLANT, w * SLANT
    front = f"M{x},0 L{x + d},0 L{x + d},{h} L{x},{h} Z"
    top = f"M{x},{h} L{x + d},{h} L{x + d + dx},{h + dy} L{x + dx},{h + dy} Z"
    side = f"M{x + d},0 L{x + d + dx},{dy} L{x + d + dx},{h + dy} L{x + d},{h} Z"
    return [front, top, side]


def _box_size(box: VolumeBox, side: float, depth: float, vec: float) -> tuple[float, float, float]:
    """(height, thickness, receding side) in drawing units. Maps share one spatial scale and one
    depth scale, so they are to scale with each other; vectors get their own height scale."""
    if box.kind in VECTOR_KINDS:
        return max(box.depth * vec, 4.0), 4.0, 4.0
    return box.height * side, max(box.depth * depth, 1.5), box.width * side


def volume_figure(boxes: list[VolumeBox], *, title: str = "") -> go.Figure:
    maps = [b for b in boxes if b.kind not in VECTOR_KINDS]
    vectors = [b for b in boxes if b.kind in VECTOR_KINDS]
    side = MAP_SIDE / max(max(b.height, b.width) for b in maps)
    depth = MAP_DEPTH / max(b.depth for b in maps)
    vec = 1.3 * MAP_SIDE / max((b.depth for b in vectors), default=1)
    shapes: list[dict[str, Any]] = []
    xs, ys, hover, labels = [], [], [], []
    x = 0.0
    for i, box in enumerate(boxes):
        h, d, w = _box_size(box, side, depth, vec)
        color = KIND_COLORS.get(box.kind, "#888888")
        for path, shade in zip(_faces(x, h, d, w), (1.0, 1.15, 0.8)):
            shapes.append(dict(type="path", path=path, line=dict(color="#333", width=0.7),
                               fillcolor=_shade(color, min(shade, 1.0)) if shade <= 1
                               else color, opacity=0.95 if shade != 1.15 else 0.7))
        xs.append(x + d / 2)
        ys.append(h / 2)
        hover.append(f"{box.name} ({box.kind})<br>output {box.volume}<br>receptive field "
                     f"{box.receptive_field}px<br>{box.params:,} params")
        labels.append(dict(x=x + d / 2, y=-6 - 14 * (i % 2), text=f"<b>{box.volume}</b>",
                           showarrow=False, yanchor="top", font=dict(size=11)))
        labels.append(dict(x=x + d / 2, y=h + w * SLANT + 4, text=box.name.split(".")[-1],
                           showarrow=False, yanchor="bottom", font=dict(size=10, color="#555")))
        x += d + w * SLANT + 18
    fig = go.Figure(go.Scatter(x=xs, y=ys, mode="markers", marker=dict(size=14, opacity=0),
                               hovertext=hover, hoverinfo="text", showlegend=False))
    top = max(y * 2 for y in ys) + MAP_SIDE * SLANT + 20
    fig.update_layout(shapes=shapes, annotations=labels, title=dict(text=title, x=0.01))
    fig.update_xaxes(visible=False, range=[-10, x])
    fig.update_yaxes(visible=False, range=[-40, top], scaleanchor="x", scaleratio=1)
    return base_layout(fig, height=int(min(max(top + 60, 260), 520)),
                       margin=dict(l=10, r=10, t=40 if title else 10, b=10))


def receptive_field_figure(stacks: list[tuple[str, list[VolumeBox]]], image_side: int) -> go.Figure:
    fig = go.Figure()
    for label, boxes in stacks:
        spatial = [b for b in boxes if b.kind not in VECTOR_KINDS]
        fig.add_scatter(x=list(range(len(spatial))), y=[b.receptive_field for b in spatial],
                        text=[b.name for b in spatial], mode="lines+markers", name=label,
                        hovertemplate="%{text}: %{y}px<extra>" + label + "</extra>")
    fig.add_hline(y=image_side, line=dict(color="#999", dash="dot"),
                  annotation_text=f"whole image ({image_side}px)")
    return base_layout(fig, height=340, xaxis=dict(title="layer index (0 = input)", dtick=1),
                       yaxis_title="receptive field (input pixels)")


def sharing_figure(cards: list[SharingCard]) -> go.Figure:
    names = [c.layer for c in cards]
    fig = go.Figure()
    for label, counts, color in (
            ("conv (shared weights)", [c.conv_params for c in cards], KIND_COLORS["conv"]),
            ("fully connected, same volumes", [c.dense_params for c in cards], "#e76f51")):
        fig.add_bar(x=names, y=counts, name=label, marker_color=color, text=counts,
                    texttemplate="%{text:,}", textposition="outside", cliponaxis=False,
                    hovertemplate="%{x}: %{y:,}<extra></extra>")
    low = min(c.conv_params for c in cards) if cards else 1
    top = max(c.dense_params for c in cards) if cards else 10
    return base_layout(fig, height=340, barmode="group", yaxis_title="parameters (log)",
                       yaxis=dict(type="log", range=[math.log10(low) - 1,
                                                     math.log10(top) + 0.6]))


def _grey_heatmap(image: np.ndarray, **kwargs: Any) -> go.Heatmap:
    return go.Heatmap(z=image, colorscale="Greys", reversescale=True, zmin=0, zmax=1,
                      showscale=False, hoverinfo="skip", **kwargs)


def filters_figure(filters: np.ndarray) -> go.Figure:
    columns = min(len(filters), 16)
    if filters.ndim == 4:  # colour filters (F, K, K, 3): tile each channel, draw as an image
        mosaic = np.stack([tile(filters[..., c], columns=columns) for c in range(3)], axis=-1)
        fig = go.Figure(go.Image(z=np.nan_to_num(mosaic, nan=1.0) * 255, hoverinfo="skip"))
    else:
        fig = go.Figure(_grey_heatmap(tile(filters, columns=columns)))
    rows = -(-len(filters) // columns)
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    return base_layout(fig, height=int(min(80 + 60 * rows, 500)),
                       margin=dict(l=10, r=10, t=10, b=10))


def activations_figure(a: ActivationMaps) -> go.Figure:
    n, c = a.maps.shape[:2]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.12, 0.88], horizontal_spacing=0.02,
                        subplot_titles=["input", f"{a.layer}: first {c} channels"])
    fig.add_trace(_grey_heatmap(tile(a.inputs, columns=1)), row=1, col=1)
    per_image = [tile(a.maps[i], columns=c) for i in range(n)]  # one row per image
    fig.add_trace(_grey_heatmap(tile(np.stack(per_image), columns=1)), row=1, col=2)
    for col in (1, 2):
        fig.update_xaxes(visible=False, constrain="domain", row=1, col=col)
        fig.update_yaxes(visible=False, autorange="reversed", scaleanchor=f"x{col if col > 1 else ''}",
                         row=1, col=col)
    return base_layout(fig, height=int(min(60 + 90 * n, 520)),
                       margin=dict(l=10, r=10, t=40, b=10))
