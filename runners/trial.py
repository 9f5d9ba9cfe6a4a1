"""One Optuna trial: sample → check shapes → build → train with pruning → record.

:class:`TrialRunner` is the Optuna objective. It holds only what every trial shares (space,
device-resident data, tracker, run directory), so any process can build one from a storage URL
and a study name and run trials of a shared study.

Each trial builds ONE :class:`~automl_cnn.record.TrialRecord` and hands it to two sinks: the
study (:func:`~automl_cnn.record.write_record`: a partial record when the architecture is
planned, the final one when the trial ends) and the tracker (``tracker.end_trial(record)``).
Besides the record, the study keeps what Optuna reads natively: the sampled params, the
objective values, and ``val_acc`` per epoch as intermediate values (step = epoch) for the pruner.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna_integration import PyTorchLightningPruningCallback

from automl_cnn.config import SearchConfig
from automl_cnn.data import ImageSplits
from automl_cnn.device import Device
from automl_cnn.evaluation import evaluate, with_val_in_train
from automl_cnn.final_fit import epoch_cap, trial_seed, tta_views, with_tta
from automl_cnn.ladder import Ladder, Rung, promotable
from automl_cnn.record import (
    Fidelity,
    Outcome,
    PlanSummary,
    Timings,
    TrialRecord,
    Worker,
    baseline_of,
    neighbour_of,
    promotion_of,
    write_record,
)
from automl_cnn.search_spaces import SearchSpace
from automl_cnn.shapes import InfeasibleArchitecture, LayerPlan, plan_layers
from automl_cnn.timeline import mark
from automl_cnn.tracking import Tracker
from automl_cnn.training import EpochEnd, StopCheck, fit_spec

from .climb import (
    SLOW_FACTOR,
    BudgetSpent,
    DeadlineCheck,
    RungTooSlow,
    fit_seconds,
    promote_late,
    promoted_before,
    queue_local,
    rung_data,
    scoring_seconds,
    rung_scores,
    rung_time_cap,
)
from .keep import keep_if_good
from .target import Checked, TargetCheck, tell_constraints

from .signals import SearchInterrupted, StopFlag, TrialFailed, quiet_interruptions

log = logging.getLogger(__name__)
PRUNED_BECAUSE = "val_acc below the pruner's bar"
#: Seconds the one trial of a budget too short to search keeps, before the deadline, to
#: checkpoint its model; it keeps the time to score it on the validation images too.
WHOLE_SCORE_S = 1.0


def worst_values(config: SearchConfig) -> list[float]:
    """What an infeasible architecture scores: the worst value in each objective's direction,
    so samplers learn to avoid that region without a single training step."""
    return [0.0 if d == "maximize" else float(2**53) for d in config.directions]


def objective_values(config: SearchConfig, val_acc: float, plan: LayerPlan,
                     latency_ms: float | None = None) -> list[float]:
    got = {"val_acc": val_acc, "params": float(plan.params), "flops": float(plan.flops),
           "latency": float(latency_ms if latency_ms is not None else 2**53)}
    return [got[name] for name in config.objectives]


class TrialRunner:
    """The objective passed to ``study.optimize``."""

    def __init__(self, config: SearchConfig, space: SearchSpace, data: ImageSplits,
                 device: Device, *, tracker: Tracker, run_dir: Path,
                 stop: StopFlag | None = None, deadline: float | None = None,
                 ladder: Ladder | None = None, images_per_second: float | None = None) -> None:
        self.config, self.space, self.data, self.device = config, space, data, device
        self.tracker, self.run_dir = tracker, Path(run_dir)
        self.stop = stop if stop is not None else StopFlag()  # an unset flag is falsy
        quiet_interruptions()
        self.prune = config.pruner != "none" and not config.multi_objective
        # The search phase's end (a time.time() reading): a trial training then is stopped.
        self.deadline, self.images_per_second = deadline, images_per_second
        self.ladder = ladder or Ladder.flat(len(data.y_train))
        # Every trial trains a rung on the same class-balanced images (like with like).
        # Too short to search, nothing to select: the one trial learns from every image.
        self.rung_data = {0: with_val_in_train(data)} if self.ladder.whole else {
            r.index: rung_data(data, r, seed=config.seed) for r in self.ladder.rungs}
        self.target = TargetCheck(config, data.input_shape, data.num_classes, device, run_dir)
        self.on_epoch: Callable[[dict[str, float]], None] | None = None  # e.g. a progress bar
        # Laddered searches alternate the sampler's draws with neighbours of the best so far.
        self.local_search = not (self.ladder.is_flat or self.ladder.whole)

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        if self.stop:
            raise SearchInterrupted(self.stop.reason)
        started = time.perf_counter()
        mark(f"trial {trial.number}: started")
        spec = self.space.sample(trial, flip_ok=self.data.flip_ok)
        record = TrialRecord(number=trial.number, outcome=Outcome.RUNNING,
                             hyperparameters=dict(trial.params), spec=spec,
                             worker=Worker.here(), baseline=baseline_of(trial),
                             promotion=promotion_of(trial), neighbour_of=neighbour_of(trial))
        self.tracker.start_trial(trial.number, dict(trial.params))
        try:
            plan = plan_layers(spec, self.data.input_shape, self.data.num_classes)
        except InfeasibleArchitecture as exc:
            log.info("trial %d infeasible: %s", trial.number, exc)
            tell_constraints(trial, self.target.limits, None, fits=False)
            values = worst_values(self.config)
            self._end(trial, record.replace(outcome=Outcome.INFEASIBLE, reason=str(exc),
                                            values=tuple(values)), started)
            return values[0] if len(values) == 1 else values
        checked = self.target.check(spec, plan)  # hard limits and latency, before training
        tell_constraints(trial, self.target.limits, checked.costs)
        record = record.replace(plan=with_costs(PlanSummary.of(spec, plan), checked))
        write_record(trial, record)  # a report drawn now shows this running trial
        self.tracker.log_plan(trial.number, spec, plan)
        if checked.breach is not None:  # recorded like a shape that does not fit, never trained
            log.info("trial %d over a limit: %s", trial.number, checked.breach.reason)
            values = worst_values(self.config)
            self._end(trial, record.replace(outcome=Outcome.INFEASIBLE, values=tuple(values),
                                            reason=checked.breach.reason,
                                            limit=checked.breach.limit), started)
            return values[0] if len(values) == 1 else values
        if record.promotion is not None:
            earlier = promoted_before(trial.study, trial.number, record.promotion)
            if earlier is not None:  # another worker queued the same promotion first
                reason = (f"trial {earlier} already promotes trial {record.promotion.source} "
                          f"to rung {record.promotion.rung}")
                self._end(trial, record.replace(outcome=Outcome.PRUNED, reason=reason),
                          started)
                raise optuna.TrialPruned(reason)
        values = self._train(trial, record, plan, started)
        return values[0] if len(values) == 1 else values

    def _end(self, trial: optuna.Trial, record: TrialRecord, started: float) -> None:
        """The one place a trial's final record goes to its two sinks."""
        total = round(time.perf_counter() - started, 4)
        record = record.replace(timings=Timings(record.timings.train_seconds, total))
        write_record(trial, record)
        self.tracker.end_trial(record)
        mark(f"trial {trial.number}: {record.outcome.value}")

    def _train(self, trial: optuna.Trial, record: TrialRecord, plan: LayerPlan,
               started: float) -> list[float]:
        """Climb the ladder: train each rung, report it (step = rung), stop unless promoted.
        A flat ladder is one rung at the trial's own epochs, pruned by epoch as before."""
        finished: TrialRecord | None = None  # the last rung trained to its end
        for rung in self.ladder.rungs[first_rung(record, self.ladder):]:
            model, done = self._rung(trial, record, rung, started, finished)
            if self.ladder.is_flat or rung.index == self.ladder.top:
                break
            trial.report(float(done.val_acc or 0.0), step=rung.index)
            promoted = promote_late(trial.study, rung.index, self.ladder.eta)
            if promoted:
                log.info("trial %d promoted trials %s to rung %d", trial.number, promoted,
                         rung.index + 1)
            if rung.index == 0 and self.local_search and drawn(trial):
                around = queue_local(trial.study, self.space,
                                     seed=self.config.seed * 1_000_003 + trial.number)
                if around is not None:
                    log.info("trial %d queued a neighbour of trial %d", trial.number, around)
            if not promotable(float(done.val_acc or 0.0), rung_scores(trial.study, rung.index),
                              self.ladder.eta):
                reason = f"not in the top 1/{self.ladder.eta} at rung {rung.index}"
                self._end(trial, trained(done, list(done.history), done.timings.train_seconds,
                                         Outcome.PRUNED, reason), started)
                raise optuna.TrialPruned(reason)
            finished = done
        if not self.ladder.is_flat:
            trial.report(float(done.val_acc or 0.0), step=rung.index)
        values = objective_values(self.config, float(done.val_acc or 0.0), plan,
                                  record.plan.latency_ms if record.plan else None)
        done = done.replace(values=tuple(values))
        keep_if_good(trial.study, done, model, self.data, self.config, self.run_dir,
                     self.tracker)
        self._end(trial, done, started)
        return values

    def _rung(self, trial: optuna.Trial, record: TrialRecord, rung: Rung, started: float,
              finished: TrialRecord | None) -> tuple[torch.nn.Module, TrialRecord]:
        """Train one rung; the record it earned (outcome complete), or the trial ends here."""
        history: list[dict[str, float]] = []
        if not self.ladder.is_flat:
            data = self.rung_data[rung.index]
            record = record.replace(fidelity=Fidelity(
                len(data.y_train), rung.epochs, rung.index, whole=self.ladder.whole,
                with_val=self.ladder.whole))
        if self.ladder.whole:  # this trial is the model the search hands over
            record = record.replace(spec=with_tta(record.spec, self.config, self.data.flip_ok))
        fit_started = time.perf_counter()

        def ended(outcome: Outcome, reason: str | None) -> TrialRecord:
            return trained(record, history, time.perf_counter() - fit_started, outcome, reason)

        cap = rung_time_cap(rung, self.images_per_second)
        try:
            if self.deadline is not None and time.time() >= self.deadline:
                raise BudgetSpent  # before a Trainer is even built
            model = self._fit(trial, record, rung, self._callbacks(trial, history, cap))
            if self.ladder.whole:  # its epochs are what the clock bought
                self._score_end(trial.number, model, history)
                record = record.replace(fidelity=replace(record.fidelity, epochs=len(history)))
        except optuna.TrialPruned:
            self._end(trial, ended(Outcome.PRUNED, PRUNED_BECAUSE), started)
            raise
        except RungTooSlow:
            reason = f"rung {rung.index} ran past {cap:.0f}s, {SLOW_FACTOR:g}x its planned time"
            self._end(trial, ended(Outcome.PRUNED, reason), started)
            raise optuna.TrialPruned(reason) from None
        except BudgetSpent:
            # Kept with the last rung it finished, if any; to Optuna a pruned trial (its rung
            # scores still teach the sampler); the search phase is over.
            last = finished.replace(outcome=Outcome.INTERRUPTED, reason="budget") \
                if finished is not None else ended(Outcome.INTERRUPTED, "budget")
            self._end(trial, last, started)
            trial.study.stop()
            raise optuna.TrialPruned("budget") from None
        except SearchInterrupted:
            self._end(trial, ended(Outcome.INTERRUPTED, self.stop.reason), started)
            raise
        except KeyboardInterrupt:  # a second Ctrl-C: stop at once, but leave a true record
            self._end(trial, ended(Outcome.INTERRUPTED, "Ctrl-C twice"), started)
            raise
        except Exception as exc:  # a trial's bug or a CUDA OOM must not end the search
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("trial %d failed: %s", trial.number, reason)
            self._end(trial, ended(Outcome.FAILED, reason), started)
            raise TrialFailed(reason) from exc
        return model, ended(Outcome.COMPLETE, None)

    def _callbacks(self, trial: optuna.Trial, history: list[dict[str, float]],
                   cap: float | None) -> list[Any]:
        """Epoch-end logging (which also collects the history), the Ctrl-C, budget and
        slow-rung checks, and (without a ladder) the epoch pruner."""
        def epoch_end(row: dict[str, float]) -> None:
            history.append(dict(row))
            if self.on_epoch is not None:
                self.on_epoch(row)
            self.tracker.log_epoch(trial.number, int(row["epoch"]), {
                k: row[k] for k in ("train_loss", "val_loss", "val_acc") if k in row})

        began = time.perf_counter()
        callbacks: list[Any] = [
            EpochEnd(epoch_end),
            StopCheck(lambda: bool(self.stop), lambda: SearchInterrupted(self.stop.reason)),
            # Searching, a trial at the deadline is cut off; the one trial of a budget too short
            # to search instead stops cleanly there and keeps its model (see _fit).
            DeadlineCheck(None if self.ladder.whole else self.deadline),
            StopCheck(lambda: cap is not None and time.perf_counter() - began > cap,
                      RungTooSlow),
        ]
        if self.prune and self.ladder.is_flat:
            callbacks.append(PyTorchLightningPruningCallback(trial, monitor="val_acc"))
        return callbacks

    def _fit(self, trial: optuna.Trial, record: TrialRecord, rung: Rung,
             callbacks: list[Any]) -> torch.nn.Module:
        assert record.spec is not None
        # A late promotion trains as the trial that climbed the rungs below would have.
        seed = trial_seed(self.config.seed, record.promotion.first if record.promotion
                          else trial.number)
        data = self.rung_data[rung.index]
        if not self.ladder.whole:
            return fit_spec(record.spec, data, self.device, callbacks=callbacks,
                            epochs=rung.epochs, seed=seed).model
        # The one trial of a budget too short to search: no per-epoch validation (it would be
        # in-sample), the schedule run by the clock to the search deadline (rung.epochs is
        # only the estimate), ending annealed there; scored once at the end (_score_end).
        end = WHOLE_SCORE_S + scoring_seconds(len(self.data.y_val), self.images_per_second,
                                              tta_views(self.config, self.data.flip_ok),
                                              timed_in_cpu_bf16=self.device.mixed_on_cpu)
        soft = fit_seconds(self.deadline - time.time(), end) if self.deadline else None
        clocked = soft is not None
        return fit_spec(record.spec, data, self.device, callbacks=callbacks, seed=seed,
                        epochs=epoch_cap(record.spec.train.epochs) if clocked else rung.epochs,
                        val_split=None, max_seconds=soft, clocked=clocked).model

    def _score_end(self, number: int, model: torch.nn.Module,
                   history: list[dict[str, float]]) -> None:
        """A fit without per-epoch validation: its last row gets the validation scores."""
        scores = evaluate(model, self.data.x_val, self.data.y_val)
        got = {"val_loss": scores["loss"], "val_acc": scores["accuracy"]}
        if history:
            history[-1].update(got)
            self.tracker.log_epoch(number, int(history[-1]["epoch"]), got)


def drawn(trial: optuna.Trial) -> bool:
    """Whether the sampler drew ``trial``: not a baseline, a neighbour, a promotion or a retry
    (every queued trial carries the parameters it was queued with)."""
    return not trial.storage.get_trial_system_attrs(trial._trial_id).get("fixed_params")


def first_rung(record: TrialRecord, ladder: Ladder) -> int:
    """The rung ``record``'s trial starts on: 0, or a late promotion's (a study resumed with
    fewer rungs starts it on the top one; a flat ladder has only rung 0)."""
    if record.promotion is None or ladder.is_flat:
        return 0
    return min(record.promotion.rung, ladder.top)


def with_costs(plan: PlanSummary, checked: Checked) -> PlanSummary:
    """The plan summary with what was measured before training (latency, memory)."""
    latency = checked.latency
    return replace(plan, latency_ms=latency.median_ms if latency else None,
                   latency_device=latency.device if latency else None,
                   memory_mb=checked.costs.memory_mb,
                   train_memory_mb=checked.costs.train_memory_mb)


def trained(record: TrialRecord, history: list[dict[str, float]], seconds: float,
            outcome: Outcome, reason: str | None) -> TrialRecord:
    """``record`` after training ended with ``outcome`` (a pruned trial names its epoch)."""
    pruned_epoch = None
    if outcome == Outcome.PRUNED:
        pruned_epoch = int(history[-1]["epoch"]) if history else 0
        reason = f"pruned at epoch {pruned_epoch}: {reason}"
    return record.replace(outcome=outcome, reason=reason[:2000] if reason else None,
                          history=tuple(history), pruned_epoch=pruned_epoch,
                          timings=Timings(round(seconds, 4)))
