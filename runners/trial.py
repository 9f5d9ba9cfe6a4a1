"""One Optuna trial: sample → check shapes → build → train with pruning → record.

:class:`TrialRunner` is the Optuna objective. It holds only what every trial shares (space,
device-resident data, tracker, run directory), so any process can build one from a storage URL
and a study name and run trials of a shared study.

What a trial leaves in the study (read by summaries, dashboards and export):

- ``user_attrs``: ``arch`` (ArchSpec dict), ``outcome`` (complete | pruned | infeasible |
  failed | interrupted), ``reason``, ``pruned_epoch``, ``params``, ``flops``,
  ``receptive_field``, ``layer_plan`` (rows), ``history`` (per-epoch rows), ``epochs_budget``,
  ``epochs_trained``, ``train_seconds``;
- intermediate values: ``val_acc`` per epoch (step = epoch), which the pruner reads.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna_integration import PyTorchLightningPruningCallback

from automl_cnn.arch import ArchSpec
from automl_cnn.checkpoint import keep_best, save_checkpoint, trial_folder
from automl_cnn.config import SearchConfig
from automl_cnn.data import ImageSplits, make_batches
from automl_cnn.device import Device
from automl_cnn.model import build_model
from automl_cnn.results import final_val_loss, rank_key, ranked_trials, val_acc_of
from automl_cnn.search_spaces import SearchSpace
from automl_cnn.shapes import InfeasibleArchitecture, LayerPlan, plan_layers
from automl_cnn.tracking import Tracker
from automl_cnn.training import CNNModule, EpochEnd, StopCheck, make_trainer

log = logging.getLogger(__name__)

COMPLETE, PRUNED, INFEASIBLE, FAILED, INTERRUPTED = (
    "complete", "pruned", "infeasible", "failed", "interrupted")


class SearchInterrupted(Exception):
    """Ctrl-C or SIGTERM arrived: the running trial stops, the search ends cleanly."""


class TrialFailed(Exception):
    """A trial raised; it is recorded as failed and the search goes on."""


class StopFlag:
    """Set from a signal handler; read between batches and between trials."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        self.reason = reason
        self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()


def worst_values(config: SearchConfig) -> list[float]:
    """What an infeasible architecture scores: the worst value in each objective's direction,
    so samplers learn to avoid that region without a single training step."""
    return [0.0 if d == "maximize" else float(2**53) for d in config.directions]


def objective_values(config: SearchConfig, val_acc: float, plan: LayerPlan) -> list[float]:
    got = {"val_acc": val_acc, "params": float(plan.params), "flops": float(plan.flops)}
    return [got[name] for name in config.objectives]


class TrialRunner:
    """The objective passed to ``study.optimize``."""

    def __init__(self, config: SearchConfig, space: SearchSpace, data: ImageSplits,
                 device: Device, *, tracker: Tracker, run_dir: Path,
                 stop: StopFlag | None = None) -> None:
        self.config, self.space, self.data, self.device = config, space, data, device
        self.tracker, self.run_dir = tracker, Path(run_dir)
        self.stop = stop or StopFlag()
        self.prune = config.pruner != "none" and not config.multi_objective

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        if self.stop:
            raise SearchInterrupted(self.stop.reason)
        spec = self.space.sample(trial, flip_ok=self.data.flip_ok)
        trial.set_user_attr("arch", spec.to_dict())
        trial.set_user_attr("epochs_budget", spec.train.epochs)
        self.tracker.start_trial(trial.number, dict(trial.params))
        try:
            plan = plan_layers(spec, self.data.input_shape, self.data.num_classes)
        except InfeasibleArchitecture as exc:
            return self._infeasible(trial, str(exc))
        trial.set_user_attr("params", plan.params)
        trial.set_user_attr("flops", plan.flops)
        trial.set_user_attr("receptive_field", plan.receptive_field)
        trial.set_user_attr("layer_plan", plan.as_rows())
        self.tracker.log_plan(trial.number, spec, plan)
        values = self._train(trial, spec, plan)
        return values[0] if len(values) == 1 else values

    def _infeasible(self, trial: optuna.Trial, reason: str) -> float | list[float]:
        log.info("trial %d infeasible: %s", trial.number, reason)
        trial.set_user_attr("outcome", INFEASIBLE)
        trial.set_user_attr("reason", reason)
        trial.set_user_attr("epochs_trained", 0)
        values = worst_values(self.config)
        self.tracker.end_trial(trial.number, outcome=INFEASIBLE, reason=reason, values=values)
        return values[0] if len(values) == 1 else values

    def _train(self, trial: optuna.Trial, spec: ArchSpec, plan: LayerPlan) -> list[float]:
        data, t = self.data, spec.train
        torch.manual_seed(self.config.seed * 100_003 + trial.number)
        model = build_model(spec, data.input_shape, data.num_classes)
        train = make_batches(data, "train", batch_size=t.batch_size, shuffle=True,
                             seed=self.config.seed + trial.number, crop_padding=t.crop_padding,
                             flip=t.flip, drop_last=True)
        val = make_batches(data, "val", batch_size=1024)
        module = CNNModule(model, t, steps_per_epoch=len(train))
        callbacks: list[Any] = [
            EpochEnd(lambda row: self.tracker.log_epoch(trial.number, int(row["epoch"]), {
                k: row[k] for k in ("train_loss", "val_loss", "val_acc")})),
            StopCheck(lambda: bool(self.stop), lambda: SearchInterrupted(self.stop.reason)),
        ]
        if self.prune:
            callbacks.append(PyTorchLightningPruningCallback(trial, monitor="val_acc"))
        trainer = make_trainer(max_epochs=t.epochs, device=self.device, callbacks=callbacks)
        started = time.perf_counter()
        try:
            trainer.fit(module, train, val)
        except optuna.TrialPruned:
            self._record(trial, module, started, PRUNED, "val_acc below the pruner's bar")
            self.tracker.end_trial(trial.number, outcome=PRUNED, pruned_epoch=trial.user_attrs[
                "pruned_epoch"], reason=trial.user_attrs["reason"])
            raise
        except SearchInterrupted:
            self._record(trial, module, started, INTERRUPTED, self.stop.reason)
            self.tracker.end_trial(trial.number, outcome=INTERRUPTED, reason=self.stop.reason)
            raise
        except Exception as exc:  # a trial's bug or a CUDA OOM must not end the search
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("trial %d failed: %s", trial.number, reason)
            self._record(trial, module, started, FAILED, reason)
            self.tracker.end_trial(trial.number, outcome=FAILED, reason=reason)
            raise TrialFailed(reason) from exc
        val_acc = module.history[-1]["val_acc"] if module.history else 0.0
        self._record(trial, module, started, COMPLETE, None)
        values = objective_values(self.config, val_acc, plan)
        self._keep(trial, module.model, spec, module.history, values)
        self.tracker.end_trial(trial.number, outcome=COMPLETE, values=values)
        return values

    def _record(self, trial: optuna.Trial, module: CNNModule, started: float, outcome: str,
                reason: str | None) -> None:
        trial.set_user_attr("outcome", outcome)
        trial.set_user_attr("history", module.history)
        trial.set_user_attr("epochs_trained", len(module.history))
        trial.set_user_attr("train_seconds", round(time.perf_counter() - started, 4))
        if outcome == PRUNED:
            epoch = int(module.history[-1]["epoch"]) if module.history else 0
            trial.set_user_attr("pruned_epoch", epoch)
            reason = f"pruned at epoch {epoch}: {reason}"
        if reason:
            trial.set_user_attr("reason", reason[:2000])

    def _keep(self, trial: optuna.Trial, model: torch.nn.Module, spec: ArchSpec,
              history: list[dict[str, float]], values: list[float]) -> None:
        """Keep weights of the best ``config.keep`` trials; tell the tracker of a new best."""
        study = trial.study
        ranked = ranked_trials(study)  # this trial is still running, so not in the ranking
        val_acc, val_loss = history[-1]["val_acc"], history[-1]["val_loss"]
        cpu_model = model.to("cpu").eval()
        meta = {
            "trial": trial.number, "value": val_acc, "val_loss": val_loss, "values": values,
            "objectives": list(self.config.objectives), "study_name": study.study_name,
            "dataset": self.data.name, "classes": list(self.data.classes),
            "input_shape": list(self.data.input_shape), "num_classes": self.data.num_classes,
        }
        folder = save_checkpoint(trial_folder(self.run_dir, trial.number), cpu_model, spec, meta)
        keep_best(folder.parent, self.config.keep)
        best = ranked[0] if ranked else None
        if best is None or rank_key(val_acc, val_loss, trial.number) < rank_key(
                val_acc_of(best), final_val_loss(best), best.number):
            example = self.data.x_val[:4].float().div(255.0).cpu()
            self.tracker.new_best(trial.number, val_acc, cpu_model, example)
