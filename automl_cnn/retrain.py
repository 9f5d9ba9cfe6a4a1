"""Retrain a found architecture from scratch on train + validation, over several seeds.

The search picked the architecture and its recipe on the validation split; once picked, the
validation images are just more training data. Each seed trains the spec with its own recipe
(no pruning, no validation), is scored once on the test split, and is kept as a checkpoint in
``RUN_DIR/retrained/trial-NNNN-seedS`` for ``automl-cnn export --retrained``.

Example:
    >>> result = retrain("runs/digits-tiny", rank=0, seeds=3)
    >>> print(f"{result.mean:.4f} ± {result.std:.4f}")
    0.9611 ± 0.0042
"""

from __future__ import annotations

import logging
import re
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from automl_cnn.api import RunSource, Source, open_source
from automl_cnn.arch import ArchSpec
from automl_cnn.checkpoint import WEIGHTS, CheckpointMeta, read_meta, save_checkpoint, write_meta
from automl_cnn.errors import UserError

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from automl_cnn.data import ImageSplits
    from automl_cnn.device import Device

log = logging.getLogger(__name__)
FOLDER = re.compile(r"trial-(\d{4,})-seed(\d+)$")


@dataclass(frozen=True)
class RetrainResult:
    """Test accuracy of each seed's retrained model, and where each was kept."""

    study_name: str
    rank: int
    trial: int
    spec: ArchSpec  # with the epochs actually trained
    seeds: tuple[int, ...]
    test_acc: tuple[float, ...]
    folders: tuple[Path, ...]
    train_images: int
    search_val_acc: float
    search_test_acc: float | None  # the search's own model of this trial, when it was kept
    seconds: float

    @property
    def mean(self) -> float:
        return statistics.fmean(self.test_acc)

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (0 for one seed)."""
        return statistics.stdev(self.test_acc) if len(self.test_acc) > 1 else 0.0


def retrained_folder(run_dir: Path, trial: int, seed: int) -> Path:
    return Path(run_dir) / "retrained" / f"trial-{trial:04d}-seed{seed}"


def retrained_folders(run_dir: Path, trial: int) -> dict[int, Path]:
    """Retrained checkpoints of ``trial`` by seed."""
    found: dict[int, Path] = {}
    for path in (Path(run_dir) / "retrained").glob(f"trial-{trial:04d}-seed*"):
        match = FOLDER.search(path.name)
        if match and (path / WEIGHTS).exists():
            found[int(match.group(2))] = path
    return found


def _search_model_test_acc(src: RunSource, rank: int, data: ImageSplits,
                           device: Device) -> float | None:
    from automl_cnn.training import evaluate_checkpoint

    folder = src.weights_folder(src.trial(rank).number)
    if not (folder / WEIGHTS).exists():
        return None
    return evaluate_checkpoint(folder, data, device)["accuracy"]


def _fit_and_keep(spec: ArchSpec, data: ImageSplits, device: Device, seed: int, *,
                  src: RunSource, trial: FrozenTrial) -> tuple[float, Path]:
    """Train one seed on ``data``'s train+val images, score it on test, keep it."""
    from automl_cnn.training import evaluate, fit_spec

    model = fit_spec(spec, data, device, seed=seed, val_split=None).model
    acc = evaluate(model, data.x_test, data.y_test)["accuracy"]
    log.info("trial %d seed %d: test accuracy %.4f", trial.number, seed, acc)
    meta = CheckpointMeta.for_dataset(data, study_name=src.name, trial=trial.number,
                                      value=float(trial.values[0]), trained_on="train+val",
                                      retrained={"seed": seed, "this_seed": acc})
    folder = retrained_folder(src.run_dir, trial.number, seed)
    return acc, save_checkpoint(folder, model.to("cpu"), spec, meta)


def retrain(source: Source, rank: int = 0, *, epochs: int | None = None, seeds: int = 3,
            device: str = "auto", study_name: str | None = None,
            precision: str = "auto") -> RetrainResult:
    """Train ``rank``'s architecture ``seeds`` times from scratch on train+val; score on test.

    ``epochs`` defaults to the epoch count the search found. Checkpoints go to
    ``RUN_DIR/retrained/trial-NNNN-seedS`` (seeds 0..seeds-1). ``precision`` as the search's
    ``--precision`` (:func:`automl_cnn.device.resolve_device`).
    """
    from automl_cnn.data import load_dataset
    from automl_cnn.device import resolve_device
    from automl_cnn.training import silence_lightning, with_val_in_train

    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise UserError(f"seeds must be a whole number >= 1, but got {seeds!r}.")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int)
                               or epochs < 1):
        raise UserError(f"epochs must be a whole number >= 1, but got {epochs!r}; leave it out "
                        "to train for the epochs the search found.")
    src = open_source(source, study_name=study_name)
    trial = src.trial(rank)
    spec = src.spec(rank)
    spec = replace(spec, train=replace(spec.train, epochs=epochs or spec.train.epochs))
    dev = resolve_device(device, precision)
    # The whole training split (no --train-subset): retraining is where all the data pays off.
    data = load_dataset(src.config.dataset, seed=src.config.seed,
                        image_size=src.config.image_size)
    if data.input_shape != src.input_shape:
        raise UserError(f"dataset {src.config.dataset!r} now has input shape {data.input_shape},"
                        f" but {src.describe()} was searched on {src.input_shape}.")
    silence_lightning()
    started = time.perf_counter()
    on_device = with_val_in_train(data).to(dev.torch_device)
    accs, folders = [], []
    for seed in range(seeds):
        acc, folder = _fit_and_keep(spec, on_device, dev, seed, src=src, trial=trial)
        accs.append(acc)
        folders.append(folder)
    result = RetrainResult(
        study_name=src.name, rank=rank, trial=trial.number, spec=spec, seeds=tuple(range(seeds)),
        test_acc=tuple(accs), folders=tuple(folders),
        train_images=len(on_device.y_train),
        search_val_acc=float(trial.values[0]),
        search_test_acc=_search_model_test_acc(src, rank, on_device, dev),
        seconds=time.perf_counter() - started,
    )
    _record_group(result)
    return result


def _record_group(result: RetrainResult) -> None:
    """Each seed's meta.json learns the whole group's accuracies (for the model card)."""
    group = {"test_acc": list(result.test_acc), "mean": result.mean, "std": result.std,
             "seeds": list(result.seeds), "epochs": result.spec.train.epochs}
    for folder in result.folders:
        meta = CheckpointMeta.from_dict(read_meta(folder))
        write_meta(folder, replace(meta, retrained={**(meta.retrained or {}), **group}))


def tracking_uri(explicit: str | None, src: RunSource) -> str:
    """--tracking-uri, else the search's, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db."""
    from automl_cnn.tracking import resolve_tracking_uri

    return resolve_tracking_uri(explicit or src.config.tracking_uri)


def log_to_mlflow(result: RetrainResult, src: RunSource, *, uri: str) -> str:
    """One MLflow run per retrain in the study's experiment, nested under the search's parent
    run when the search was tracked there; returns its run id."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    from automl_cnn.tracking.mlflow_tracker import study_parents

    client = MlflowClient(uri)
    name = src.config.experiment or src.name
    found = client.get_experiment_by_name(name)
    experiment = found.experiment_id if found else client.create_experiment(name)
    tags = {"automl_cnn.role": "retrain", "automl_cnn.study": result.study_name,
            "automl_cnn.trial": str(result.trial), "automl_cnn.rank": str(result.rank)}
    parents = study_parents(client, experiment, result.study_name)  # the tracker's parent run
    if parents:
        tags["mlflow.parentRunId"] = parents[0].info.run_id
    run = client.create_run(experiment, run_name=f"retrain-trial-{result.trial}", tags=tags)
    now = int(time.time() * 1000)
    t = result.spec.train
    params = {"trial": result.trial, "rank": result.rank, "seeds": len(result.seeds),
              "epochs": t.epochs, "optimizer": t.optimizer, "lr": t.lr, "batch_size": t.batch_size,
              "schedule": t.schedule, "train_images": result.train_images}
    metrics = [Metric("test_acc", acc, now, seed) for seed, acc in zip(result.seeds,
                                                                      result.test_acc)]
    metrics += [Metric("test_acc_mean", result.mean, now, 0),
                Metric("test_acc_std", result.std, now, 0),
                Metric("search_val_acc", result.search_val_acc, now, 0)]
    if result.search_test_acc is not None:
        metrics.append(Metric("search_test_acc", result.search_test_acc, now, 0))
    client.log_batch(run.info.run_id, metrics=metrics,
                     params=[Param(k, str(v)) for k, v in params.items()])
    client.log_text(run.info.run_id, result.spec.to_json(), "arch.json")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


__all__ = ["RetrainResult", "log_to_mlflow", "retrain", "retrained_folder", "retrained_folders",
           "tracking_uri"]
