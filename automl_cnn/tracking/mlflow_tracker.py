"""Track a search in MLflow: one parent run per study, one nested run per trial, and the best
network registered with the alias ``champion``.

Every call names its run id through one :class:`~mlflow.MlflowClient`; nothing sets MLflow's
global experiment or active run. A trial costs about five calls: its run, one batch of params
and plan metrics, the architecture artifacts, one batch of epoch metrics and end tags, the end
status (epochs of slow trials go out as they end, at most once a second). Layout in the UI::

    experiment <study name>
      run <study name>          tags automl_cnn.role=parent; search settings as params;
                                best_val_acc (step = trial number); trial counts at the end
        run trial-000 ...       tags mlflow.parentRunId, automl_cnn.trial, automl_cnn.state,
                                automl_cnn.reason, automl_cnn.pruned_epoch; sampled params
                                (block1.kernel, optim.lr ...); params/flops/receptive_field;
                                train_loss/val_loss/val_acc per epoch; architecture/ artifacts

Example:
    >>> config = SearchConfig(space="tiny", tracking_uri="sqlite:///mlflow.db")
    >>> run_search(config, tracker=MlflowTracker(config))  # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.validation import (
    MAX_METRICS_PER_BATCH, MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH)
from torch import nn

from automl_cnn.arch import ArchSpec
from automl_cnn.config import SearchConfig
from automl_cnn.record import Outcome, TrialRecord
from automl_cnn.redact import scrub, without_password
from automl_cnn.shapes import LayerPlan
from automl_cnn.tracking import Tracker, resolve_tracking_uri
from automl_cnn.tracking.champion import CHAMPION, LOSS_TAG, beats_champion, crown_best
from automl_cnn.tracking.mlflow_runs import (
    ROLE, STUDY, TRIAL, attach_parent, check_model_name, cost_metrics, create_parent, log_front,
    log_architecture, log_dataset, log_model, now_ms, open_experiment, study_parents,
    summary_metrics)
from automl_cnn.tracking.mlflow_store import (
    check_reachable, clip, dataset_input, quick_http, server_answers)

log = logging.getLogger(__name__)

STATE, REASON, PRUNED_EPOCH = "automl_cnn.state", "automl_cnn.reason", "automl_cnn.pruned_epoch"
LIMIT = "automl_cnn.limit"  # the hard limit an infeasible trial broke
PROMOTED_FROM = "automl_cnn.promoted_from"  # a late promotion: the trial whose climb it goes on
NEIGHBOUR_OF = "automl_cnn.neighbour_of"  # queued by the ladder's local search near this trial
#: Epoch metrics go out at most this often (seconds) and with the trial's last call: a
#: sub-second digits trial costs one metrics call, a minutes-long CIFAR epoch shows live.
SEND_EVERY = 1.0
#: Trial outcome -> MLflow run status. An infeasible trial ran correctly (it scored the worst
#: value without training), so its run is FINISHED; its state tag says infeasible.
RUN_STATUS = {Outcome.COMPLETE: "FINISHED", Outcome.PRUNED: "FINISHED",
              Outcome.INFEASIBLE: "FINISHED", Outcome.FAILED: "FAILED",
              Outcome.INTERRUPTED: "KILLED"}


class MlflowTracker(Tracker):
    """Records the search hooks in MLflow. Construction checks the store (fails fast with a
    :class:`UserError`); afterwards an MLflow failure is logged once and tracking stops, while
    the search and its Optuna study carry on."""

    def __init__(self, config: SearchConfig) -> None:
        self.uri = resolve_tracking_uri(config.tracking_uri)
        self.study = config.resolved_study_name
        self.experiment = config.experiment or self.study
        self.model_name = config.model_name or self.study
        check_model_name(self.model_name)
        with quick_http():  # a fresh sqlite store is created here, quietly
            self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        self.dataset: Any = None  # the searched data as an MLflow dataset input
        self.parent_id: str | None = None
        self.runs: dict[int, str] = {}  # trial number -> open run id
        self._pending: dict[int, list[Param]] = {}  # params sent with the next batch
        self._epochs: dict[int, list[Metric]] = {}  # epoch metrics not sent yet
        self._sent_at: dict[int, float] = {}  # when a trial's metrics were last sent
        self._last_epoch: dict[int, int] = {}  # the model is linked to its final metrics
        self._val_loss: dict[int, float] = {}  # last val_loss: ranks ties for the champion
        self._unsent: dict[str, Outcome] = {}  # run id -> outcome of a trial ended while broken
        self._broken = False
        self._warned: set[bool] = set()  # kinds of failure reported (once each)
        self._ended = False
        check_reachable(self.uri)
        with quick_http():
            self.experiment_id = open_experiment(self.client, self.experiment, self.uri)

    # -- hooks --------------------------------------------------------------------------------
    def start_search(self, config: SearchConfig, *, settings: dict[str, Any]) -> None:
        if self._broken:
            return
        with self._guard("opening the study's parent run"):
            self.parent_id = (attach_parent(self.client, self.experiment_id, self.study)
                              or create_parent(self.client, self.experiment_id, self.study,
                                               settings))
            self.dataset = dataset_input({"name": settings.get("dataset"), **{
                k: settings.get(k) for k in ("input_shape", "classes")}})
            log_dataset(self.client, self.parent_id, self.dataset)
            atexit.register(self._at_exit)

    def _name_data(self, run_id: str) -> None:
        """Name the searched data in the runs table's Dataset column."""
        if self.dataset is not None:
            log_dataset(self.client, run_id, self.dataset)

    def start_trial(self, number: int, params: dict[str, Any]) -> None:
        if self._off():
            return
        with self._guard(f"starting trial {number}'s run"):
            tags = {"mlflow.parentRunId": self.parent_id, STUDY: self.study, ROLE: "trial",
                    TRIAL: str(number), STATE: Outcome.RUNNING.value}
            run = self.client.create_run(self.experiment_id, run_name=f"trial-{number:03d}",
                                         tags=tags)
            self.runs[number] = run.info.run_id
            self._name_data(run.info.run_id)
            self._sent_at[number] = time.monotonic()
            self._pending[number] = [Param(k, clip(v, MAX_PARAM_VAL_LENGTH))
                                     for k, v in params.items()]

    def log_plan(self, number: int, spec: ArchSpec, plan: LayerPlan) -> None:
        if self._off(number):
            return
        with self._guard(f"logging trial {number}'s layer plan"):
            now = now_ms()
            metrics = [Metric(k, float(v), now, 0) for k, v in (
                ("params", plan.params), ("flops", plan.flops),
                ("receptive_field", plan.receptive_field), ("depth", spec.depth))]
            run_id = self.runs[number]
            self.client.log_batch(run_id, metrics=metrics, params=self._pending.pop(number, []))
            log_architecture(self.client, run_id, spec, plan)

    def log_epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        if self._off(number):
            return
        self._last_epoch[number] = epoch
        if "val_loss" in metrics:
            self._val_loss[number] = float(metrics["val_loss"])
        now = now_ms()
        buffer = self._epochs.setdefault(number, [])
        buffer += [Metric(k, float(v), now, epoch) for k, v in metrics.items()]
        if (time.monotonic() - self._sent_at.get(number, 0.0) >= SEND_EVERY
                or len(buffer) >= MAX_METRICS_PER_BATCH - 10):
            with self._guard(f"logging trial {number}'s epoch {epoch}"):
                self._send_epochs(number)

    def end_trial(self, record: TrialRecord) -> None:
        number, outcome = record.number, record.outcome
        self._last_epoch.pop(number, None)
        self._val_loss.pop(number, None)
        self._sent_at.pop(number, None)
        if self._broken and number in self.runs:  # end_search tries once more to close it
            self._unsent[self.runs.pop(number)] = outcome
        if self._off(number):
            return
        run_id = self.runs.pop(number)
        with self._guard(f"ending trial {number}'s run"):
            tags = [RunTag(STATE, outcome.value)]
            if record.reason:
                tags.append(RunTag(REASON, clip(record.reason, MAX_TAG_VAL_LENGTH)))
            if record.pruned_epoch is not None:
                tags.append(RunTag(PRUNED_EPOCH, str(record.pruned_epoch)))
            if record.limit:
                tags.append(RunTag(LIMIT, record.limit))
            if record.promotion is not None:
                tags.append(RunTag(PROMOTED_FROM, str(record.promotion.source)))
            if record.neighbour_of is not None:
                tags.append(RunTag(NEIGHBOUR_OF, str(record.neighbour_of)))
            self.client.log_batch(run_id, params=self._pending.pop(number, []), tags=tags,
                                  metrics=self._epochs.pop(number, []) + cost_metrics(record))
            self.client.set_terminated(run_id, RUN_STATUS.get(outcome, "FAILED"))

    def new_best(self, number: int, value: float, model: nn.Module,
                 example: torch.Tensor) -> None:
        if self._off(number):
            return
        # A model MLflow cannot log (torch.export refusing a layer) costs the registry entry,
        # not the tracking of later trials.
        with self._guard(f"logging trial {number}'s model", stop_tracking=False):
            run_id, loss = self.runs[number], self._val_loss.get(number)
            # Workers share the registry: a model that cannot beat the current champion (another
            # worker's, registered meanwhile) is not logged, and the alias goes to the best
            # version of all after logging (automl_cnn.tracking.champion).
            if not beats_champion(self.client, self.model_name, val_acc=value, val_loss=loss,
                                  trial=number):
                return
            self._send_epochs(number)  # the logged model links the run's final metrics
            version = log_model(self.client, self.uri, self.experiment_id, study=self.study,
                                model_name=self.model_name, run_id=run_id, number=number,
                                value=value, model=model, example=example,
                                step=self._last_epoch.get(number, 0))
            if loss is not None:
                self.client.set_model_version_tag(self.model_name, version, LOSS_TAG,
                                                  f"{loss:.6f}")
            crown_best(self.client, self.model_name)
            self.client.log_batch(self.parent_id, metrics=[
                Metric("best_val_acc", float(value), now_ms(), number)], tags=[
                RunTag("automl_cnn.best_trial", str(number)),
                RunTag("automl_cnn.best_run_id", run_id)])

    def close_lost_runs(self, failed: set[int]) -> None:
        if self._broken or self.parent_id is None:
            return
        with self._guard("closing the runs of lost trials", stop_tracking=False):
            for run in self.client.search_runs(
                    [self.experiment_id], max_results=5000, filter_string=(
                        f"tags.`{ROLE}` = 'trial' and tags.`{STATE}` = 'running'")):
                tags = run.data.tags
                number = int(tags.get(TRIAL, -1))
                if tags.get(STUDY) == self.study and number in failed and number not in self.runs:
                    self.client.log_batch(run.info.run_id, tags=[
                        RunTag(STATE, Outcome.INTERRUPTED.value),
                        RunTag(REASON, "its worker died; the trial was failed and retried once")])
                    self.client.set_terminated(run.info.run_id, "KILLED")

    def final_model(self, number: int, model: nn.Module, example: torch.Tensor, *,
                    history: list[dict[str, float]], value: float = float("nan")) -> None:
        if self._off():
            return
        with self._guard("logging the final model", stop_tracking=False):
            run = self.client.create_run(self.experiment_id, run_name="final-fit", tags={
                "mlflow.parentRunId": self.parent_id, STUDY: self.study, ROLE: "final",
                TRIAL: str(number), STATE: "complete"})
            run_id = run.info.run_id
            self._name_data(run_id)  # like every trial's run
            now = now_ms()
            self.client.log_batch(run_id, metrics=[
                Metric("train_loss", float(r["train_loss"]), now, int(r["epoch"]))
                for r in history if "train_loss" in r][:MAX_METRICS_PER_BATCH])
            # Tagged with the search's score of its trial; the alias is set here, after every
            # trial: the final model is the one users get.
            version = log_model(self.client, self.uri, self.experiment_id, study=self.study,
                                model_name=self.model_name, run_id=run_id, number=number,
                                value=value, model=model, example=example, step=len(history))
            self.client.set_registered_model_alias(self.model_name, CHAMPION, version)
            self.client.set_terminated(run_id, "FINISHED")
            self.client.log_batch(self.parent_id, tags=[
                RunTag("automl_cnn.final_run_id", run_id)])

    def end_search(self, *, status: str, summary: dict[str, Any]) -> None:
        self._ended = True
        atexit.unregister(self._at_exit)
        if self.parent_id is None:
            return
        if self._broken:  # one last try, so a store that came back shows no RUNNING runs
            self._broken = False
        with self._guard("ending the study's parent run"):
            self._close_open_runs("KILLED" if status == "FINISHED" else status)
            for run_id, outcome in self._unsent.items():
                self.client.log_batch(run_id, tags=[RunTag(STATE, outcome.value)])
                self.client.set_terminated(run_id, RUN_STATUS.get(outcome, "FAILED"))
            self.client.set_terminated(self.parent_id, status)
            self.client.log_batch(self.parent_id, metrics=summary_metrics(summary))
            log_front(self.client, self.parent_id, summary)

    # -- pieces -------------------------------------------------------------------------------
    def _off(self, number: int | None = None) -> bool:
        return self._broken or self.parent_id is None or (
            number is not None and number not in self.runs)

    @contextmanager
    def _guard(self, doing: str, *, stop_tracking: bool = True) -> Iterator[None]:
        """Run MLflow calls; a failure is reported once (per kind) and, unless
        ``stop_tracking`` is off, turns tracking off (callers check :meth:`_off` first)."""
        try:
            with quick_http():
                yield
        except Exception as exc:  # MLflow, HTTP and database errors all mean the same here
            fatal = stop_tracking or not server_answers(self.uri)
            self._broken = self._broken or fatal
            if fatal in self._warned:
                return
            self._warned.add(fatal)
            then = ("The search goes on without tracking; the Optuna study still records "
                    "every trial." if fatal else "Tracking goes on.")
            first = str(exc).splitlines()[0][:300] if str(exc) else ""
            log.warning("MLflow tracking at %s failed while %s (%s: %s). %s",
                        without_password(self.uri), doing, type(exc).__name__,
                        scrub(first, self.uri), then)

    def _send_epochs(self, number: int) -> None:
        self._sent_at[number] = time.monotonic()
        if self._epochs.get(number):
            self.client.log_batch(self.runs[number], metrics=self._epochs.pop(number))

    def _close_open_runs(self, status: str) -> None:
        state = Outcome.INTERRUPTED if status == "KILLED" else Outcome.FAILED
        for number in list(self.runs):
            self.client.log_batch(self.runs[number], tags=[RunTag(STATE, state.value)],
                                  metrics=self._epochs.pop(number, []))
            self.client.set_terminated(self.runs.pop(number), status)

    def _at_exit(self) -> None:
        """The process ends without end_search (an uncaught error, sys.exit): no run may be
        left RUNNING."""
        if not self._ended:
            self.end_search(status="KILLED", summary={})


__all__ = ["MlflowTracker", "RUN_STATUS", "study_parents"]
