"""Lightning callbacks that every fit may carry: per-epoch rows out, stop on request or deadline.

:func:`automl_cnn.training.fit_spec` adds :class:`Deadline` for ``max_seconds``; callers pass
:class:`EpochEnd` (loggers), :class:`StopCheck` (Ctrl-C) and the pruner.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning.pytorch as L


class EpochEnd(L.Callback):
    """Calls ``fn(row)`` once with each new history row; listed before the pruner so that the
    epoch a trial is pruned at is still reported."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self._sent = 0

    def _send_new_rows(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        history = getattr(module, "history", None) or []
        if trainer.sanity_checking:
            return
        for row in history[self._sent:]:
            self.fn(row)
        self._sent = len(history)

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._send_new_rows(trainer, module)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule,
                           *_: Any) -> None:
        self._send_new_rows(trainer, module)  # rows of a fit without validation

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._send_new_rows(trainer, module)  # the row of an epoch cut short


class StopCheck(L.Callback):
    """Raises ``exc_factory()`` at the next batch once ``should_stop()`` turns true (Ctrl-C)."""

    def __init__(self, should_stop: Any, exc_factory: Any) -> None:
        self.should_stop, self.exc_factory = should_stop, exc_factory

    def on_train_batch_end(self, *_: Any) -> None:
        if self.should_stop():
            raise self.exc_factory()


class Deadline(L.Callback):
    """Stops training cleanly (after the running batch) once ``seconds`` have passed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.reached = False
        self._ends = float("inf")

    def on_train_start(self, *_: Any) -> None:
        self._ends = time.perf_counter() + self.seconds

    def on_train_batch_end(self, trainer: L.Trainer, *_: Any) -> None:
        if time.perf_counter() >= self._ends:
            self.reached = trainer.should_stop = True


@contextmanager
def lightning_interrupt_as_keyboard_interrupt() -> Iterator[None]:
    """Lightning answers a KeyboardInterrupt raised inside ``fit`` (a second Ctrl-C) by
    ignoring SIGINT from then on and calling ``sys.exit(1)``, which would leave the trial
    RUNNING and skip the summary. Give callers their KeyboardInterrupt back, with SIGINT's
    handler as it was."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return
    handler = signal.getsignal(signal.SIGINT)
    try:
        yield
    except SystemExit as exc:
        if not isinstance(exc.__context__, KeyboardInterrupt):
            raise  # not Lightning's Ctrl-C exit
        signal.signal(signal.SIGINT, handler)  # Lightning may have left it ignored
        raise KeyboardInterrupt from exc
