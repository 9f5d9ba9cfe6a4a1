"""Searching for a target device, end to end: hard limits, the latency objective, Pareto fronts
(summary, `best --pareto`, load_best(pareto=i), export --pareto, MLflow)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import mlflow
import pytest
import torch

import automl_cnn
from automl_cnn.checkpoint import load_checkpoint
from automl_cnn.cli import main
from automl_cnn.config import SearchConfig
from automl_cnn.export import export_model
from automl_cnn.pareto import pareto_front
from automl_cnn.record import Outcome, records
from automl_cnn.runners.search import run_search

# The tiny space's only baseline (one 16-filter block, flatten head) has 2,730 parameters.
LIMIT = 2000


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory):
    """A tiny digits search whose --max-params no baseline meets."""
    out = tmp_path_factory.mktemp("limited") / "run"
    config = SearchConfig(trials=8, space="tiny", out=str(out), mlflow=False,
                          max_params=LIMIT)
    return run_search(config, progress=False)


def test_a_limit_no_baseline_meets_still_yields_a_valid_best(limited) -> None:
    recs = records(limited.study)
    baseline = recs[0]
    assert baseline.baseline == "small conv-bn-relu" and baseline.plan.params > LIMIT
    assert baseline.outcome == Outcome.INFEASIBLE and baseline.limit == "max_params"
    assert baseline.reason == f"over --max-params: {baseline.plan.params:,} parameters > 2,000"
    narrowed = recs[1]
    assert narrowed.baseline == "small conv-bn-relu (narrowed to fit max_params)"
    assert narrowed.outcome == Outcome.COMPLETE and narrowed.plan.params <= LIMIT
    best = limited.summary["best"]
    assert best is not None and best["params"] <= LIMIT
    assert limited.summary["test"]["trial"] == best["trial"]  # a kept, tested model
    assert all(r.plan.params <= LIMIT for r in recs if r.outcome == Outcome.COMPLETE)
    net = automl_cnn.load_best(limited.run_dir)
    assert sum(p.numel() for p in net.parameters()) <= LIMIT


def test_a_trial_over_max_params_costs_no_training(limited) -> None:
    recs = records(limited.study)
    over = [r for r in recs if r.limit == "max_params"]
    trained = [r for r in recs if r.outcome in (Outcome.COMPLETE, Outcome.PRUNED)]
    assert over and trained
    for r in over:
        assert r.epochs_trained == 0 and r.history == () and r.timings.train_seconds == 0.0
        assert r.values == (0.0,)  # the worst accuracy, like a shape that does not fit
        # planning and checking it took less than the shortest real training
        assert r.timings.total_seconds < min(t.timings.train_seconds for t in trained)
    counts = limited.summary["counts"]
    assert counts["over_limit"] == len(over) == limited.summary["over_limit"]["max_params"]
    assert counts["infeasible"] == sum(1 for r in recs if r.outcome == Outcome.INFEASIBLE
                                       and r.limit is None)


def test_the_sampler_is_told_through_optuna_constraints(limited) -> None:
    finished = [t for t in limited.study.get_trials() if t.state.name in ("COMPLETE", "PRUNED")]
    assert finished and all("constraints:max_params" in t.system_attrs for t in finished)
    by_number = {r.number: r for r in records(limited.study)}
    for t in finished:
        value = t.constraints["max_params"]  # (params - limit) / limit, what TPE reads
        record = by_number[t.number]
        if record.plan is not None:
            assert value == pytest.approx((record.plan.params - LIMIT) / LIMIT)
            assert (value > 0) == (record.limit == "max_params")


@pytest.fixture(scope="module")
def front_run(tmp_path_factory: pytest.TempPathFactory):
    """A two-objective search (accuracy, measured latency), tracked in MLflow."""
    tmp = tmp_path_factory.mktemp("front")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    config = SearchConfig(trials=8, space="tiny", out=str(tmp / "run"), sampler="nsgaii",
                          pruner="none", objectives=("val_acc", "latency"), keep=1,
                          tracking_uri=uri, seed=1)
    return run_search(config, progress=False), uri


def test_latency_objective_is_measured_before_training_and_recorded(front_run) -> None:
    outcome, _ = front_run
    done = [r for r in records(outcome.study) if r.outcome == Outcome.COMPLETE]
    assert done
    for r in done:
        assert r.plan.latency_device == "cpu (1 thread)"
        assert r.values[1] == r.plan.latency_ms > 0
    cache = json.loads((outcome.run_dir / "latency.json").read_text())
    assert len(cache) == len({json.dumps(r.spec.to_dict()["blocks"]) + json.dumps(
        r.spec.to_dict()["head"]) for r in records(outcome.study) if r.plan})


def test_summary_lists_the_pareto_front_and_every_point_exports(front_run, tmp_path) -> None:
    outcome, _ = front_run
    summary = json.loads((outcome.run_dir / "summary.json").read_text())
    assert summary["pareto_objectives"] == ["val_acc", "latency"]
    points = summary["pareto"]
    assert [p["index"] for p in points] == list(range(len(points))) and points
    done = [r for r in records(outcome.study) if r.outcome == Outcome.COMPLETE]
    values = [(r.val_acc, r.plan.latency_ms) for r in done]
    expected = [done[i].number for i in pareto_front(values, ["maximize", "minimize"])]
    assert [p["trial"] for p in points] == expected
    for p in points:  # keep=1, yet every front point kept its weights and ships
        folder = export_model(outcome.run_dir, tmp_path / f"p{p['index']}", pareto=p["index"])
        exported, spec, meta = load_checkpoint(folder)
        assert meta["trial"] == p["trial"] and meta["latency_ms"] == p["latency_ms"]
        assert "latency per forward pass" in (folder / "README.md").read_text()
        net = automl_cnn.load_best(outcome.run_dir, pareto=p["index"])
        x = torch.rand(3, 1, 8, 8)
        assert torch.equal(net(x), exported(x))
        module = _import(folder / "model.py")
        assert module.load(str(folder))(x).shape == (3, 10)


def test_cli_best_pareto_and_export_pareto(front_run, tmp_path, capsys) -> None:
    outcome, _ = front_run
    assert main(["best", str(outcome.run_dir), "--pareto"]) == 0
    out = capsys.readouterr().out
    assert "Pareto front" in out and "latency" in out and "cpu (1 thread)" in out
    last = len(json.loads((outcome.run_dir / "summary.json").read_text())["pareto"]) - 1
    assert main(["export", str(outcome.run_dir), "--pareto", str(last), "--out",
                 str(tmp_path / "x")]) == 0
    assert f"Pareto point {last}" in capsys.readouterr().out
    assert main(["export", str(outcome.run_dir), "--pareto", "99", "--out",
                 str(tmp_path / "y")]) == 2
    assert "Pareto point 99 does not exist" in " ".join(capsys.readouterr().err.split())


def test_mlflow_parent_run_records_the_front(front_run) -> None:
    outcome, uri = front_run
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(outcome.study.study_name)
    parent = next(r for r in client.search_runs([exp.experiment_id])
                  if r.data.tags.get("automl_cnn.role") == "parent")
    path = client.download_artifacts(parent.info.run_id, "pareto.json")
    stored = json.loads(Path(path).read_text())
    assert stored["points"] == outcome.summary["pareto"]
    assert parent.data.metrics["pareto_size"] == len(stored["points"])
    trials = [r for r in client.search_runs([exp.experiment_id])
              if r.data.tags.get("automl_cnn.state") == "complete"]
    assert trials and all(r.data.metrics["latency_ms"] > 0 for r in trials)


@pytest.mark.parametrize("args, needle", [
    (["--max-params", "0"], "--max-params must be a positive number"),
    (["--max-latency-ms", "-1"], "--max-latency-ms must be a positive number"),
    (["--max-train-memory-mb", "0"], "--max-train-memory-mb must be a positive number"),
    (["--latency-batch", "0"], "--latency-batch must be a whole number >= 1"),
    (["--latency-device", "tpu"], "--latency-device 'tpu' is not a latency target"),
])
def test_bad_limits_fail_before_anything_runs(tmp_path, capsys, args, needle) -> None:
    out = tmp_path / "run"
    code = main(["search", "--trials", "1", "--no-mlflow", "--no-progress", "--out", str(out),
                 *args])
    assert code == 2 and needle in " ".join(capsys.readouterr().err.split())
    assert not out.exists()


def _import(path: Path):
    spec = importlib.util.spec_from_file_location(f"exported_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_lists_the_front_and_the_trials_over_limits(limited, front_run) -> None:
    from automl_cnn.dashboards.front_section import limits_text

    outcome, _ = front_run
    page = (outcome.run_dir / "report.html").read_text()
    assert "Pareto front and limits" in page
    assert page.count("<td>cpu (1 thread)</td>") == len(outcome.summary["pareto"])
    recs = records(limited.study)
    over = limited.summary["over_limit"]["max_params"]
    text = limits_text(recs, _config(limited))
    assert f"--max-params 2000: {over} over" in text
    assert "Pareto front and limits" in (limited.run_dir / "report.html").read_text()


def _config(outcome):
    from automl_cnn.record import load_config

    return load_config(outcome.study)
