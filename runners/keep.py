"""Keep the weights of a search's best trials, and tell the tracker of a new best."""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path

import optuna
import torch

from automl_cnn.checkpoint import CheckpointMeta, keep_best, save_checkpoint
from automl_cnn.config import SearchConfig
from automl_cnn.data import ImageSplits
from automl_cnn.front import pareto_points
from automl_cnn.record import TrialRecord, records
from automl_cnn.results import ranked_trials, record_key, rung_of
from automl_cnn.rundir import RunDir
from automl_cnn.tracking import Tracker

log = logging.getLogger(__name__)


def keep_if_good(study: optuna.Study, record: TrialRecord, model: torch.nn.Module,
                 data: ImageSplits, config: SearchConfig, run_dir: Path,
                 tracker: Tracker) -> None:
    """Save ``record``'s weights, keep the best ``config.keep`` checkpoints (and, searching
    several objectives, those on the Pareto front), and call
    ``tracker.new_best`` when no completed trial ranks above this one."""
    ranked = ranked_trials(study)  # this trial is still running, so not in the ranking
    cpu_model = model.to("cpu").eval()
    assert record.spec is not None and record.values is not None
    plan = record.plan
    meta = CheckpointMeta.for_dataset(
        data, study_name=study.study_name, trial=record.number, value=record.val_acc,
        val_loss=record.val_loss, values=record.values, objectives=config.objectives,
        rung=rung_of(record) if record.fidelity is not None else None,
        trained_on="train+val" if record.in_sample else "train",
        latency_ms=plan.latency_ms if plan else None,
        latency_device=plan.latency_device if plan else None)
    rundir = RunDir(run_dir)
    try:
        save_checkpoint(rundir.trial_folder(record.number), cpu_model, record.spec, meta)
        keep_best(rundir.models, config.keep, also=front_trials(study, record, config))
    except OSError as exc:  # a full disk, a read-only folder: the trial itself is done
        log.warning("trial %d's weights could not be saved in %s (%s: %s); the trial stays "
                    "complete and the search goes on. Free space there; `automl-cnn retrain` "
                    "rebuilds weights from the architecture.", record.number, rundir.models,
                    type(exc).__name__, exc)
    if not ranked or record_key(record) < record_key(ranked[0]):
        example = data.x_val[:4].float().div(255.0).cpu()
        tracker.new_best(record.number, float(record.val_acc or 0.0), cpu_model, example)


def front_trials(study: optuna.Study, record: TrialRecord, config: SearchConfig) -> set[int]:
    """A multi-objective search's Pareto front with ``record`` (still running) on it: those
    weights are kept beside the best ``--keep``, so any point can be exported. A
    single-objective search keeps its best ``--keep`` only."""
    if not config.multi_objective:
        return set()
    others = [r for r in records(study) if r.number != record.number]
    return {p.trial for p in pareto_points([*others, record], config)}


def kept_checkpoints(run_dir: Path, keep: int, *, also: Collection[int] = ()) -> list[Path]:
    """The best ``keep`` checkpoints (and ``also``: the Pareto front's) after eviction; none,
    with a warning, when the models folder cannot be written (the summary and report still
    get written)."""
    models = RunDir(run_dir).models
    try:
        return keep_best(models, keep, also=also)
    except OSError as exc:
        log.warning("cannot tidy the kept weights in %s (%s: %s)", models, type(exc).__name__,
                    exc)
        return []
