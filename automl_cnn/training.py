"""Train one architecture with PyTorch Lightning, quietly.

:class:`CNNModule` wraps the plain torch network from :func:`automl_cnn.model.build_model`;
:func:`make_trainer` builds a Trainer with no banners, progress bars, checkpoints, loggers or
sanity checks, so hundreds of trials leave a clean terminal and an empty disk.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch import nn

from automl_cnn.arch import TrainSpec
from automl_cnn.device import Device

log = logging.getLogger(__name__)


def silence_lightning() -> None:
    """Mute Lightning's per-Trainer banners ("GPU available ...") and known-harmless warnings."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning", "pytorch_lightning",
                 "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*tensorboardX.*")


class CNNModule(L.LightningModule):
    """Cross-entropy training of ``model`` with the optimiser and schedule in ``train``.

    After each validation pass, ``history`` gains one row
    ``{"epoch", "train_loss", "val_loss", "val_acc", "seconds"}``, and ``val_acc``/``val_loss``
    are logged for callbacks (the pruner reads ``val_acc``).
    """

    def __init__(self, model: nn.Module, train: TrainSpec, *, steps_per_epoch: int) -> None:
        super().__init__()
        self.model = model
        self.train_spec = train
        self.steps_per_epoch = steps_per_epoch
        self.history: list[dict[str, float]] = []
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

    def on_train_epoch_start(self) -> None:
        self._train_loss = torch.zeros((), device=self.device)
        self._train_steps = 0

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self.model(x), y, label_smoothing=self.train_spec.label_smoothing)
        self._train_loss += loss.detach().float()
        self._train_steps += 1
        return loss

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
        train_loss = (self._train_loss / max(self._train_steps, 1)).item()
        self.history.append({
            "epoch": self.current_epoch,
            "train_loss": train_loss,
            "val_loss": val_loss.item(),
            "val_acc": val_acc.item(),
            "seconds": time.perf_counter() - self._started,
        })

    def configure_optimizers(self) -> Any:
        spec = self.train_spec
        params = self.model.parameters()
        if spec.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, nesterov=True,
                                  weight_decay=spec.weight_decay)
        elif spec.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
        else:
            opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
        total = max(spec.epochs * self.steps_per_epoch, 1)
        if spec.schedule == "constant":
            return opt
        if spec.schedule == "cosine":
            sched: Any = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
        else:
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec.lr, total_steps=total,
                                                        pct_start=0.25)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class EpochEnd(L.Callback):
    """Calls ``fn(row)`` with each new history row; listed before the pruner so that the epoch
    a trial is pruned at is still reported."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        history = getattr(module, "history", None)
        if history and not trainer.sanity_checking:
            self.fn(history[-1])


class StopCheck(L.Callback):
    """Raises ``exc_factory()`` at the next batch once ``should_stop()`` turns true (Ctrl-C)."""

    def __init__(self, should_stop: Any, exc_factory: Any) -> None:
        self.should_stop, self.exc_factory = should_stop, exc_factory

    def on_train_batch_end(self, *_: Any) -> None:
        if self.should_stop():
            raise self.exc_factory()


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


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
             batch_size: int = 512) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` on uint8 images ``x`` (on model's device)."""
    model.eval()
    correct, loss, n = 0, 0.0, len(y)
    for i in range(0, n, batch_size):
        xb = x[i:i + batch_size].float().div_(255.0)
        logits = model(xb).float()
        loss += F.cross_entropy(logits, y[i:i + batch_size], reduction="sum").item()
        correct += int((logits.argmax(1) == y[i:i + batch_size]).sum())
    return {"accuracy": correct / max(n, 1), "loss": loss / max(n, 1)}
