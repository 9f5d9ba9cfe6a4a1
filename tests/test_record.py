"""The typed trial record: round trips through a real journal study, one writer, no reader
that depends on the search runner."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import optuna
import pytest

from automl_cnn.arch import ArchSpec, ConvBlock
from automl_cnn.config import SearchConfig
from automl_cnn.record import (
    DatasetInfo,
    Fidelity,
    Outcome,
    PlanSummary,
    Promotion,
    Timings,
    TrialRecord,
    Worker,
    enqueue_baseline,
    enqueue_promotion,
    load_config,
    promotion_of,
    read_study_info,
    records,
    write_record,
    write_study_info,
)
from automl_cnn.rundir import RunDir
from automl_cnn.shapes import plan_layers
from automl_cnn.storage import make_storage

ROOT = Path(__file__).resolve().parents[1]
SPEC = ArchSpec(blocks=(ConvBlock(8, kernel=3, padding=1, pool="max"),))
PLAN = PlanSummary.of(SPEC, plan_layers(SPEC, (1, 8, 8), 10))
HISTORY = tuple({"epoch": e, "train_loss": 1.0 / (e + 1), "val_loss": 0.9 / (e + 1),
                 "val_acc": 0.5 + e / 10, "seconds": 0.1 * (e + 1)} for e in range(3))


def journal_study(tmp_path: Path) -> optuna.Study:
    url = RunDir(tmp_path / "run").journal_url
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name="s", storage=make_storage(url), direction="maximize")


def reopen(tmp_path: Path) -> optuna.Study:
    return optuna.load_study(study_name="s",
                             storage=make_storage(RunDir(tmp_path / "run").journal_url))


def full_record(number: int, outcome: Outcome) -> TrialRecord:
    return TrialRecord(
        number=number, outcome=outcome, reason=f"because {outcome.value}",
        hyperparameters={"optim.lr": 0.01}, spec=SPEC, plan=PLAN, history=HISTORY,
        pruned_epoch=2 if outcome == Outcome.PRUNED else None,
        fidelity=Fidelity(train_images=500, epochs=3, rung=1),
        timings=Timings(1.25, 1.5), worker=Worker("host-a", 1234), baseline="small",
        limit="max_params" if outcome == Outcome.INFEASIBLE else None,
        promotion=Promotion(source=7, rung=1, first=3))


# How each outcome ends in Optuna: (state, whether it returns a value).
ENDINGS = {
    Outcome.COMPLETE: (optuna.trial.TrialState.COMPLETE, True),
    Outcome.INFEASIBLE: (optuna.trial.TrialState.COMPLETE, True),
    Outcome.PRUNED: (optuna.trial.TrialState.PRUNED, False),
    Outcome.FAILED: (optuna.trial.TrialState.FAIL, False),
    Outcome.INTERRUPTED: (optuna.trial.TrialState.FAIL, False),
    Outcome.RUNNING: (optuna.trial.TrialState.RUNNING, False),
}


@pytest.mark.parametrize("outcome", list(Outcome))
def test_every_outcome_round_trips_through_a_journal_study(tmp_path: Path,
                                                            outcome: Outcome) -> None:
    study = journal_study(tmp_path)
    trial = study.ask({"optim.lr": optuna.distributions.FloatDistribution(1e-3, 1.0, log=True)})
    record = full_record(trial.number, outcome).replace(
        hyperparameters=dict(trial.params))
    state, valued = ENDINGS[outcome]
    if valued:
        record = record.replace(values=(0.75,))
    write_record(trial, record)
    if state != optuna.trial.TrialState.RUNNING:
        study.tell(trial, 0.75 if valued else None, state=state)
    (back,) = records(reopen(tmp_path))
    assert back == record
    assert back.started is not None and "optim.lr" in back.distributions
    assert (back.finished is None) == (outcome == Outcome.RUNNING)


def test_derived_values_of_a_record() -> None:
    done = full_record(0, Outcome.COMPLETE).replace(values=(0.9,))
    assert done.val_acc == 0.9 and done.val_loss == pytest.approx(0.3)
    assert done.epochs_trained == 3 and done.epochs_budget == 3  # the fidelity's epochs
    pruned = full_record(1, Outcome.PRUNED).replace(fidelity=None)
    assert pruned.val_acc == pytest.approx(0.7)  # the last epoch's, not a final value
    assert pruned.epochs_budget == SPEC.train.epochs
    assert TrialRecord(2, Outcome.INFEASIBLE).val_acc is None


def test_a_crashed_workers_running_record_reads_as_failed(tmp_path: Path) -> None:
    study = journal_study(tmp_path)
    trial = study.ask()
    write_record(trial, TrialRecord(trial.number, Outcome.RUNNING, spec=SPEC))
    study.tell(trial, state=optuna.trial.TrialState.FAIL)  # what a heartbeat check does
    (back,) = records(reopen(tmp_path))
    assert back.outcome == Outcome.FAILED and back.spec == SPEC


def test_a_running_trial_shows_the_pruners_values_as_its_history(tmp_path: Path) -> None:
    study = journal_study(tmp_path)
    trial = study.ask()
    write_record(trial, TrialRecord(trial.number, Outcome.RUNNING, spec=SPEC, plan=PLAN))
    trial.report(0.4, 0)
    trial.report(0.6, 1)
    (back,) = records(reopen(tmp_path))
    assert back.outcome == Outcome.RUNNING
    assert [(r["epoch"], r["val_acc"]) for r in back.history] == [(0, 0.4), (1, 0.6)]


def test_a_baseline_is_named_before_and_after_its_record(tmp_path: Path) -> None:
    study = journal_study(tmp_path)
    enqueue_baseline(study, {"x": 1}, "small")
    trial = study.ask({"x": optuna.distributions.IntDistribution(0, 3)})
    write_record(trial, TrialRecord(trial.number, Outcome.RUNNING))  # runner lost the name
    (back,) = records(reopen(tmp_path))
    assert back.baseline == "small"


def test_a_late_promotion_is_named_while_it_waits_and_after_its_record(
        tmp_path: Path) -> None:
    study = journal_study(tmp_path)
    lr = {"optim.lr": optuna.distributions.FloatDistribution(1e-3, 1.0, log=True)}
    enqueue_baseline(study, {"optim.lr": 0.05}, "small")
    source = study.ask(lr)
    study.tell(source, state=optuna.trial.TrialState.PRUNED)
    enqueue_promotion(study, study.trials[0], rung=1)
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))[0]
    assert promotion_of(waiting) == Promotion(source=0, rung=1, first=0)
    again = study.ask(lr)  # the promotion: the source's parameters, its baseline name
    assert again.params == {"optim.lr": 0.05}
    write_record(again, TrialRecord(again.number, Outcome.RUNNING))
    enqueue_promotion(study, study.trials[1], rung=2)  # a promotion of a promotion ...
    (_, back) = records(reopen(tmp_path))  # ... still waiting: not a trial that ran
    assert back.promotion == Promotion(source=0, rung=1, first=0) and back.baseline == "small"
    assert promotion_of(reopen(tmp_path).trials[2]) == Promotion(source=1, rung=2, first=0)


def test_studies_written_by_0_1_0_still_read(tmp_path: Path) -> None:
    """0.1.0 wrote one user attribute per value; such a study still ranks and reports."""
    study = journal_study(tmp_path)
    trial = study.ask()
    old = {"arch": SPEC.to_dict(), "outcome": "complete", "params": PLAN.params,
           "flops": PLAN.flops, "receptive_field": PLAN.receptive_field,
           "layer_plan": list(PLAN.layer_plan), "history": list(HISTORY),
           "epochs_budget": SPEC.train.epochs, "epochs_trained": 3, "train_seconds": 1.25}
    for key, value in old.items():
        trial.set_user_attr(key, value)
    study.tell(trial, 0.7)
    (back,) = records(reopen(tmp_path))
    assert back.outcome == Outcome.COMPLETE and back.spec == SPEC
    assert back.plan == PLAN
    assert back.history == HISTORY and back.timings.train_seconds == 1.25
    assert back.fidelity is None  # the spec's own epochs: the full budget


def test_study_info_round_trips(tmp_path: Path) -> None:
    study = journal_study(tmp_path)
    assert read_study_info(study).config is None
    with pytest.raises(Exception, match="not created by automl-cnn"):
        load_config(study)
    config = SearchConfig(space="tiny", seed=3, objectives=("val_acc", "params"), pruner="none")
    dataset = DatasetInfo("digits", tuple("0123456789"), (1, 8, 8), 10, {"train": 5})
    write_study_info(study, config=config, dataset=dataset)
    info = read_study_info(reopen(tmp_path))
    assert info.config == config and info.dataset == dataset


# -- the shape of the code ---------------------------------------------------------------------
SOURCES = [p for d in ("automl_cnn", "runners", "dashboards", "search_spaces")
           for p in sorted((ROOT / d).rglob("*.py"))]
READERS = ["automl_cnn/results.py", "automl_cnn/api.py", "automl_cnn/cli/best.py",
           "automl_cnn/cli/dashboard.py", *(str(p.relative_to(ROOT)) for p in
                                            sorted((ROOT / "dashboards").glob("*.py")))]


def test_only_the_record_module_writes_or_reads_user_attributes() -> None:
    pattern = re.compile(r"set_user_attr|user_attrs\[|\.user_attrs\.get\(")
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p in SOURCES
                 for i, line in enumerate(p.read_text().splitlines(), 1)
                 if pattern.search(line) and p.name != "record.py"]
    assert offenders == []


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module if node.level == 0 else f"(relative).{node.module}"
            names.add(base)
    return names


@pytest.mark.parametrize("reader", READERS)
def test_no_reader_imports_the_search_runner(reader: str) -> None:
    imported = _imports(ROOT / reader)
    assert not [m for m in imported if m.startswith(("automl_cnn.runners", "runners"))]


def test_the_library_does_not_import_the_cli() -> None:
    library = [p for p in SOURCES if "cli" not in p.relative_to(ROOT).parts
               and p.name != "__main__.py"]
    offenders = [str(p.relative_to(ROOT)) for p in library
                 if any(m.startswith("automl_cnn.cli") for m in _imports(p))]
    assert offenders == []


def test_finished_trials_records_are_built_once_running_ones_each_time() -> None:
    from automl_cnn.record import record_of

    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    running = study.ask()
    first = {t.number: record_of(t) for t in study.get_trials(deepcopy=False)}
    again = {t.number: record_of(t) for t in study.get_trials(deepcopy=False)}
    assert first[0] is again[0] and first[1] is again[1]  # finished: the same record
    assert first[running.number] is not again[running.number]  # running: read afresh
    # A copy of a finished trial (another storage's object) gets its own, equal record.
    copy = study.get_trials(deepcopy=True)[0]
    assert record_of(copy) is not first[0] and record_of(copy) == first[0]
