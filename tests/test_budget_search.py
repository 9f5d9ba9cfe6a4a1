"""Budgeted searches for real: the deadline stops a trial and records it, rungs promote and
prune, the final fit is the model that is tested and loaded."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import optuna
import pytest

from automl_cnn.api import load_best
from automl_cnn.cli import main
from automl_cnn.cli.summary_text import print_budget
from automl_cnn.config import SearchConfig
from automl_cnn.data import load_dataset
from automl_cnn.device import resolve_device
from automl_cnn.ladder import Ladder, Rung
from automl_cnn.ladder import promotable
from automl_cnn.record import (NEIGHBOUR_ATTR, Fidelity, Outcome, Promotion, TrialRecord,
                               enqueue_promotion, record_attrs, records)
from automl_cnn.results import rank, ranked_trials, rung_of
from automl_cnn.runners.climb import incumbent, late_promotions, promote_late, queue_local
from automl_cnn.runners.phases import budget_summary, rung_counts
from automl_cnn.runners.search import run_search
from automl_cnn.storage import make_storage
from automl_cnn.runners.trial import TrialRunner
from automl_cnn.search_spaces import NEIGHBOUR_KINDS, load_space, space_key
from automl_cnn.tracking import Tracker


def _runner(tmp_path: Path, *, local: bool = False,
            **options: object) -> tuple[TrialRunner, optuna.Study]:
    """A runner of the tiny space on digits; ``local``: with the ladder's local search (off
    where a test follows the promotions of a seeded sequence of draws)."""
    config = SearchConfig(space="tiny", mlflow=False, out=str(tmp_path), sampler="random")
    data = load_dataset("digits", seed=0)
    runner = TrialRunner(config, load_space("tiny"), data, resolve_device("cpu"),
                         tracker=Tracker(), run_dir=tmp_path, **options)  # type: ignore[arg-type]
    runner.local_search = local and runner.local_search
    return runner, optuna.create_study(direction="maximize",
                                       sampler=optuna.samplers.RandomSampler(seed=0))


def test_a_trial_running_at_the_deadline_is_recorded_with_reason_budget(tmp_path: Path) -> None:
    runner, study = _runner(tmp_path, deadline=time.time())  # the search phase is over
    study.optimize(runner, n_trials=3)
    trials = study.get_trials()
    assert len(trials) == 1  # the search phase ended with the stopped trial
    assert trials[0].state == optuna.trial.TrialState.PRUNED  # to Optuna: no error, no traceback
    record = TrialRecord.from_trial(trials[0])
    assert record.outcome == Outcome.INTERRUPTED and record.reason == "budget"
    assert record.history == ()  # stopped in its first epoch


def test_rungs_promote_the_best_and_stop_the_rest(tmp_path: Path) -> None:
    ladder = Ladder((Rung(0, 200, 2), Rung(1, 600, 2)), eta=3)
    runner, study = _runner(tmp_path, ladder=ladder)
    study.optimize(runner, n_trials=12, catch=())
    trials = [t for t in study.get_trials()
              if TrialRecord.from_trial(t).outcome != Outcome.INFEASIBLE]
    late = [TrialRecord.from_trial(t) for t in trials
            if TrialRecord.from_trial(t).promotion is not None]
    for t in trials:
        assert TrialRecord.from_trial(t).fidelity.train_images in (200, 600)
        # every trial reports rung 0, but a late promotion (its source did)
        assert (0 in t.intermediate_values) == (t.number not in {r.number for r in late})
    stopped = [TrialRecord.from_trial(t) for t in trials
               if t.state == optuna.trial.TrialState.PRUNED]
    climbed = [TrialRecord.from_trial(t) for t in trials
               if t.state == optuna.trial.TrialState.COMPLETE]
    assert stopped and climbed
    assert all("at rung 0" in r.reason and r.fidelity.rung == 0 for r in stopped)
    assert all(r.fidelity == Fidelity(600, 2, 1) for r in climbed)
    # A trial stopped at rung 0 went on later, once enough trials had finished rung 0 below
    # it: a new trial with its parameters, trained from rung 1 as the source would have been.
    assert late, "seed 0 stops a trial that ranks in rung 0's top third later"
    by_number = {t.number: t for t in study.get_trials()}
    for r in late:
        source = by_number[r.promotion.source]
        assert r.promotion.rung == 1 and r.hyperparameters == source.params
        assert source.state == optuna.trial.TrialState.PRUNED
        assert set(by_number[r.number].intermediate_values) == {1}
        before = [t.intermediate_values[0] for t in study.get_trials()
                  if 0 in t.intermediate_values and t.number < r.number]
        assert promotable(source.intermediate_values[0], before, 3)
    assert rung_counts(records(study))[0] == len(trials) - len(late)  # the source counts at rung 0
    assert budget_summary(study, runner.config, None, None)["promoted_late"] == len(late)
    # Ranked like with like: every trial that reached rung 1 before any that stopped at rung 0.
    ranked = ranked_trials(study)
    rungs = [rung_of(t) for t in ranked]
    assert rungs == sorted(rungs, reverse=True) and rungs[0] == 1
    assert len(ranked) == len(trials)


def test_the_ladder_alternates_the_samplers_draws_with_neighbours_of_the_best(
        tmp_path: Path) -> None:
    ladder = Ladder((Rung(0, 200, 2), Rung(1, 600, 2)), eta=3)
    runner, study = _runner(tmp_path, local=True, ladder=ladder)
    study.optimize(runner, n_trials=12, catch=())
    trials = study.get_trials()
    local = [t for t in trials if NEIGHBOUR_ATTR in t.user_attrs]
    assert len(local) >= 3
    for t in local:
        queued_by = trials[t.number - 1]  # one worker: the trial before it queued it
        assert not queued_by.system_attrs.get("fixed_params")  # ... a draw of the sampler
        around = trials[TrialRecord.from_trial(t).neighbour_of]  # its record names it
        assert around.number < t.number
        # It kept the incumbent's parameters but those of a few kinds, which were drawn.
        fixed = t.system_attrs["fixed_params"]
        assert fixed and all(around.params[k] == v for k, v in fixed.items())
        changed = {space_key(k) for k in around.params if k not in fixed}
        assert 1 <= len(changed) <= NEIGHBOUR_KINDS
        # The incumbent was the best network when it was queued: every earlier trial had
        # ended, and the one queueing it had reported rung 0 only.
        rung0_only = optuna.trial.create_trial(
            state=optuna.trial.TrialState.PRUNED,
            intermediate_values={0: queued_by.intermediate_values[0]})
        best = incumbent(trials[:queued_by.number] + [rung0_only])
        assert (queued_by if best is rung0_only else best).number == around.number
    # Every other trial at most: a neighbour never queues one in its turn.
    assert all(NEIGHBOUR_ATTR not in trials[t.number - 1].user_attrs for t in local)
    assert budget_summary(study, runner.config, None, None)["neighbours_of_best"] == len(local)


def test_the_incumbent_is_the_best_at_the_highest_rung_and_one_neighbour_is_queued() -> None:
    study = optuna.create_study(direction="maximize")
    space = load_space("tiny")
    base = dict(space.baselines[0].params)
    dists = {k: optuna.distributions.CategoricalDistribution([v]) for k, v in base.items()}
    for number, values in enumerate(({0: 0.9}, {0: 0.5, 1: 0.6}, {0: 0.7, 1: 0.4})):
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.PRUNED, params=base, distributions=dists,
            intermediate_values=values))
    assert incumbent(study.get_trials()).number == 1  # rung 1 outranks rung 0's 0.9
    assert queue_local(study, space, seed=0) == 1
    (queued,) = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert TrialRecord.from_trial(queued).neighbour_of == 1
    assert queue_local(study, space, seed=1) is None  # one is waiting already
    assert incumbent([]) is None


def test_a_late_promotion_scores_what_its_source_would_have_going_on(tmp_path: Path) -> None:
    # The same parameters trained at rung 1 with the source's seed: the same model, the same
    # score, whether the trial was promoted on time or late.
    ladder = Ladder((Rung(0, 200, 2), Rung(1, 600, 2)), eta=3)
    runner, study = _runner(tmp_path, ladder=ladder)
    study.optimize(runner, n_trials=12, catch=())
    late = next(r for r in map(TrialRecord.from_trial, study.get_trials()) if r.promotion)
    source = study.trials[late.promotion.source]
    runner2, again = _runner(tmp_path / "again", ladder=Ladder((Rung(0, 600, 2),), eta=3))
    runner2.rung_data = {0: runner.rung_data[1]}
    for _ in range(late.promotion.source):  # trial numbers seed the training
        again.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    again.enqueue_trial(source.params)
    again.optimize(runner2, n_trials=1, catch=())
    assert again.trials[-1].value == pytest.approx(late.values[0])


def test_a_promotion_queued_twice_trains_once(tmp_path: Path) -> None:
    # Two workers finishing the same rung at once can both queue the same promotion.
    ladder = Ladder((Rung(0, 200, 2), Rung(1, 600, 2)), eta=3)
    runner, study = _runner(tmp_path, ladder=ladder)
    study.optimize(runner, n_trials=7, catch=())
    source = next(t for t in study.get_trials() if t.state == optuna.trial.TrialState.PRUNED)
    enqueue_promotion(study, source, 1)
    enqueue_promotion(study, source, 1)
    study.optimize(runner, n_trials=2, catch=())
    both = study.get_trials()[-2:]
    first, second = (TrialRecord.from_trial(t) for t in both)
    assert first.promotion == second.promotion and first.outcome == Outcome.COMPLETE
    assert second.outcome == Outcome.PRUNED and second.history == ()
    # Every trial tells the sampler the same constraints (GP needs them on each).
    told = [sorted(k for k in t.system_attrs if k.startswith("constraints")) for t in both]
    assert told[0] and told[0] == told[1]
    assert second.reason == (f"trial {first.number} already promotes trial {source.number} "
                             "to rung 1")


def test_the_summary_line_names_each_rung_the_late_promotions_and_the_neighbours() -> None:
    out = io.StringIO()
    print_budget({"timeout": 720, "wall_seconds": 700.0, "phases": {"search": 500.0},
                  "ladder": {"eta": 3, "rungs": [{"rung": 0, "images": 2040, "epochs": 2},
                                                 {"rung": 1, "images": 3060, "epochs": 4}]},
                  "rungs": [40, 12], "promoted_late": 3, "neighbours_of_best": 1}, out)
    assert ("rung 0: 2,040 images x 2 epochs, 40 trials; rung 1: 3,060 images x 4 epochs, "
            "12 trials; 3 trials promoted late; 1 neighbour of the best so far") \
        in out.getvalue()


def _stopped(number: int, score: float, rung: int = 0) -> optuna.trial.FrozenTrial:
    """A trial that finished ``rung`` (2 epochs) scoring ``score`` and was stopped there."""
    history = ({"epoch": 0, "val_acc": score / 2}, {"epoch": 1, "val_acc": score})
    record = TrialRecord(number, Outcome.PRUNED, history=history,
                         fidelity=Fidelity(200 * 3 ** rung, 2, rung))
    return optuna.trial.create_trial(
        state=optuna.trial.TrialState.PRUNED, params={"x": float(number)},
        distributions={"x": optuna.distributions.FloatDistribution(0, 100)},
        intermediate_values={r: score for r in range(rung + 1)},
        user_attrs=record_attrs(record))


def test_late_promotion_takes_those_that_rose_into_the_top_third() -> None:
    study = optuna.create_study(direction="maximize")
    record = TrialRecord(0, Outcome.COMPLETE, fidelity=Fidelity(600, 2, 1))
    study.add_trial(optuna.trial.create_trial(  # finished rung 0 first and went on at once
        value=0.7, intermediate_values={0: 0.9, 1: 0.7}, user_attrs=record_attrs(record)))
    study.add_trial(_stopped(1, 0.8))  # 1 of 2 finished goes on: 0.9, not 0.8
    study.add_trial(_stopped(2, 0.3))
    assert late_promotions(study, 0, 3) == []  # 1 of 3 goes on: still 0.9 alone
    for n, score in enumerate((0.2, 0.1, 0.15), start=3):
        study.add_trial(_stopped(n, score))
    # 6 finished: 2 go on, 0.9 and 0.8, but trial 1 was stopped when it finished.
    assert [t.number for t in late_promotions(study, 0, 3)] == [1]
    assert promote_late(study, 0, 3) == [1]
    assert late_promotions(study, 0, 3) == []  # queued once
    (queued,) = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert TrialRecord.from_trial(queued).promotion == Promotion(1, 1, 1)
    again = study.ask({"x": optuna.distributions.FloatDistribution(0, 100)})
    assert again.number == queued.number and again.params == {"x": 1.0}
    # A trial the budget stopped (or one that went on and broke a rung's clock) is no
    # candidate, however well it scored at the rung.
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.PRUNED, intermediate_values={0: 0.95},
        user_attrs=record_attrs(TrialRecord(7, Outcome.INTERRUPTED, reason="budget",
                                            fidelity=Fidelity(200, 2, 0)))))
    assert late_promotions(study, 0, 3) == []


@pytest.mark.slow
def test_budgeted_search_ends_in_time_with_a_final_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import automl_cnn.ladder as ladder

    # 30 s of digits buys 8-20 full trainings here, by the machine's speed: always search, so
    # the final fit (not the one trial of a budget too short to search) is what is checked.
    monkeypatch.setattr(ladder, "MIN_SMALL_SEARCH_TRAININGS", 1)
    out = tmp_path / "run"
    started = time.monotonic()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = main(["search", "--timeout", "30s", "--space", "tiny", "--tracking-uri", uri,
                 "--no-progress", "--out", str(out)])
    wall = time.monotonic() - started
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    # The command's own bound is max(5 %, 10 s); a shared CI machine gets some slack here, the
    # benchmark (benchmarks/bench_budget.py) reports the real walls.
    assert wall <= 30 + 10 + 10, wall
    assert summary["final"] and summary["test"]["model"] == "final"
    assert not summary["ladder"]["whole"]  # it searched
    assert 0.0 <= summary["test"]["accuracy"] <= 1.0
    assert set(summary["phases"]) == {"startup", "search", "final_fit", "report"}
    # The wall it reports is the command's own, from its start (within the test's overhead).
    assert summary["wall_seconds"] == pytest.approx(sum(summary["phases"].values()), abs=0.5)
    assert summary["wall_seconds"] <= wall and summary["phases"]["startup"] > 0
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("digits-tiny", "champion")
    assert client.get_run(champion.run_id).info.run_name == "final-fit"
    net = load_best(out)
    own = load_best(out, final=False)
    # A mirrored 2 is no 2: digits' final model scores each image once. Near-tied finalists
    # are averaged (the winner first), and each is refit, not the search's own weights.
    members = list(net.members) if type(net).__name__ == "Ensemble" else [net]
    assert len(members) == len(summary["final"]["members"])
    assert summary["final"]["members"][0] == summary["best"]["trial"]
    assert all(type(m).__name__ == "Sequential" for m in members)
    assert any((a != b).any() for a, b in zip(members[0].state_dict().values(),
                                               own.state_dict().values()))


@pytest.mark.slow
def test_a_budget_too_short_to_search_trains_the_first_baseline_for_all_of_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 1,700 clutter training images, 20 s: a tenth of a full training on a 2-core CPU.
    out = tmp_path / "run"
    started = time.monotonic()
    code = main(["search", "--dataset", "clutter:2000", "--timeout", "20s", "--no-mlflow",
                 "--out", str(out)])
    wall = time.monotonic() - started
    assert code == 0
    printed = capsys.readouterr()
    assert "training (no search)" in printed.err  # the bar counts the epochs, not trials
    assert "No search: the budget buys" in printed.out
    assert wall <= 20 + 10 + 10, wall  # the command's bound is 10 s; CI gets some slack
    summary = json.loads((out / "summary.json").read_text())
    ladder = summary["ladder"]
    assert ladder["whole"] and "full trainings" in ladder["reason"]
    assert summary["trials"] == 1 and summary["counts"]["complete"] == 1  # none left waiting
    assert summary["final"] is None and summary["test"]["model"] == "search"
    study = optuna.load_study(study_name=None, storage=make_storage(f"journal:{out / 'study.journal'}"))
    record = TrialRecord.from_trial(study.trials[0])
    assert record.baseline == load_space("default").baselines[0].name
    # It trains until the deadline (its schedule runs by the clock), however many epochs
    # that is, and says how many; it is scored once, at the end: a per-epoch validation score
    # would be in-sample.
    assert record.fidelity.epochs == len(record.history) == summary["best"]["epochs_trained"]
    assert f"({len(record.history)} epochs on" in printed.out
    assert [("val_acc" in row) for row in record.history][-1]
    assert not any("val_acc" in row for row in record.history[:-1])
    assert record.val_acc == record.history[-1]["val_acc"]
    # Nothing to select, so it learned from the validation images too, and says so.
    data = load_dataset("clutter:2000", seed=0)
    assert record.fidelity.with_val
    assert record.fidelity.train_images == len(data.y_train) + len(data.y_val)
    assert summary["best"]["in_sample"] and "in-sample" in printed.out
    meta = json.loads((Path(summary["best_model_dir"]) / "meta.json").read_text())
    assert meta["trained_on"] == "train+val"
    # clutter's labels survive a flip: the model handed over averages each image and its mirror
    # image, and that is the model tested, loaded and exported.
    from automl_cnn.network import FlipAveraged

    assert record.spec.head.tta == "flip" and summary["best"]["arch"]["head"]["tta"] == "flip"
    assert isinstance(load_best(out), FlipAveraged)
    assert summary["test"]["tta"] == "flip" and "averaged with its mirror image" in printed.out


def test_an_in_sample_score_ranks_below_every_held_out_one() -> None:
    # A study that was too short to search, resumed with a longer budget: its one trial's
    # validation score was measured on images it trained on, so a searched trial with a lower
    # held-out score still ranks above it.
    def done(number: int, acc: float, fidelity: Fidelity) -> TrialRecord:
        return TrialRecord(number=number, outcome=Outcome.COMPLETE, values=(acc,),
                           fidelity=fidelity)

    in_sample = done(0, 0.99, Fidelity(23_000, 9, 0, whole=True, with_val=True))
    searched = [done(1, 0.80, Fidelity(2_000, 2, 0)), done(2, 0.85, Fidelity(20_000, 6, 1))]
    assert [r.number for r in rank([in_sample, *searched])] == [2, 1, 0]
    assert [r.number for r in rank([in_sample])] == [0]  # alone, it is still the best there is


@pytest.mark.slow
def test_a_searched_winner_that_reaches_its_cap_early_is_trained_again_with_other_seeds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # The same after a search: the winner's final fit reaches its epoch cap (here the
    # recipe's own epochs) long before the deadline, so the time left trains it again with
    # other seeds instead of ending early (clutter:3600 at 720 s on this CPU: the final fit hit
    # its 96-epoch cap in 205 s and the command ended ~120 s inside its budget).
    import automl_cnn.final_fit as final_fit
    import automl_cnn.ladder as ladder

    monkeypatch.setattr(ladder, "MIN_SMALL_SEARCH_TRAININGS", 1)  # always search
    monkeypatch.setattr(final_fit, "MAX_EPOCH_FACTOR", 1)
    out = tmp_path / "run"
    code = main(["search", "--dataset", "digits", "--space", "tiny", "--timeout", "30s",
                 "--trials", "1", "--no-mlflow", "--no-progress", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert not summary["ladder"]["whole"] and summary["trials"] == 1  # it searched
    final = summary["final"]
    n = final["trainings"]
    assert n in (2, 3) and final["members"] == [summary["best"]["trial"]]
    assert len(final["member_epochs"]) == n and final["epochs"] == final["epochs_planned"]
    assert f"the average of {n} trainings of it" in printed and "More trainings: trial" in printed
    assert f"the first of {n} trainings of the winner" in Path(summary["report"]).read_text()
    net = load_best(out)  # the average, each network with its own seed
    assert type(net).__name__ == "Ensemble" and len(net.members) == n
    states = [m.state_dict() for m in net.members]
    assert any((a != b).any() for a, b in zip(states[0].values(), states[1].values()))
    assert summary["test"]["model"] == "final" and summary["wall_seconds"] <= 30 + 10


@pytest.mark.slow
def test_time_left_after_the_baselines_epoch_cap_trains_it_again_with_other_seeds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # No budget here searches (no count of trainings is enough) and the cap is the recipe's
    # own 4 epochs, so the one baseline ends long before the 40 s deadline: the time left trains
    # it again with other seeds, and the model handed over is their average.
    import automl_cnn.final_fit as final_fit
    import automl_cnn.ladder as ladder

    monkeypatch.setattr(ladder, "MIN_SEARCH_TRAININGS", 10**9)
    monkeypatch.setattr(ladder, "MIN_SMALL_SEARCH_TRAININGS", 10**9)
    monkeypatch.setattr(final_fit, "MAX_EPOCH_FACTOR", 1)
    out = tmp_path / "run"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    started = time.monotonic()
    code = main(["search", "--dataset", "digits", "--space", "tiny", "--timeout", "40s",
                 "--tracking-uri", uri, "--no-progress", "--out", str(out)])
    wall = time.monotonic() - started
    assert code == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ladder"]["whole"] and summary["trials"] == 1
    final = summary["final"]
    n = final["trainings"]  # each further training gets at least half the first's time
    assert n in (2, 3) and final["members"] == [summary["best"]["trial"]]
    assert final["epochs_planned"] == 4 and final["member_epochs"][0] == 4
    assert len(final["member_epochs"]) == n and max(final["member_epochs"]) == 4
    assert summary["test"]["model"] == "final" and summary["search_test"]["model"] == "search"
    assert f"the average of {n} trainings of it" in printed and "More trainings: trial" in printed
    assert wall <= 40 + 10 + 10, wall
    # The first network is the trial's own weights; the others are new trainings of the same
    # recipe on train + validation, each with its own seed.
    net = load_best(out)
    assert type(net).__name__ == "Ensemble" and len(net.members) == n
    own = load_best(out, final=False)
    states = [m.state_dict() for m in net.members]
    assert all((a == b).all() for a, b in zip(states[0].values(), own.state_dict().values()))
    for i, j in ((0, 1), (0, 2), (1, 2))[:1 if n == 2 else 3]:
        assert any((a != b).any() for a, b in zip(states[i].values(), states[j].values()))
    meta = json.loads((out / "final" / "meta.json").read_text())
    assert meta["trained_on"] == "train+val"
    # The report says so, and the MLflow champion is the average.
    more = f"{n - 1} more training{'' if n == 2 else 's'} of"
    assert more in printed and more in Path(summary["report"]).read_text()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("digits-tiny", "champion")
    assert client.get_run(champion.run_id).info.run_name == "final-fit"


@pytest.mark.slow
def test_too_short_to_search_under_a_limit_trains_a_baseline_that_fits(tmp_path: Path) -> None:
    # Both baselines are over 50k parameters on 32x32 clutter: they cost no training, and the
    # one trial that trains is a baseline narrowed to fit.
    out = tmp_path / "run"
    code = main(["search", "--dataset", "clutter:2000", "--timeout", "25s", "--no-mlflow",
                 "--max-params", "50000", "--no-progress", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ladder"]["whole"]
    assert summary["counts"]["complete"] == 1 and summary["counts"]["over_limit"] >= 1
    assert summary["best"]["params"] <= 50_000 and summary["test"]["accuracy"] is not None


def test_trials_without_timeout_keep_their_meaning(tmp_path: Path) -> None:
    outcome = run_search(SearchConfig(trials=3, space="tiny", mlflow=False, final_fit=False,
                                      out=str(tmp_path / "run")), progress=False)
    summary = outcome.summary
    assert summary["trials"] == 3 and summary["ladder"]["rungs"][0]["epochs"] is None
    assert summary["rungs"] == [] and summary["final"] is None
    assert summary["test"]["model"] == "search"
    # By default the final fit trains the winner for its own epochs on train + validation.
    outcome = run_search(SearchConfig(trials=2, space="tiny", mlflow=False,
                                      out=str(tmp_path / "fit")), progress=False)
    final = outcome.summary["final"]
    assert final["epochs"] == final["epochs_planned"] == outcome.summary["best"]["arch"][
        "train"]["epochs"]
    assert final["train_images"] == sum(load_dataset("digits", seed=0).sizes()[k]
                                        for k in ("train", "val"))
    assert outcome.summary["test"]["model"] == "final"
    assert outcome.summary["search_test"]["model"] == "search"  # its own weights, kept beside


def test_time_the_final_fit_cannot_use_goes_back_to_the_search() -> None:
    import torch

    from automl_cnn.arch import ArchSpec, ConvBlock, HeadSpec, TrainSpec
    from automl_cnn.budget import Budget
    from automl_cnn.data import ImageSplits
    from automl_cnn.record import record_attrs
    from automl_cnn.runners.phases import SearchPlan, search_rounds

    def images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(n, 1, 4, 4, dtype=torch.uint8), torch.zeros(n, dtype=torch.long)

    (xt, yt), (xv, yv), (xs, ys) = images(1000), images(400), images(10)
    data = ImageSplits("blank", tuple("ab"), xt, yt, xv, yv, xs, ys)
    spec = ArchSpec(blocks=(ConvBlock(8),), head=HeadSpec(), train=TrainSpec(epochs=10))
    history = tuple({"epoch": e, "val_acc": 0.9, "seconds": 0.1 * (e + 1)} for e in range(10))
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.9, user_attrs=record_attrs(TrialRecord(
        number=0, outcome=Outcome.COMPLETE, spec=spec, history=history))))
    now = [0.0]
    budget = Budget.start(60, final_share=0.5, clock=lambda: now[0])
    plan = SearchPlan(Ladder.flat(1000), 1e4, 0.0)
    rounds = search_rounds(plan, study, budget, data, SearchConfig())
    assert next(rounds) is budget
    now[0] = budget.search_end  # the planned search phase is over
    extended = next(rounds)
    # 0.14 s an epoch on train + validation, at most 8 x 10 epochs: ~11 s of a ~28 s share.
    need = 80 * 0.1 * 1400 / 1000
    assert extended.final_end == budget.final_end  # the command still ends on time
    assert extended.search_left() == pytest.approx(budget.final_left() - 1.25 * need)
    assert extended.final_left() - extended.search_left() == pytest.approx(1.25 * need)
    assert list(rounds) == []  # once
    # A budget too short to search, or a final fit that needs its whole share: one round.
    whole = SearchPlan(Ladder.whole_budget(1000, 5, "short"), 1e4, 0.0)
    assert list(search_rounds(whole, study, budget, data, SearchConfig())) == [budget]
