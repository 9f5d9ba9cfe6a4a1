"""The report's content: which data goes into which figure, in which section, with what words.

Each ``*_section`` function returns a :class:`Section` of figures, HTML snippets and notices;
when a panel cannot be drawn (no completed trial yet, no kept weights) it holds a notice that
says why instead. :mod:`.report` turns sections into one HTML file.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import plotly.graph_objects as go

from automl_cnn.config import SearchConfig
from automl_cnn.errors import UserError
from automl_cnn.record import DatasetInfo, Outcome
from automl_cnn.rundir import RunDir

from . import arch_figures as af
from . import figures as ff
from .arch_data import SharingCard, TopArchitecture, volume_boxes, weight_sharing
from .data import (
    TrialRow,
    completed,
    learning_curves,
    optimization_history,
    parallel_coordinates,
    pruning_savings,
    slices,
    timeline,
    tradeoff,
)
from .importance import param_importances
from .network_data import network_view

log = logging.getLogger(__name__)
NO_COMPLETED = "No trial has completed yet, so there is nothing to rank; this panel fills in " \
               "once the first trial trains to its full budget."


@dataclass
class Figure:
    name: str  # file-name-safe id, also the PNG's name
    figure: go.Figure
    caption: str = ""


@dataclass
class Notice:
    text: str


@dataclass
class Html:
    markup: str  # already escaped


@dataclass
class Section:
    title: str
    intro: str = ""
    items: list[Figure | Notice | Html] = field(default_factory=list)


def search_sections(rows: list[TrialRow], *, now: datetime, importance: str) -> list[Section]:
    done = completed(rows)
    progress = Section("Progress", "Each dot is a trial; the red line is the best accuracy "
                       "reached so far by a fully trained trial.")
    progress.items.append(Figure("history", ff.history_figure(optimization_history(rows)))
                          if done else Notice(NO_COMPLETED))
    progress.items.append(Figure("learning_curves", ff.curves_figure(learning_curves(rows)),
                                 "Validation accuracy per epoch of every trial; × marks where "
                                 "the pruner stopped a trial."))
    imp = param_importances(rows, evaluator=importance)
    params = Section("Which choices mattered", "Parameter importance over fully trained trials "
                     "(how much of the accuracy's variation each choice explains).")
    if imp.notice:
        params.items.append(Notice(imp.notice))
    else:
        top = imp.names[:10]
        params.items += [
            Figure("importances", ff.importance_figure(imp.head(15)),
                   f"The {min(len(imp.names), 15)} most important of {len(imp.names)} "
                   "parameters."),
            Figure("parallel_coordinates", ff.parallel_figure(parallel_coordinates(rows, top[:8])),
                   "Drag along an axis to highlight the trials in a range."),
            Figure("slices", ff.slice_figure(slices(rows, top[:4])),
                   "Accuracy against each of the four most important parameters."),
        ]
    cost = Section("Accuracy against cost", "Red diamonds: the Pareto front, the trials no "
                   "other trial beats on both accuracy and cost.")
    cost.items.append(Figure("pareto", ff.tradeoff_figure([tradeoff(rows, "params"),
                                                           tradeoff(rows, "flops")]))
                      if done else Notice(NO_COMPLETED))
    return [progress, params, cost, compute_section(rows, now=now)]


def compute_section(rows: list[TrialRow], *, now: datetime) -> Section:
    s = pruning_savings(rows)
    text = (f"The search trained {s.total_trained:,} epochs. Without pruning, the same trials "
            f"would have trained {s.without_pruning:,}: pruning {s.pruned_trials} trials saved "
            f"{s.saved:,} epochs ({s.saved_fraction:.0%}), about {s.seconds_saved:,.0f} s of "
            "training.")
    section = Section("Time and compute", html.escape(text))
    spans = timeline(rows, now=now)
    if spans:
        section.items.append(Figure("timeline", ff.timeline_figure(spans),
                                    "Each bar is one trial, from start to finish."))
    section.items.append(Figure("pruning_savings", ff.savings_figure(s)))
    return section


def top_table(top: list[TopArchitecture]) -> Html:
    head = ("rank", "trial", "val_acc", "params", "FLOPs", "receptive field", "architecture",
            "optimiser")
    rows = []
    for a in top:
        t = a.spec.train
        cells = (a.rank + 1, a.trial, f"{a.val_acc:.4f}", f"{a.params:,}", f"{a.flops:,}",
                 f"{a.receptive_field}px", a.summary,
                 f"{t.optimizer} lr={t.lr:.2g} {t.schedule}, {t.epochs} epochs")
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{h}</th>" for h in head)
    return Html(f"<table class='top'><thead><tr>{header}</tr></thead><tbody>"
                + "".join(rows) + "</tbody></table>")


def sharing_table(cards: list[SharingCard]) -> Html:
    rows = "".join(
        f"<tr><td>{c.layer}</td><td>{c.in_volume} → {c.out_volume}</td><td>{c.kernel}×{c.kernel}"
        f"</td><td>{c.conv_params:,}</td><td>{c.dense_params:,}</td><td>{c.ratio:,.{int(c.ratio < 10)}f}×</td></tr>"
        for c in cards)
    return Html("<table class='card'><thead><tr><th>conv layer</th><th>volumes</th><th>kernel"
                "</th><th>conv params</th><th>dense params</th><th>dense / conv</th></tr>"
                f"</thead><tbody>{rows}</tbody></table>")


def architecture_sections(top: list[TopArchitecture],
                          dataset: DatasetInfo | None) -> list[Section]:
    ranking = Section("Top architectures", "Fully trained trials, best validation accuracy first.")
    ranking.items.append(top_table(top) if top else Notice(NO_COMPLETED))
    shapes = Section("What the best networks look like",
                     "Each box is a layer's output volume W×H×D. Maps are drawn to scale: height "
                     "and the receding side follow H and W on one scale, thickness follows the "
                     "depth D on another; flat vectors (after the conv stack) use their own "
                     "height scale.")
    if not top:
        shapes.items.append(Notice(NO_COMPLETED))
        return [ranking, shapes]
    if not dataset:
        shapes.items.append(Notice("The study does not record its input shape, so the layer "
                                   "volumes cannot be planned."))
        return [ranking, shapes]
    shape, classes = dataset.input_shape, dataset.num_classes
    stacks = []
    for a in top:
        boxes = volume_boxes(a.spec, shape, classes)  # type: ignore[arg-type]
        stacks.append((f"#{a.rank + 1} trial {a.trial}", boxes))
        shapes.items.append(Figure(f"volumes_rank{a.rank + 1}", af.volume_figure(
            boxes, title=f"#{a.rank + 1} · trial {a.trial} · val_acc {a.val_acc:.4f}")))
    shapes.items.append(Figure("receptive_field", af.receptive_field_figure(
        stacks, max(shape[1:])), "Receptive field per layer: how many input pixels one unit "
        "of that layer sees."))
    sharing = Section("Weight sharing",
                      "A conv layer reuses one small K×K×C filter at every position; a fully "
                      "connected layer joining the same two volumes needs a weight for every "
                      "input–output pair. The chart shows the best network.")
    for a in top:
        cards = weight_sharing(a.spec, shape, classes)  # type: ignore[arg-type]
        sharing.items.append(Html(f"<h3>#{a.rank + 1} · trial {a.trial}</h3>"))
        sharing.items.append(sharing_table(cards))
        if a.rank == 0:
            sharing.items.append(Figure("weight_sharing", af.sharing_figure(cards)))
    return [ranking, shapes, sharing]


def network_section(top: list[TopArchitecture], run_dir: Path | None,
                    config: SearchConfig | None, data: Any = None) -> Section:
    section = Section("Inside the best network", "First-layer filters (each scaled on its own) "
                      "and activation maps for a few validation images.")
    if not top:
        section.items.append(Notice(NO_COMPLETED))
        return section
    if run_dir is None or config is None:
        section.items.append(Notice("No run directory was given, so there are no kept weights "
                                    "to show. Pass the run directory to see filters and "
                                    "activations."))
        return section
    for a in top:
        try:
            view = network_view(run_dir, a.trial, config, data=data)
        except UserError as exc:  # weights not kept for this trial: try the next best
            log.info("no weights for trial %d: %s", a.trial, exc)
            continue
        except Exception as exc:  # noqa: BLE001 - e.g. the dataset moved: say so, draw the rest
            section.items.append(Notice(f"The weights of trial {a.trial} could not be shown: "
                                        f"{type(exc).__name__}: {exc}"))
            return section
        if a.rank > 0:
            section.items.append(Notice(f"The best trial's weights were not kept; showing "
                                        f"#{a.rank + 1} (trial {a.trial})."))
        section.items.append(Figure("filters", af.filters_figure(view.filters),
                                    f"Trial {a.trial}: {len(view.filters)} first-layer filters."))
        for maps in view.activations:
            section.items.append(Figure(f"activations_{maps.layer}", af.activations_figure(maps),
                                        "Validation images of classes "
                                        + ", ".join(maps.labels) + f": output of {maps.layer}."))
        return section
    section.items.append(Notice(f"No kept weights were found under {RunDir(run_dir).models} for "
                                "the top trials."))
    return section


def snapshot_notice(study: optuna.Study, rows: list[TrialRow], now: datetime) -> Notice | None:
    running = sum(r.outcome == Outcome.RUNNING for r in rows)
    if not rows:
        return Notice(f"Study {study.study_name!r} has no trials yet.")
    if running:
        return Notice(f"A snapshot taken at {now:%Y-%m-%d %H:%M:%S}: {running} trial(s) still "
                      "running. Build the report again later for the final picture.")
    return None
