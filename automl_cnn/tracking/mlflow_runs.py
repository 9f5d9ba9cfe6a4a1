"""The study's MLflow experiment, its parent run, and the best network's registered model:
the pieces of :class:`~automl_cnn.tracking.mlflow_tracker.MlflowTracker` that are calls to an
:class:`~mlflow.MlflowClient` and nothing else.

Example:
    >>> parents = study_parents(client, experiment_id, "digits-tiny")  # earliest first
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
from torch import nn

from automl_cnn.errors import UserError
from automl_cnn.record import Outcome
from automl_cnn.redact import scrub, without_password
from automl_cnn.tracking.champion import CHAMPION
from automl_cnn.tracking.checks import check_model_name  # noqa: F401 - kept importable here
from automl_cnn.tracking.mlflow_store import (
    EXPERIMENT_KIND, SERVER_HINT, clip, global_tracking_uri, pip_requirements)

ROLE, STUDY, TRIAL = "automl_cnn.role", "automl_cnn.study", "automl_cnn.trial"


def open_experiment(client: MlflowClient, name: str, uri: str) -> str:
    """The id of experiment ``name``, created when missing; a :class:`UserError` when the store
    cannot be used or the experiment is deleted."""
    shown = without_password(uri)
    kind, training = EXPERIMENT_KIND  # MLflow's UI: a model-training experiment, not GenAI
    try:
        found = client.get_experiment_by_name(name)
        if found is None:
            try:
                return client.create_experiment(name, tags={kind: training})
            except MlflowException as exc:  # another process created it just now
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                found = client.get_experiment_by_name(name)
        if found.lifecycle_stage != "deleted" and kind not in found.tags:
            client.set_experiment_tag(found.experiment_id, kind, training)  # an older one
    except MlflowException as exc:
        raise UserError(f"cannot use the MLflow tracking store {shown}: "
                        f"{scrub(str(exc).splitlines()[0], uri)} {SERVER_HINT}") from None
    except Exception as exc:  # sqlalchemy / OS errors for a bad local store
        first = scrub(str(exc).splitlines()[0], uri) if str(exc) else ""
        raise UserError(f"cannot open the MLflow tracking store {shown} "
                        f"({type(exc).__name__}: {first}). Check the path, or pass another "
                        "--tracking-uri.") from None
    if found.lifecycle_stage == "deleted":
        raise UserError(f"MLflow experiment {name!r} is deleted in {shown}. "
                        "Restore it (`mlflow experiments restore --experiment-id "
                        f"{found.experiment_id}`) or pass another --experiment.")
    return found.experiment_id


def study_parents(client: MlflowClient, experiment_id: str, study: str) -> list[Any]:
    """The study's parent runs, the one every process attaches to first (the earliest)."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{ROLE}` = 'parent'",
                              run_view_type=ViewType.ACTIVE_ONLY, max_results=1000)
    ours = [r for r in runs if r.data.tags.get(STUDY) == study]
    return sorted(ours, key=lambda r: (r.info.start_time, r.info.run_id))


def attach_parent(client: MlflowClient, experiment_id: str, study: str) -> str | None:
    """Another process (or an earlier run of this study) made the parent: reuse it."""
    parents = study_parents(client, experiment_id, study)
    if not parents:
        return None
    client.update_run(parents[0].info.run_id, status="RUNNING")
    return parents[0].info.run_id


def create_parent(client: MlflowClient, experiment_id: str, study: str,
                  settings: dict[str, Any]) -> str:
    """A new parent run holding the search settings as params; when two processes start
    together, the earlier parent wins and the other is deleted."""
    run = client.create_run(experiment_id, run_name=study, tags={
        ROLE: "parent", STUDY: study,
        "mlflow.note.content": f"automl-cnn study {study}: one nested run per trial."})
    run_id = run.info.run_id
    client.log_batch(run_id, params=[Param(k, clip(v, MAX_PARAM_VAL_LENGTH))
                                     for k, v in settings.items() if v is not None])
    first = study_parents(client, experiment_id, study)[0].info.run_id
    if first != run_id:
        client.delete_run(run_id)
        client.update_run(first, status="RUNNING")
    return first


def log_model(client: MlflowClient, uri: str, experiment_id: str, *, study: str,
              model_name: str, run_id: str, number: int, value: float, model: nn.Module,
              example: torch.Tensor, step: int) -> str:
    """Log ``model`` into the trial's run as a pt2 (torch.export) MLflow model, register a
    new version of ``model_name``; returns the version. The logged model is created here, in
    this experiment, because ``log_model`` alone would file it under the global experiment."""
    x = example.detach().cpu().float().numpy()  # (B, C, H, W), B > 1 so B stays dynamic
    with torch.no_grad():
        y = model(example.detach().cpu().float()).numpy()
    logged = client.create_logged_model(
        experiment_id, name="model", source_run_id=run_id,
        params={"trial": str(number)}, tags={STUDY: study, TRIAL: str(number)})
    # log_model, and the registry resolving ``models:/<id>``, find their store through
    # MLflow's global tracking URI: point it at ours for these calls only.
    with global_tracking_uri(uri):
        mlflow.pytorch.log_model(
            model, name="model", model_id=logged.model_id, run_id=run_id,
            signature=infer_signature(x, y), input_example=x,
            serialization_format="pt2", pip_requirements=pip_requirements(),
            validate_serving_input=False, step=step)
        try:
            client.create_registered_model(
                model_name, description=f"Best network of automl-cnn study "
                f"{study}; the alias {CHAMPION!r} marks the current best.")
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        version = client.create_model_version(
            model_name, source=f"models:/{logged.model_id}", run_id=run_id,
            model_id=logged.model_id, tags={TRIAL: str(number), "val_acc": f"{value:.6f}"})
    return str(version.version)


def summary_metrics(summary: dict[str, Any]) -> list[Metric]:
    """The parent run's closing metrics: trial counts and the test accuracy."""
    now = now_ms()
    metrics = [Metric(f"trials_{k}", float(v), now, 0)
               for k, v in summary.get("counts", {}).items() if k != Outcome.RUNNING]
    test = summary.get("test") or {}
    if isinstance(test.get("accuracy"), (int, float)) and math.isfinite(test["accuracy"]):
        metrics.append(Metric("test_acc", float(test["accuracy"]), now, 0))
    return metrics


def cost_metrics(record: Any) -> list[Metric]:
    """A trial's measured costs: latency and peak inference memory, when measured."""
    plan, now = record.plan, now_ms()
    if plan is None:
        return []
    return [Metric(name, float(value), now, 0) for name, value in (
        ("latency_ms", plan.latency_ms), ("memory_mb", plan.memory_mb),
        ("train_memory_mb", plan.train_memory_mb)) if value is not None]


def log_front(client: MlflowClient, run_id: str, summary: dict[str, Any]) -> None:
    """The Pareto front on the parent run: ``pareto.json`` (summary.json's points, with their
    objectives), a ``pareto_size`` metric and an ``automl_cnn.pareto_trials`` tag."""
    front = summary.get("pareto")
    if front is None:
        return
    client.log_dict(run_id, {"objectives": summary.get("pareto_objectives"), "points": front},
                    "pareto.json")
    client.log_batch(run_id, metrics=[Metric("pareto_size", float(len(front)), now_ms(), 0)],
                     tags=[RunTag("automl_cnn.pareto_trials",
                                  ",".join(str(p["trial"]) for p in front)[:5000])])


def log_architecture(client: MlflowClient, run_id: str, spec: Any, plan: Any) -> None:
    """The trial's ``architecture/arch.json`` and ``layers.txt`` (the layer-plan table)."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "arch.json").write_text(spec.to_json())
        (Path(tmp) / "layers.txt").write_text(plan.format_table() + "\n")
        client.log_artifacts(run_id, tmp, artifact_path="architecture")


def log_dataset(client: MlflowClient, run_id: str, dataset: Any) -> None:
    """Name the run's data (the runs table's Dataset column). Workers starting together race to
    create the same dataset row (a UNIQUE constraint in the store); the loser's second try
    finds it and only links it."""
    try:
        client.log_inputs(run_id, datasets=[dataset])
    except MlflowException:
        client.log_inputs(run_id, datasets=[dataset])


def now_ms() -> int:
    return int(time.time() * 1000)


__all__ = ["CHAMPION", "ROLE", "STUDY", "TRIAL", "attach_parent", "check_model_name",
           "log_architecture", "log_dataset",
           "cost_metrics", "create_parent", "log_front", "log_model", "now_ms",
           "open_experiment", "study_parents", "summary_metrics"]
