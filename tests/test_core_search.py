"""Searches end to end: pruning, infeasible trials, resume, reproducibility, bad input, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch

from automl_cnn.api import load_best
from automl_cnn.cli import main
from automl_cnn.config import SearchConfig
from automl_cnn.record import TrialRecord, records
from automl_cnn.results import count_outcomes, ranked_trials
from automl_cnn.runners.search import run_search
from automl_cnn.storage import make_storage

FAST_SPACE = """
depth: 1
block: {filters: 8, kernel: 3, padding: 1, batch_norm: true, pool: max}
head: {global_pool: flatten}
optim:
  name: sgd
  lr: {low: 1.0e-3, high: 100.0, log: true}
  schedule: constant
  label_smoothing: 0.0
  momentum: 0.9
  batch_size: 128
  epochs: 4
"""


def load(run_dir: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name,
                             storage=make_storage(f"journal:{run_dir / 'study.journal'}"))


def test_hopeless_trial_is_pruned(tmp_path: Path) -> None:
    space = tmp_path / "fast.yaml"
    space.write_text(FAST_SPACE)
    config = SearchConfig(trials=7, space=str(space), out=str(tmp_path / "run"), mlflow=False,
                          sampler="random")
    study_name = config.resolved_study_name
    # Five sensible learning rates set the median, then a learning rate 1000× too high.
    run_dir = config.run_dir
    storage = make_storage(config.storage_url)
    from automl_cnn.runners.study import open_study
    from automl_cnn.search_spaces import load_space

    study = open_study(config, load_space(str(space)), create=True, storage=storage)
    for lr in (0.05, 0.1, 0.08, 0.06, 0.12):
        study.enqueue_trial({"optim.lr": lr})
    study.enqueue_trial({"optim.lr": 90.0})
    # the study exists in the storage already, so go through --resume semantics
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(config.to_json())
    run_search(config.replace(trials=6), resume=True, progress=False)
    trials = load(run_dir, study_name).trials
    hopeless, record = trials[5], TrialRecord.from_trial(trials[5])
    assert hopeless.params["optim.lr"] == 90.0
    assert hopeless.state == optuna.trial.TrialState.PRUNED
    assert record.outcome == "pruned"
    assert record.epochs_trained < record.epochs_budget
    assert record.pruned_epoch == record.epochs_trained - 1
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials[:5])


def test_infeasible_architecture_is_recorded_without_training(tmp_path: Path) -> None:
    space = tmp_path / "deep.yaml"
    space.write_text("depth: 4\nblock: {filters: 4, kernel: 3, padding: 0, pool: none}\n"
                     "optim: {epochs: 1, lr: {low: 0.001, high: 0.01}}\n")
    config = SearchConfig(trials=2, space=str(space), out=str(tmp_path / "run"), mlflow=False)
    outcome = run_search(config, progress=False)
    study = outcome.study
    for trial in records(study):  # 8 -> 6 -> 4 -> 2 -> kernel 3 does not fit 2
        assert trial.outcome == "infeasible"
        assert "block4.conv" in trial.reason
        assert trial.epochs_trained == 0
        assert trial.values == (0.0,)  # the worst accuracy: samplers learn to avoid it
    assert outcome.summary["counts"]["infeasible"] == 2
    assert outcome.summary["best"] is None


@pytest.mark.slow
def test_cli_search_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.run(
        ["automl-cnn", "search", "--trials", "8", "--space", "tiny", "--no-mlflow",
         "--out", str(out), "--seed", "1"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials"] == 8 and sum(summary["counts"].values()) == 8
    study = load(out, summary["study_name"])
    best = ranked_trials(study)[0]
    assert summary["best"]["trial"] == best.number
    assert summary["best"]["value"] == pytest.approx(best.val_acc)
    assert summary["best"]["value"] > 0.5  # chance is 0.1
    assert summary["test"]["trial"] == best.number and summary["test"]["accuracy"] > 0.5
    counts = dict(summary["counts"])
    assert counts.pop("over_limit") == 0  # no hard limits: none over one
    assert counts == count_outcomes(r.outcome for r in records(study))
    kept = sorted(p.name for p in (out / "models").iterdir() if p.name != ".lock")
    assert f"trial-{best.number:04d}" in kept and len(kept) <= 3  # single-objective: --keep
    # The terminal shows a progress bar and a summary, no Lightning banners.
    assert "GPU available" not in proc.stderr + proc.stdout
    assert "Best trial" in proc.stdout and "block1.conv" in proc.stdout
    assert "Test accuracy" in proc.stdout
    assert f"Report: {out / 'report.html'}" in proc.stdout and (out / "report.html").exists()


def test_resume_adds_trials_to_the_same_study(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["search", "--trials", "3", "--space", "tiny", "--no-mlflow", "--no-progress",
            "--out", str(out)]
    assert main(args) == 0
    first = load(out, "digits-tiny")
    first_params = [t.params for t in first.trials]
    journal = (out / "study.journal").read_bytes()
    # Without --resume the run directory is refused and nothing changes.
    assert main(args) == 2
    assert (out / "study.journal").read_bytes() == journal
    assert main(args[:2] + ["2"] + args[3:] + ["--resume"]) == 0
    again = load(out, "digits-tiny")
    assert again._study_id == first._study_id
    assert [t.number for t in again.trials] == [0, 1, 2, 3, 4]
    assert [t.params for t in again.trials[:3]] == first_params


@pytest.mark.parametrize(("precision", "trained_in"), [("32", "32-true"), ("bf16", "bf16-mixed")])
def test_either_precision_trains_a_search_and_hands_over_fp32_weights(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], precision: str,
        trained_in: str) -> None:
    out = tmp_path / "run"
    assert main(["search", "--trials", "3", "--space", "tiny", "--no-mlflow", "--no-progress",
                 "--out", str(out), "--precision", precision]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["precision"] == trained_in
    said = "s on cpu (bf16 mixed precision)" if precision == "bf16" else "s on cpu\n"
    assert said in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["precision"] == precision
    assert summary["test"]["accuracy"] > 0.5  # chance is 0.1
    model = load_best(out)
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_same_seed_same_search_on_cpu(tmp_path: Path) -> None:
    results = []
    for name in ("a", "b"):
        config = SearchConfig(trials=4, space="tiny", out=str(tmp_path / name), mlflow=False,
                              seed=7, device="cpu")
        study = run_search(config, progress=False).study
        results.append([(t.params, t.value, t.state) for t in study.trials])
    assert results[0] == results[1]


@pytest.mark.parametrize(("args", "needles"), [
    (["--dataset", "imagenet"], ["unknown dataset 'imagenet'", "digits", "shapes"]),
    (["--space", "huge"], ["unknown search space 'huge'", "default, tiny"]),
    (["--sampler", "bayes"], ["unknown sampler 'bayes'", "tpe, random, gp"]),
    (["--pruner", "early"], ["unknown pruner 'early'", "median", "hyperband"]),
    (["--trials", "0"], ["--trials must be at least 1", "got 0"]),
    (["--timeout", "-5"], ["--timeout", "-5"]),
    (["--device", "tpu"], ["unknown device 'tpu'", "cpu"]),
    (["--precision", "fp8"], ["unknown precision 'fp8'", "auto, 32, bf16"]),
    (["--objective", "params"], ["leaves out val_acc"]),
    (["--objective", "val_acc", "--objective", "params"], ["multi-objective", "--pruner none"]),
    (["--storage", "postgresql://nobody@127.0.0.1:1/nothing"],
     ["cannot open the study storage", "127.0.0.1:1", "database server is running"]),
])
def test_bad_input_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      args: list[str], needles: list[str]) -> None:
    out = tmp_path / "run"
    code = main(["search", "--trials", "1", "--no-mlflow", "--no-progress", "--out", str(out),
                 *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("automl-cnn: error:") and "Traceback" not in err
    for needle in needles:
        assert needle in " ".join(err.split())
    assert not (out / "summary.json").exists()


def test_out_dir_holding_another_study_is_refused(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["search", "--trials", "1", "--space", "tiny", "--no-mlflow", "--no-progress",
                 "--out", str(out)]) == 0
    before = (out / "study.journal").read_bytes()
    code = main(["search", "--trials", "1", "--space", "tiny", "--no-mlflow", "--no-progress",
                 "--out", str(out), "--study-name", "other", "--resume"])
    assert code == 2
    assert "holds study 'digits-tiny'" in capsys.readouterr().err
    assert (out / "study.journal").read_bytes() == before


def test_postgres_storage_is_shared_by_name(tmp_path: Path) -> None:
    """Two searches on one PostgreSQL study name add to the same study."""
    url = os.environ.get("AUTOML_CNN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        make_storage(url)
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("CI"):
            raise  # CI machines run PostgreSQL: a skip there would hide a broken install
        pytest.skip(f"no PostgreSQL at {url}: {exc}")
    name = f"pg-{os.getpid()}-{time.time_ns()}"
    base = SearchConfig(trials=2, space="tiny", storage=url, study_name=name, mlflow=False)
    run_search(base.replace(out=str(tmp_path / "w1")), progress=False)
    run_search(base.replace(out=str(tmp_path / "w2")), resume=True, progress=False)
    study = optuna.load_study(study_name=name, storage=url)
    assert len(study.trials) == 4
    optuna.delete_study(study_name=name, storage=url)


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "automl_cnn", "search", "--trials", "200", "--space", "default",
         "--no-mlflow", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 120
    models = out / "models"
    while time.time() < deadline and not (models.exists() and any(models.iterdir())):
        time.sleep(0.2)  # wait until at least one trial has finished
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Resume with" in stdout and "--resume" in stdout
    assert "Traceback" not in stderr
    study = load(out, "digits-default")
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.RUNNING not in states
    assert states.count(optuna.trial.TrialState.COMPLETE) >= 1
    assert json.loads((out / "summary.json").read_text())["interrupted"] is True


def test_ties_in_accuracy_are_broken_by_validation_loss(tmp_path: Path) -> None:
    from automl_cnn.results import rank_key

    assert rank_key(1.0, 0.05, 9) < rank_key(1.0, 0.2, 3) < rank_key(0.99, 0.01, 1)
    config = SearchConfig(trials=5, space="tiny", out=str(tmp_path / "run"), mlflow=False)
    outcome = run_search(config, progress=False)
    ranked = ranked_trials(outcome.study)
    keys = [rank_key(t.val_acc, t.history[-1]["val_loss"], t.number) for t in ranked]
    assert keys == sorted(keys)
    kept = sorted(p.name for p in (config.run_dir / "models").iterdir() if p.name != ".lock")
    assert kept == sorted(f"trial-{t.number:04d}" for t in ranked[:3])
