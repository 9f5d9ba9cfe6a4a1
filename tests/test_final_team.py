"""The final fit's networks trained at once, one process each, where the search had GPU workers
(runners/final_team.py). The CPU runs the very same processes here: only the choice of a team
(GPU workers only) is forced."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from automl_cnn.api import load_best
from automl_cnn.cli import main
from automl_cnn.config import SearchConfig
from automl_cnn.runners.final_team import final_team, team_networks
from automl_cnn.runners.parallel import WorkerPlan


def test_a_team_forms_only_on_gpu_workers_and_never_exceeds_the_ensemble_or_the_workers(
        ) -> None:
    gpus = WorkerPlan(("cuda:0", "cuda:1") * 4, 2)
    team = final_team(SearchConfig(ensemble=3), gpus)
    assert team is not None and team.devices == ("cuda:0", "cuda:1", "cuda:0")
    assert final_team(SearchConfig(ensemble=5), WorkerPlan(("cuda:0",) * 2, 2)).count == 2
    assert final_team(SearchConfig(ensemble=3), WorkerPlan(("cpu",) * 4, 1)) is None
    assert final_team(SearchConfig(ensemble=3), WorkerPlan(("cuda:0",), 8)) is None
    assert final_team(SearchConfig(ensemble=1), gpus) is None  # one network wanted
    assert final_team(SearchConfig(ensemble=3, final_fit=False), gpus) is None  # none wanted


def test_a_team_trains_each_finalist_once_with_the_search_seed_then_others_with_new_seeds(
        ) -> None:
    class T:
        def __init__(self, number: int) -> None:
            self.number = number

    a, b = T(7), T(2)
    pairs = team_networks([a, b], 5, seed=3)
    assert [t.number for t, _ in pairs] == [7, 2, 7, 2, 7]
    seeds = [s for _, s in pairs]
    assert seeds[:2] == [3, 3] and len(set(seeds[2:])) == 3 and 3 not in seeds[2:]


def _search_with_a_cpu_team(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                            out: Path, *args: str) -> tuple[dict[str, Any], str]:
    """``automl-cnn search --dataset digits --space tiny ARGS`` with the team GPU workers
    would get forced onto two CPU processes (the very same code); its summary and output."""
    import automl_cnn.runners.search as search

    monkeypatch.setattr(search, "final_team",
                        lambda config, workers: WorkerPlan(("cpu", "cpu"), 1))
    code = main(["search", "--dataset", "digits", "--space", "tiny", *args, "--no-mlflow",
                 "--no-progress", "--out", str(out)])
    assert code == 0
    return json.loads((out / "summary.json").read_text()), capsys.readouterr().out


def _assert_two_seeds_averaged(out: Path) -> None:
    net = load_best(out)  # the average, each network with its own seed
    assert type(net).__name__ == "Ensemble" and len(net.members) == 2
    states = [m.state_dict() for m in net.members]
    assert any((x != y).any() for x, y in zip(states[0].values(), states[1].values()))
    assert not (out / "final-members").exists()  # the final model holds them


@pytest.mark.slow
def test_with_a_team_the_final_networks_train_at_once_and_the_model_averages_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import automl_cnn.ladder as ladder

    monkeypatch.setattr(ladder, "MIN_SMALL_SEARCH_TRAININGS", 1)  # always search
    out = tmp_path / "run"
    summary, printed = _search_with_a_cpu_team(monkeypatch, capsys, out, "--timeout", "40s",
                                               "--trials", "1")
    final = summary["final"]
    together = final["together"]
    assert together["networks"] == 2 and final["trainings"] == 2
    assert final["members"] == [summary["best"]["trial"]]
    (a0, a1), (b0, b1) = together["spans"]
    assert a0 < b1 and b0 < a1  # the two trainings overlapped in time
    assert "Trained at once: 2 networks (cpu), trial 0 with 2 seeds" in printed
    _assert_two_seeds_averaged(out)
    assert summary["test"]["model"] == "final" and summary["test"]["accuracy"] > 0.5
    assert summary["wall_seconds"] <= 40 + 10


@pytest.mark.slow
def test_without_a_budget_a_team_is_not_used_where_starting_it_costs_more_than_it_saves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Digits' finalists train in a few seconds each: a member process's start (imports, data)
    # would cost more than training them one after the other saves.
    summary, _ = _search_with_a_cpu_team(monkeypatch, capsys, tmp_path / "run", "--trials", "2")
    assert summary["final"] is not None and "together" not in summary["final"]


@pytest.mark.slow
def test_a_budget_too_short_to_search_trains_other_seeds_beside_its_one_trial(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # On GPU workers, the one baseline a short budget trains shares the card with other
    # seeds of it, to the same deadline, and the model handed over averages them.
    import automl_cnn.final_fit as final_fit
    import automl_cnn.ladder as ladder

    monkeypatch.setattr(ladder, "MIN_SEARCH_TRAININGS", 10**9)  # never search
    monkeypatch.setattr(ladder, "MIN_SMALL_SEARCH_TRAININGS", 10**9)
    # No epoch cap for the one trial: it trains to the deadline, as a real dataset's does
    # (digits' cap comes in 3 s on a fast machine, before the other process has started).
    monkeypatch.setattr(final_fit, "MAX_EPOCH_FACTOR", 1000)
    monkeypatch.setattr(final_fit, "MAX_EPOCHS", 1000)
    out, marks = tmp_path / "run", tmp_path / "timeline.txt"
    monkeypatch.setenv("AUTOML_CNN_TIMELINE", str(marks))
    # --jobs 2: the command starts two processes warm; the one trial trains in this one
    summary, printed = _search_with_a_cpu_team(monkeypatch, capsys, out, "--timeout", "30s",
                                               "--jobs", "2")
    assert summary["ladder"]["whole"] and summary["trials"] == 1  # no search
    final = summary["final"]
    assert final["together"]["networks"] == 2 and final["trainings"] == 2
    ((b0, b1),) = final["together"]["spans"]
    assert b0 < summary["phases"]["search"]  # it trained while the one trial did
    rows = [line.split(" ", 2) for line in marks.read_text().splitlines()]
    warm = {pid for _, pid, event in rows if event.startswith("warm ") and "started" in event}
    trained = {pid for _, pid, event in rows if event == "first training step"}
    # Two were spawned warm; the one never handed work may be ended before it even marks its
    # start (a slow machine), so only the member's start is certain.
    assert 1 <= len(warm) <= 2 and len(trained - {str(os.getpid())}) == 1
    assert trained - {str(os.getpid())} <= warm  # the other network: a process started warm
    assert "No search:" in printed and "Trained at once: 2 networks (cpu)" in printed
    _assert_two_seeds_averaged(out)
    assert summary["test"]["model"] == "final" and summary["wall_seconds"] <= 30 + 10
