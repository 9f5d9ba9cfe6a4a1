"""``fit_spec`` and ``evaluate_checkpoint``: the one way to train a spec, to test a checkpoint."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import pytest
import torch

from automl_cnn.arch import ArchSpec, ConvBlock, HeadSpec, TrainSpec
from automl_cnn.checkpoint import CheckpointError, save_checkpoint
from automl_cnn.data import ImageSplits, load_dataset
from automl_cnn.device import resolve_device
from automl_cnn.training import EpochEnd, evaluate, evaluate_checkpoint, fit_spec

CPU = resolve_device("cpu")
SPEC = ArchSpec(blocks=(ConvBlock(8),), head=HeadSpec(global_pool="flatten"),
                train=TrainSpec(epochs=10, batch_size=32))


@pytest.fixture(scope="module")
def digits() -> ImageSplits:
    return load_dataset("digits")


def test_fit_trains_the_epochs_asked_and_learns(digits: ImageSplits) -> None:
    fit = fit_spec(SPEC, digits, CPU, seed=0, epochs=3)
    assert [row["epoch"] for row in fit.history] == [0, 1, 2]  # epochs overrides spec's 10
    assert set(fit.history[-1]) == {"epoch", "train_loss", "val_loss", "val_acc", "seconds"}
    assert fit.history[-1]["val_acc"] > 0.5  # digits: learning, not chance (0.1)
    assert fit.stopped_reason is None and not fit.model.training and fit.seconds > 0


def test_same_seed_same_weights_other_seed_other_weights(digits: ImageSplits) -> None:
    a, b, c = (fit_spec(SPEC, digits, CPU, seed=s, epochs=1).model.state_dict()
               for s in (4, 4, 5))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


class ScheduleProbe(L.Callback):
    def on_train_end(self, trainer: L.Trainer, _: Any) -> None:
        sched = trainer.lr_scheduler_configs[0].scheduler
        self.steps, self.total = sched.last_epoch, sched.total_steps  # type: ignore[attr-defined]
        self.trained = trainer.global_step  # optimiser steps taken


def test_a_clocked_fit_ends_annealed_at_its_deadline(digits: ImageSplits) -> None:
    # A budgeted fit: 1,000 epochs take far longer than 2 s on any CPU (50 took under 2 s on a
    # fast one); the schedule runs by the clock,
    # so when the deadline stops it part-way, the one-cycle schedule is at its last step.
    probe = ScheduleProbe()
    fit = fit_spec(SPEC, digits, CPU, seed=0, epochs=1000, max_seconds=2.0, clocked=True,
                   callbacks=[probe])
    assert 1 <= len(fit.history) < 1000 and fit.stopped_reason is None  # its planned end
    assert probe.trained < probe.total and probe.steps == probe.total
    # Unclocked, the same deadline cuts the schedule part-way, and says so.
    cut = ScheduleProbe()
    fit = fit_spec(SPEC, digits, CPU, seed=0, epochs=1000, max_seconds=2.0, callbacks=[cut])
    assert fit.stopped_reason == "max_seconds" and cut.steps == cut.trained < cut.total
    # A clock longer than the epochs: the epochs end first, annealed, as without a clock.
    short = ScheduleProbe()
    fit = fit_spec(SPEC, digits, CPU, seed=0, epochs=2, max_seconds=3600, clocked=True,
                   callbacks=[short])
    assert len(fit.history) == 2 and short.steps == short.trained == short.total


def test_the_lr_schedule_spans_exactly_the_epochs_trained(digits: ImageSplits) -> None:
    probe = ScheduleProbe()
    fit_spec(SPEC, digits, CPU, seed=0, epochs=2, callbacks=[probe])
    steps_per_epoch = len(digits.y_train) // SPEC.train.batch_size  # drop_last
    assert probe.total == probe.steps == 2 * steps_per_epoch


def test_without_validation_every_epoch_reaches_the_logger_once(digits: ImageSplits) -> None:
    rows: list[dict[str, float]] = []
    fit = fit_spec(SPEC, digits, CPU, seed=0, epochs=3, val_split=None,
                   train_split="train+val", callbacks=[EpochEnd(rows.append)])
    assert rows == fit.history and [r["epoch"] for r in rows] == [0, 1, 2]
    assert set(rows[0]) == {"epoch", "train_loss", "seconds"}
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]


def test_max_seconds_stops_cleanly_and_says_so(digits: ImageSplits) -> None:
    rows: list[dict[str, float]] = []
    fit = fit_spec(SPEC, digits, CPU, seed=0, epochs=50, max_seconds=0.0,
                   callbacks=[EpochEnd(rows.append)])
    assert fit.stopped_reason == "max_seconds"
    assert len(fit.history) == 1 and rows == fit.history  # the cut epoch is validated, reported
    slow = fit_spec(SPEC, digits, CPU, seed=0, epochs=2, max_seconds=3600)
    assert slow.stopped_reason is None and len(slow.history) == 2


def test_scoring_reads_every_image_whatever_the_batch(digits: ImageSplits) -> None:
    # A CPU scores 128 images at a time (1.4x as fast as 512 there); the batch must
    # not change the score.
    fit = fit_spec(SPEC, digits, CPU, seed=0, epochs=1)
    by_batch = [evaluate(fit.model, digits.x_val, digits.y_val, batch_size=b) for b in (7, 1024)]
    default = evaluate(fit.model, digits.x_val, digits.y_val)
    assert default["accuracy"] == by_batch[0]["accuracy"] == by_batch[1]["accuracy"]
    assert default["loss"] == pytest.approx(by_batch[1]["loss"], rel=1e-5)


class Boom(L.Callback):
    def on_validation_end(self, trainer: L.Trainer, _: Any) -> None:
        if trainer.current_epoch == 1:
            raise RuntimeError("pruned here")


def test_a_callbacks_exception_propagates_after_the_epoch_was_reported(
        digits: ImageSplits) -> None:
    rows: list[dict[str, float]] = []
    with pytest.raises(RuntimeError, match="pruned here"):
        fit_spec(SPEC, digits, CPU, seed=0, epochs=5, callbacks=[EpochEnd(rows.append), Boom()])
    assert [r["epoch"] for r in rows] == [0, 1]


def test_evaluate_checkpoint_scores_the_saved_weights(digits: ImageSplits,
                                                      tmp_path: Path) -> None:
    fit = fit_spec(SPEC, digits, CPU, seed=0, epochs=2)
    meta = {"input_shape": list(digits.input_shape), "num_classes": digits.num_classes}
    folder = save_checkpoint(tmp_path / "trial-0000", fit.model, SPEC, meta)
    got = evaluate_checkpoint(folder, digits, CPU)
    assert got == pytest.approx(evaluate(fit.model, digits.x_test, digits.y_test))
    assert set(got) == {"accuracy", "loss"} and got["accuracy"] > 0.5
    other = replace(digits, classes=digits.classes[:5])
    with pytest.raises(CheckpointError, match="evaluate it on the dataset it was trained on"):
        evaluate_checkpoint(folder, other, "cpu")


def test_every_step_of_a_mixed_precision_chunk_sees_the_weights_the_step_before_left() -> None:
    """A chunk of optimiser steps trains inside the one autocast context Lightning opens for a
    training step. Autocast's weight cache would hand every step after the first the bf16
    copies of the chunk's starting weights; Lightning opens it with ``cache_enabled=False``,
    and this holds it to that. Reference: the same steps, each in its own autocast context."""
    from automl_cnn.recipes import optimizer_for
    from automl_cnn.training import Chunks, CNNModule, make_trainer

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    reference = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    reference.load_state_dict(net.state_dict())
    recipe = TrainSpec(optimizer="adamw", lr=0.5, weight_decay=0.0, schedule="constant",
                       label_smoothing=0.0, epochs=1)
    x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    chunk = [(x, y)] * 3
    module = CNNModule(net, recipe, steps_per_epoch=3, validating=False)
    make_trainer(max_epochs=1, device=resolve_device("cpu", "bf16"), callbacks=[]).fit(
        module, Chunks(chunk, 3))  # one Lightning step, three optimiser steps
    opt = optimizer_for("adamw")(reference.parameters(), recipe)
    for xb, yb in chunk:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(reference(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for trained, expected in zip(module.model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(trained.detach(), expected.detach())
