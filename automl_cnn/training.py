"""Train one architecture with PyTorch Lightning, quietly.

:class:`CNNModule` wraps the plain torch network from :func:`automl_cnn.model.build_model`;
:func:`make_trainer` builds a Trainer with no banners, progress bars, checkpoints, loggers or
sanity checks, so hundreds of trials leave a clean terminal and an empty disk.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch import nn

from automl_cnn.arch import ArchSpec, TrainSpec
from automl_cnn.callbacks import (Deadline, EpochEnd, StopCheck,
                                  lightning_interrupt_as_keyboard_interrupt)
from automl_cnn.device import Device
from automl_cnn.evaluation import evaluate, evaluate_checkpoint, scoring_batch, with_val_in_train
from automl_cnn.recipes import optimizer_for, schedule_for
from automl_cnn.timeline import first_step, mark

if TYPE_CHECKING:
    from automl_cnn.data import ImageSplits

log = logging.getLogger(__name__)


def silence_lightning() -> None:
    """Mute Lightning's per-Trainer banners ("GPU available ...") and known-harmless warnings."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning", "pytorch_lightning",
                 "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*tensorboardX.*")


#: Optimiser steps per Lightning step in :func:`fit_spec`. Lightning's fixed cost per step
#: (~1-2 ms on a CPU, see ../shared/MEASURED.md) is then paid once per chunk of this many
#: batches; benchmarks/bench_overhead.py measures what is left against a bare loop.
STEPS_PER_CALL = 8


class Chunks:
    """``batches`` grouped ``k`` at a time (the last group may be shorter).

    Example:
        >>> [len(c) for c in Chunks(list(range(10)), 4)]
        [4, 4, 2]
    """

    def __init__(self, batches: Any, k: int = STEPS_PER_CALL) -> None:
        self.batches, self.k = batches, k

    def __len__(self) -> int:
        return -(-len(self.batches) // self.k)

    def __iter__(self) -> Any:
        group: list[Any] = []
        for batch in self.batches:
            group.append(batch)
            if len(group) == self.k:
                yield group
                group = []
        if group:
            yield group


_stepped = False  # whether this process has trained a step (the timeline marks its first)


def _first_step() -> None:
    global _stepped
    _stepped = True
    mark("first training step")
    first_step.set()


class CNNModule(L.LightningModule):
    """Cross-entropy training of ``model`` with the optimiser and schedule in ``train``.

    After each validation pass, ``history`` gains one row
    ``{"epoch", "train_loss", "val_loss", "val_acc", "seconds"}``, and ``val_acc``/``val_loss``
    are logged for callbacks (the pruner reads ``val_acc``). With ``validating=False`` the row
    ``{"epoch", "train_loss", "seconds"}`` is added at the end of each training epoch instead.
    With ``clock`` seconds the schedule runs by the clock (see :meth:`_step_schedule`).
    """

    def __init__(self, model: nn.Module, train: TrainSpec, *, steps_per_epoch: int,
                 validating: bool = True, clock: float | None = None) -> None:
        super().__init__()
        self.model = model
        self.train_spec = train
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = max(train.epochs * steps_per_epoch, 1)
        self.clock, self._clock_t0, self._steps_done = clock, time.perf_counter(), 0
        self.validating = validating  # False: a row per training epoch, without val_* keys
        self.history: list[dict[str, float]] = []
        self.automatic_optimization = False  # see training_step
        self._started = time.perf_counter()
        self._reset_sums()

    def _reset_sums(self) -> None:
        # Tensors, not floats: summing on the device avoids a host sync per step.
        self._train_loss = torch.zeros(())
        self._train_steps = 0
        self._val_loss = torch.zeros(())
        self._val_correct = torch.zeros((), dtype=torch.long)
        self._val_seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_train_start(self) -> None:
        self._clock_t0 = time.perf_counter()  # the moment Deadline starts counting too

    def on_train_epoch_start(self) -> None:
        self._train_loss = torch.zeros((), device=self.device)
        self._train_steps = 0

    def training_step(self, batch: Any, _: int) -> None:
        """One ``(x, y)`` batch, or a list of them (:class:`Chunks`): an optimiser step each.

        Optimisation is manual so that one Lightning step can train a whole chunk: Lightning's
        own per-step work (hooks, callbacks, loop bookkeeping) is then paid once per chunk.
        ``manual_backward`` and the wrapped optimiser keep the precision plugin's handling.
        """
        if not _stepped:
            _first_step()
        steps = [batch] if isinstance(batch[0], torch.Tensor) else batch
        opt, sched = self.optimizers(), self.lr_schedulers()
        smoothing = self.train_spec.label_smoothing
        for x, y in steps:
            loss = F.cross_entropy(self.model(x), y, label_smoothing=smoothing)
            opt.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            opt.step()
            self._steps_done += 1
            if sched is not None:
                self._step_schedule(sched)
            self._train_loss += loss.detach().float()
            self._train_steps += 1
        if not self.validating and self.trainer.is_last_batch:
            self._add_train_row()  # here, not in on_train_epoch_end, which callbacks see first

    def _step_schedule(self, sched: Any) -> None:
        """One schedule step per batch; clocked, as far as the larger of the time share and
        the step share, so the schedule ends annealed at the deadline or at the last epoch,
        whichever comes first (stepped to its last step, never past it)."""
        due = self._steps_done
        if self.clock:
            share = (time.perf_counter() - self._clock_t0) / self.clock
            due = max(due, int(share * self.total_steps))
        self._schedule_to(sched, due)

    def _schedule_to(self, sched: Any, step: int) -> None:
        while sched.last_epoch < min(step, self.total_steps):
            sched.step()

    def on_train_batch_end(self, *_: Any) -> None:
        # A clocked fit stopped at its deadline (Deadline, a callback, ran first) ends annealed:
        # its last step read the clock a moment before the deadline check did, so it may stand
        # a few steps short of the schedule's end (CI once saw 32,995 of 33,000).
        if self.clock and any(isinstance(c, Deadline) and c.reached
                              for c in self.trainer.callbacks):
            sched = self.lr_schedulers()
            if sched is not None:
                self._schedule_to(sched, self.total_steps)

    def on_train_epoch_end(self) -> None:
        if not self.validating:
            self._add_train_row()  # an epoch cut short (max_seconds) has no last batch

    def _add_train_row(self) -> None:
        if self.history and self.history[-1]["epoch"] == self.current_epoch:
            return
        self.history.append({"epoch": self.current_epoch, "train_loss": self._mean_train_loss(),
                             "seconds": time.perf_counter() - self._started})

    def _mean_train_loss(self) -> float:
        return (self._train_loss / max(self._train_steps, 1)).item()  # the epoch's one sync

    def on_validation_epoch_start(self) -> None:
        self._val_loss = torch.zeros((), device=self.device)
        self._val_correct = torch.zeros((), dtype=torch.long, device=self.device)
        self._val_seen = 0

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        x, y = batch
        logits = self.model(x).float()
        self._val_loss += F.cross_entropy(logits, y, reduction="sum")
        self._val_correct += (logits.argmax(1) == y).sum()
        self._val_seen += len(y)

    def on_validation_epoch_end(self) -> None:
        seen = max(self._val_seen, 1)
        val_acc = self._val_correct.float() / seen
        val_loss = self._val_loss / seen
        self.log("val_acc", val_acc)
        self.log("val_loss", val_loss)
        self.history.append({
            "epoch": self.current_epoch,
            "train_loss": self._mean_train_loss(),
            "val_loss": val_loss.item(),
            "val_acc": val_acc.item(),
            "seconds": time.perf_counter() - self._started,
        })

    def configure_optimizers(self) -> Any:
        t = self.train_spec
        opt = optimizer_for(t.optimizer)(self.model.parameters(), t)
        # The schedule spans exactly the epochs this fit trains (fit_spec sets t.epochs).
        sched = schedule_for(t.schedule)(opt, t, self.total_steps)
        if sched is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def make_trainer(*, max_epochs: int, device: Device, callbacks: list[L.Callback]) -> L.Trainer:
    """A Trainer that prints and writes nothing of its own."""
    silence_lightning()
    return L.Trainer(
        accelerator=device.accelerator,
        devices=device.index,
        precision=device.precision,
        max_epochs=max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks,
        deterministic=False,
    )


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit_spec` trained: the model (eval mode, on the training device), one history
    row per epoch (as :class:`CNNModule` writes them), the wall seconds of the fit, and why it
    stopped early (``"max_seconds"``, ``"callback"`` when a callback set ``should_stop``) or
    ``None`` when every epoch was trained."""

    model: nn.Module
    history: list[dict[str, float]]
    seconds: float
    stopped_reason: str | None


def fit_spec(spec: ArchSpec, data: ImageSplits, device: Device, *, seed: int,
             epochs: int | None = None, train_split: str = "train",
             val_split: str | None = "val", callbacks: Sequence[L.Callback] = (),
             max_seconds: float | None = None, clocked: bool = False) -> FitResult:
    """Build ``spec``'s network and train it with its recipe on ``data`` (already on ``device``
    for speed); every place that trains a spec calls this.

    ``epochs`` overrides ``spec.train.epochs`` (the LR schedule spans the epochs trained; a fit
    that ``max_seconds`` cuts short stops part-way through it);
    ``train_split`` is ``"train"`` or ``"train+val"``; ``val_split=None`` trains without
    validation. ``clocked``: the fit is meant to end at ``max_seconds`` (a budgeted fit) and
    its LR schedule runs by the clock over those seconds (``epochs`` is then an upper bound),
    so it ends annealed whatever the machine's speed; that end is not a stop
    (``stopped_reason`` None). ``callbacks`` follow ours (pruning, loggers, stop checks); an
    exception one of them raises propagates, after :class:`EpochEnd` callbacks got each
    finished epoch's row.

    Example:
        >>> fit = fit_spec(spec, data, resolve_device("cpu"), seed=0, epochs=2)  # doctest: +SKIP
        >>> fit.history[-1]["val_acc"]  # doctest: +SKIP
        0.93
    """
    from automl_cnn.data import make_batches
    from automl_cnn.model import build_model

    if epochs is not None and epochs < 1:
        raise ValueError(f"epochs must be at least 1, but got {epochs=}.")
    t = replace(spec.train, epochs=epochs or spec.train.epochs)
    if train_split == "train+val":
        data, train_split = with_val_in_train(data), "train"
    torch.manual_seed(seed)
    model = build_model(spec, data.input_shape, data.num_classes)
    train = make_batches(data, train_split, batch_size=t.batch_size, shuffle=True, seed=seed,
                         crop_padding=t.crop_padding, flip=t.flip, drop_last=True)
    val = None if val_split is None else make_batches(
        data, val_split, batch_size=scoring_batch(device.torch_device))
    module = CNNModule(model, t, steps_per_epoch=len(train), validating=val is not None,
                       clock=max_seconds if clocked else None)
    ours: list[L.Callback] = [] if max_seconds is None else [Deadline(max_seconds)]
    trainer = make_trainer(max_epochs=t.epochs, device=device, callbacks=ours + list(callbacks))
    started = time.perf_counter()
    with warnings.catch_warnings(), lightning_interrupt_as_keyboard_interrupt():
        warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")
        trainer.fit(module, Chunks(train), val)  # no validation split: on purpose
    seconds = time.perf_counter() - started
    if ours and ours[0].reached:  # type: ignore[attr-defined]
        stopped: str | None = None if clocked else "max_seconds"
    else:
        stopped = "callback" if trainer.current_epoch < t.epochs else None
    # Lightning's teardown hands the module back on the CPU; callers test it where it trained.
    model = module.model.to(device.torch_device).eval()
    return FitResult(model, module.history, seconds, stopped)


__all__ = ["STEPS_PER_CALL", "CNNModule", "Chunks", "EpochEnd", "FitResult", "StopCheck",
           "evaluate", "evaluate_checkpoint", "fit_spec", "make_trainer", "silence_lightning",
           "with_val_in_train"]
