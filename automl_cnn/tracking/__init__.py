"""Experiment tracking. :class:`Tracker` is the null object: every hook does nothing, so the
search code calls hooks unconditionally and ``--no-mlflow`` simply swaps in this class."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from automl_cnn.arch import ArchSpec
    from automl_cnn.config import SearchConfig
    from automl_cnn.record import TrialRecord
    from automl_cnn.shapes import LayerPlan


class Tracker:
    """Hooks called by the search, in order. Subclasses record them somewhere."""

    def start_search(self, config: SearchConfig, *, settings: dict[str, Any]) -> None:
        """Once per process, before any trial: find or create the study's parent run."""

    def start_trial(self, number: int, params: dict[str, Any]) -> None:
        """A trial sampled ``params`` (readable names: ``block1.kernel``, ``optim.lr`` ...)."""

    def log_plan(self, number: int, spec: ArchSpec, plan: LayerPlan) -> None:
        """The trial's architecture and layer plan (params, FLOPs, receptive field)."""

    def log_epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        """One epoch's ``train_loss``, ``val_loss``, ``val_acc``."""

    def end_trial(self, record: TrialRecord) -> None:
        """The trial's final record (``record.outcome``: complete, pruned, infeasible, failed
        or interrupted)."""

    def new_best(self, number: int, value: float, model: nn.Module,
                 example: torch.Tensor) -> None:
        """``model`` (on the CPU, eval mode) is the study's new best."""

    def close_lost_runs(self, failed: set[int]) -> None:
        """Trials ``failed`` in the study: close any of their runs still open elsewhere (their
        worker died) as KILLED."""

    def final_model(self, number: int, model: nn.Module, example: torch.Tensor, *,
                    history: list[dict[str, float]], value: float = float("nan")) -> None:
        """``model`` is trial ``number``'s architecture fitted on train + validation after the
        search (``history``: its per-epoch rows; ``value``: the trial's search score); it
        becomes the registered champion."""

    def end_search(self, *, status: str, summary: dict[str, Any]) -> None:
        """status is FINISHED, KILLED or FAILED."""

    def ready(self) -> None:
        """Return once the tracker is set up and has recorded every hook called so far (one
        set up in the background waits here; see :mod:`automl_cnn.tracking.deferred`)."""


#: MLflow 3's own default store. Never ``./mlruns``: MLflow 3 refuses that file store, and
#: MLflow itself falls back to it when a ``./mlruns`` folder happens to exist.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``; a relative sqlite
    path is made absolute, so every process (and ``automl-cnn ui``) names the same file.

    Example:
        >>> resolve_tracking_uri("http://127.0.0.1:5000")
        'http://127.0.0.1:5000'
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/") and ":memory:" not in uri:
        uri = prefix + str(Path(uri[len(prefix):]).absolute())
    return uri


def make_tracker(config: SearchConfig) -> Tracker:
    """The tracker ``config`` asks for: MLflow unless ``mlflow`` is off.

    The checks that can fail on the user's input run here, without MLflow, so a bad model
    name, an unreachable server or a missing store folder fails before any file or training.
    Importing MLflow and opening its store cost seconds: they run on a background thread
    while the search starts (:class:`~automl_cnn.tracking.deferred.DeferredTracker`)."""
    if not config.mlflow:
        return Tracker()
    from automl_cnn.tracking.checks import check_local_store, check_model_name, check_reachable
    from automl_cnn.tracking.deferred import DeferredTracker

    uri = resolve_tracking_uri(config.tracking_uri)
    check_model_name(config.model_name or config.resolved_study_name)
    check_reachable(uri)
    check_local_store(uri)

    def build() -> Tracker:
        from automl_cnn.tracking.mlflow_tracker import MlflowTracker

        return MlflowTracker(config.replace(tracking_uri=uri))  # the store checked above

    return DeferredTracker(build)


__all__ = ["DEFAULT_TRACKING_URI", "Tracker", "make_tracker", "resolve_tracking_uri"]
