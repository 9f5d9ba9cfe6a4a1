"""The report's budget section: rung points as numbers, then a figure."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from automl_cnn.record import Fidelity, Outcome, Promotion, TrialRecord, record_attrs
from automl_cnn.rundir import RunDir
from automl_cnn.dashboards.ladder import final_curve, ladder_section, rung_points


def _trial(number: int, scores: list[float], rung: int, state: str) -> optuna.trial.FrozenTrial:
    record = TrialRecord(number=number, outcome=Outcome(state),
                         fidelity=Fidelity(100 * 3 ** rung, 2, rung))
    return optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE if state == "complete"
        else optuna.trial.TrialState.PRUNED,
        value=scores[-1] if state == "complete" else None,
        intermediate_values=dict(enumerate(scores)), user_attrs=record_attrs(record))


def test_rung_points_mark_who_was_promoted(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize")
    study.add_trial(_trial(0, [0.5, 0.7], 1, "complete"))
    study.add_trial(_trial(1, [0.4], 0, "pruned"))
    points = rung_points(study.get_trials())
    assert [(p.trial, p.rung, p.promoted) for p in points] == [
        (0, 0, True), (0, 1, False), (1, 0, False)]
    final = RunDir(tmp_path).final
    final.mkdir(parents=True)
    (final / "history.json").write_text(json.dumps([{"epoch": 0, "train_loss": 1.0}]))
    assert final_curve(tmp_path) == [{"epoch": 0, "train_loss": 1.0}]
    [section] = ladder_section(study, tmp_path)
    assert [item.name for item in section.items] == ["ladder", "final_fit"]
    assert "2 (rung 0), 1 (rung 1)" in section.intro


def test_a_late_promotion_continues_its_sources_line(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize")
    study.add_trial(_trial(0, [0.5, 0.7], 1, "complete"))
    study.add_trial(_trial(1, [0.4], 0, "pruned"))  # stopped, then promoted late as trial 2
    late = TrialRecord(number=2, outcome=Outcome.COMPLETE, fidelity=Fidelity(300, 2, 1),
                       promotion=Promotion(source=1, rung=1, first=1))
    study.add_trial(optuna.trial.create_trial(value=0.75, intermediate_values={1: 0.75},
                                              user_attrs=record_attrs(late)))
    points = rung_points(study.get_trials())
    assert [(p.trial, p.rung, p.promoted, p.line) for p in points] == [
        (0, 0, True, 0), (0, 1, False, 0), (1, 0, True, 1), (2, 1, False, 1)]
    [section] = ladder_section(study, tmp_path)
    assert "2 (rung 0), 2 (rung 1)" in section.intro and "1 late promotion:" in section.intro
    lines = section.items[0].figure.data
    assert [list(t.x) for t in lines] == [[0, 1], [0, 1]]  # one line per climb
    assert list(lines[1].customdata) == [1, 2]  # hover names the trial of each point


def test_no_section_for_a_plain_search(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.9))
    assert ladder_section(study, tmp_path) == []


def test_a_budget_too_short_to_search_shows_its_one_trial_per_epoch(tmp_path: Path) -> None:
    # Scored once, at the end (in-sample): the curve is its training loss per epoch.
    history = tuple({"epoch": e, "train_loss": 2.0 - e / 10} for e in range(3)) + (
        {"epoch": 3, "train_loss": 1.7, "val_acc": 0.5},)
    record = TrialRecord(number=0, outcome=Outcome.COMPLETE, history=history,
                         baseline="airbench-style x3",
                         fidelity=Fidelity(24_000, 4, 0, whole=True, with_val=True))
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.5, intermediate_values={0: 0.5},
                                              user_attrs=record_attrs(record)))
    assert rung_points(study.get_trials()) == []  # not a ladder
    [section] = ladder_section(study, tmp_path)
    assert section.title == "Budget: too short to search"
    assert "airbench-style x3" in section.intro and "24,000" in section.intro
    assert "training and validation images" in section.intro  # so its score is in-sample
    assert "(0.5000) is measured on images it trained on" in section.intro
    assert "for 4 epochs" in section.intro and "run by the clock" in section.intro
    [figure] = section.items
    assert list(figure.figure.data[0].y) == pytest.approx([2.0, 1.9, 1.8, 1.7])
