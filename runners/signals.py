"""How a search stops: the stop flag Ctrl-C and SIGTERM set, the exceptions that carry a stop
through a trial, and the filter that keeps Optuna's traceback for a stopped trial off the
terminal. Imported by the trial runner, the search loop and the parallel workers.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class SearchInterrupted(Exception):
    """Ctrl-C or SIGTERM arrived: the running trial stops, the search ends cleanly."""


class TrialFailed(Exception):
    """A trial raised; it is recorded as failed and the search goes on."""


def is_interruption(exc: BaseException) -> bool:
    """Whether ``exc`` stops the search as Ctrl-C or SIGTERM does: their own exceptions, or
    one a library raised while a KeyboardInterrupt was in flight (Optuna's ``_run_trial`` turns
    a second Ctrl-C that lands in its tell into an UnboundLocalError)."""
    return isinstance(exc, (SearchInterrupted, KeyboardInterrupt)) or isinstance(
        exc.__context__, KeyboardInterrupt)


class QuietInterruptions(logging.Filter):
    """Optuna logs a failed trial's exception with its traceback, then its value. A trial that
    Ctrl-C or SIGTERM stopped is not a failure to debug: the runner records it and the CLI says
    how to resume, so both of Optuna's lines for it stay off the terminal. Other failures keep
    their warning and traceback."""

    def __init__(self) -> None:
        super().__init__()
        self.quiet: set[str] = set()  # "Trial N " of interrupted trials

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, (SearchInterrupted, KeyboardInterrupt)):
            self.quiet.add(" ".join(message.split()[:2]) + " ")
            return False
        return not any(message.startswith(prefix) for prefix in self.quiet)


def quiet_interruptions() -> None:
    """Install :class:`QuietInterruptions` on Optuna's optimize logger, once per process."""
    optimize_log = logging.getLogger("optuna.study._optimize")
    if not any(isinstance(f, QuietInterruptions) for f in optimize_log.filters):
        optimize_log.addFilter(QuietInterruptions())


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


@contextmanager
def stop_on_signals(stop: StopFlag) -> Iterator[None]:
    """First Ctrl-C / SIGTERM: finish cleanly. A second Ctrl-C: stop at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, _: Any) -> None:
        if stop and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set("SIGTERM" if signum == signal.SIGTERM else "Ctrl-C")

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def stopping(interrupted: bool) -> Iterator[None]:
    """Once the search was interrupted, a further Ctrl-C while the summary is written (the
    test of the kept model, the report: a second or two) is ignored: the command is already
    stopping, and what it records is what the user needs to resume."""
    if not interrupted or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


__all__ = ["QuietInterruptions", "SearchInterrupted", "StopFlag", "TrialFailed",
           "quiet_interruptions", "stop_on_signals", "stopping"]
