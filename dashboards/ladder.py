"""The report's budget section: the fidelity ladder (which trials each rung held, who was
promoted) and the final fit's learning curve. Numbers first (:func:`rung_points`,
:func:`final_curve`), drawn last (:func:`ladder_section`).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import optuna
import plotly.graph_objects as go

from automl_cnn.final_fit import (final_networks, one_recipe, read_final_history,
                                  read_final_networks)
from automl_cnn.record import TrialRecord, record_of

from .sections import Figure, Section


@dataclass(frozen=True)
class RungPoint:
    """Trial ``trial``'s validation accuracy at rung ``rung``; ``promoted``: it went on (at
    once, or later through a late promotion). ``line``: the trial whose climb this continues
    (the rung-0 trial of a late promotion; ``trial`` itself otherwise)."""

    trial: int
    rung: int
    val_acc: float
    promoted: bool
    line: int


def rung_points(trials: list[optuna.trial.FrozenTrial]) -> list[RungPoint]:
    """One point per (trial, rung finished) of the trials that climbed a ladder."""
    points = []
    records = [(t, record_of(t)) for t in trials]
    late = {(r.promotion.source, r.promotion.rung - 1) for _, r in records
            if r.promotion is not None}
    for t, record in records:
        fidelity = record.fidelity
        if fidelity is None or fidelity.whole or not t.intermediate_values:
            continue
        trained = int(fidelity.rung or 0)  # the last rung it trained on
        line = record.promotion.first if record.promotion is not None else t.number
        for step, value in sorted(t.intermediate_values.items()):
            points.append(RungPoint(t.number, int(step), float(value),
                                    step < trained or (t.number, step) in late, line))
    return points


def final_curve(run_dir: Path | None) -> list[dict[str, float]]:
    return read_final_history(Path(run_dir)) if run_dir else []


def ladder_figure(points: list[RungPoint]) -> go.Figure:
    fig = go.Figure()
    for line in sorted({p.line for p in points}):  # a late promotion continues its source
        mine = sorted((p for p in points if p.line == line), key=lambda p: p.rung)
        fig.add_trace(go.Scatter(
            x=[p.rung for p in mine], y=[p.val_acc for p in mine], mode="lines+markers",
            name=f"trial {line}", showlegend=False, line={"width": 1, "color": "#9aa5b1"},
            marker={"size": 8, "symbol": ["circle" if p.promoted else "circle-open"
                                          for p in mine], "color": "#1f6feb"},
            customdata=[p.trial for p in mine],
            hovertemplate="trial %{customdata}<br>rung %{x}<br>val_acc %{y:.4f}"
                          "<extra></extra>"))
    fig.update_layout(title="Fidelity ladder: validation accuracy at each rung",
                      xaxis={"title": "rung", "dtick": 1}, yaxis={"title": "val_acc"},
                      template="plotly_white", height=420)
    return fig


def final_figure(rows: list[dict[str, float]],
                 title: str = "Final fit on train + validation") -> go.Figure:
    fig = go.Figure(go.Scatter(x=[int(r["epoch"]) + 1 for r in rows],
                               y=[r["train_loss"] for r in rows], mode="lines+markers",
                               name="train loss"))
    fig.update_layout(title=f"{title}: training loss per epoch",
                      xaxis={"title": "epoch"}, yaxis={"title": "train loss"},
                      template="plotly_white", height=360)
    return fig


def whole_budget_trial(trials: list[optuna.trial.FrozenTrial]) -> TrialRecord | None:
    """The trial a budget too short to search trained for all of it (None: there was a search)."""
    found = [r for r in map(record_of, trials) if r.fidelity is not None and r.fidelity.whole]
    return found[-1] if found else None


def whole_figure(record: TrialRecord) -> go.Figure:
    return final_figure([dict(r) for r in record.history if "train_loss" in r],
                        f"Trial {record.number}, trained for the whole budget")


def whole_section(record: TrialRecord, networks: int = 1) -> Section:
    """The "too short to search" section; ``networks`` > 1: the final model averages that
    many trainings of the one baseline (it reached its epoch cap with time left)."""
    fidelity = record.fidelity
    assert fidelity is not None
    section = Section("Budget: too short to search")
    which = "training and validation" if fidelity.with_val else "training"
    section.intro = html.escape(
        f"The time budget bought fewer full trainings than a search needs, so there was no "
        f"search: trial {record.number} ({record.baseline or 'a baseline'}) trained on all "
        f"{fidelity.train_images:,} {which} images for {record.epochs_trained} epochs, its "
        "learning-rate schedule run by the clock so that it ended annealed at the deadline "
        "(summary.json's ladder.reason gives the numbers)"
        + (f". Its validation accuracy ({record.val_acc or 0:.4f}) is measured on images it "
           "trained on; the test split is the honest score" if fidelity.with_val else "")
        + (f". It reached its epoch cap with time left, so {networks - 1} more "
           f"training{'' if networks == 2 else 's'} of the same recipe with other seeds "
           f"filled the budget: the model tested, exported "
           f"and loaded by load_best averages all {networks}" if networks > 1 else "")
        + ". Give a longer --timeout to search.")
    section.items.append(Figure("whole_budget", whole_figure(record)))
    return section


def ladder_section(study: optuna.Study, run_dir: Path | None) -> list[Section]:
    """The "Budget" section, or nothing when the search had neither a ladder nor a final fit."""
    trials = study.get_trials(deepcopy=False)
    whole = whole_budget_trial(trials)
    if whole is not None:
        return [whole_section(whole, read_final_networks(Path(run_dir)) if run_dir else 1)]
    points = rung_points(trials)
    rows = final_curve(run_dir)
    if not points and not rows:
        return []
    section = Section("Budget: ladder and final fit")
    if points:
        top = max(p.rung for p in points)
        held = [len({p.trial for p in points if p.rung == k}) for k in range(top + 1)]
        promoted_late = len({p.trial for p in points if p.line != p.trial})
        section.intro = html.escape(
            "Trials start on a small class-balanced share of the training images and few "
            "epochs; the best third at each rung is promoted to more data. Rungs held "
            + ", ".join(f"{n} (rung {k})" for k, n in enumerate(held))
            + ". A filled marker went on to the next rung; a hollow one stopped there."
            + (f" {promoted_late} late promotion{'' if promoted_late == 1 else 's'}: a "
               "trial stopped at a rung went on once enough trials had finished it below it, "
               "as a new trial with the same parameters, drawn on the same line."
               if promoted_late else ""))
        section.items.append(Figure("ladder", ladder_figure(points)))
    if rows:
        nets = final_networks(Path(run_dir)) if run_dir else ()
        which = "this model "
        if one_recipe(nets):
            which = (f"the first of {len(nets)} trainings of the winner it averages (other "
                     "seeds: trained at once on a GPU, or in the time left after its epoch "
                     "cap); the average ")
        elif len(nets) > 1:
            which = (f"the first of {len(nets)} finalists it averages (too close on "
                     "validation to pick one); the average ")
        section.items.append(Figure("final_fit", final_figure(rows),
                                    f"{len(rows)} epochs over train + validation: {which}"
                                    "is the one tested, exported and loaded by load_best."))
    return [section]


__all__ = ["RungPoint", "final_curve", "ladder_section", "rung_points", "whole_budget_trial"]
