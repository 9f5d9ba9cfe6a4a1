"""A tracker set up on a background thread, so MLflow costs the search nothing before its first
training step: importing MLflow and opening (creating, migrating) its store take seconds, about
as long as the whole start-up without them.

:class:`DeferredTracker` builds the real tracker on its own thread, started by
:func:`~automl_cnn.tracking.make_tracker` before the study is opened. The thread waits to
begin until the process trains its first step (``start``, at most ``wait`` seconds; a hook
that needs the tracker starts it at once): importing MLflow holds the interpreter's lock
most of the time, and run beside the first trial's set-up it delayed the first step by up
to 0.3 s of 3.3 on the development machine; run beside training, it delays no first step.
While the setup runs, the
light hooks (``start_search``, ``start_trial``, ``log_plan``, ``log_epoch``, ``end_trial``) are
queued, in order, and the same thread replays them once the tracker exists; training does not
wait. The hooks that carry a model, close runs or end the search (``new_best``,
``close_lost_runs``, ``final_model``, ``end_search``) and :meth:`~DeferredTracker.ready` wait
for the setup and the queue first, then run on the caller's thread, as every hook does once
the setup is done. Nothing is lost or reordered.

An error of the setup (or of a replayed hook) is raised by the next hook called, the same
exception as before; the tracker then records nothing more, as when ``make_tracker`` raised.

Example:
    >>> tracker = DeferredTracker(lambda: Tracker())
    >>> tracker.start_trial(0, {"optim.lr": 0.01})  # queued, or run at once when set up
    >>> tracker.ready()
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from automl_cnn.timeline import first_step
from automl_cnn.tracking import Tracker

if TYPE_CHECKING:
    import torch
    from torch import nn

    from automl_cnn.arch import ArchSpec
    from automl_cnn.config import SearchConfig
    from automl_cnn.record import TrialRecord
    from automl_cnn.shapes import LayerPlan

Call = tuple[str, tuple[Any, ...], dict[str, Any]]
#: The setup begins by then even if nothing trains (a study resumed with nothing left to do).
WAIT_S = 10.0


class DeferredTracker(Tracker):
    """The tracker ``build()`` returns, built on a background thread (see the module's
    docstring). ``build`` raises what the tracker's construction raises."""

    def __init__(self, build: Callable[[], Tracker], *, start: threading.Event = first_step,
                 wait: float = WAIT_S) -> None:
        self._lock = threading.Lock()
        self._start, self._wait = start, wait
        self._needed = threading.Event()  # a hook waits for the tracker: begin now
        self._queue: list[Call] = []  # hooks called before the tracker was ready, in order
        self._tracker: Tracker | None = None  # set once the setup and the queue are done
        self._error: BaseException | None = None  # raised by the next hook, once
        self._done = threading.Event()
        # Not a daemon: a process ending early still replays its queued hooks, and the real
        # tracker's exit handler then closes its runs, as before.
        self._thread = threading.Thread(target=self._set_up, args=(build,), daemon=False,
                                        name="automl-cnn-tracking-setup")
        self._thread.start()

    # -- the background thread ----------------------------------------------------------------
    def _set_up(self, build: Callable[[], Tracker]) -> None:
        began = time.monotonic()
        while not (self._start.is_set() or self._needed.is_set()) \
                and time.monotonic() - began < self._wait:
            self._needed.wait(0.02)
        try:
            tracker = build()
        except BaseException as exc:  # raised by the next hook, on the caller's thread
            with self._lock:
                self._error, self._queue = exc, []
                self._tracker = Tracker()  # recording nothing, as when make_tracker raised
            self._done.set()
            return
        while True:
            with self._lock:
                calls, self._queue = self._queue, []
                if not calls:  # from here on, hooks run on the caller's thread
                    self._tracker = tracker
                    break
            for name, args, kwargs in calls:
                try:
                    getattr(tracker, name)(*args, **kwargs)
                except BaseException as exc:  # the first one is raised by the next hook
                    with self._lock:
                        self._error = self._error or exc
        self._done.set()

    # -- dispatch -----------------------------------------------------------------------------
    def _later(self, name: str, *args: Any, **kwargs: Any) -> None:
        """Queue a light hook while the setup runs; run it now once it is done."""
        with self._lock:
            if self._tracker is None:
                self._queue.append((name, args, kwargs))
                return
        getattr(self._now(), name)(*args, **kwargs)

    def _now(self) -> Tracker:
        """The set-up tracker, after every queued hook; raises a pending setup error."""
        self._needed.set()
        self._done.wait()
        with self._lock:
            error, self._error = self._error, None
        if error is not None:
            raise error
        assert self._tracker is not None
        return self._tracker

    def ready(self) -> None:
        """Wait for the setup and the queued hooks (e.g. before worker processes attach to
        the parent run); raises what the setup raised."""
        self._now()

    # -- hooks --------------------------------------------------------------------------------
    def start_search(self, config: SearchConfig, *, settings: dict[str, Any]) -> None:
        self._later("start_search", config, settings=dict(settings))

    def start_trial(self, number: int, params: dict[str, Any]) -> None:
        self._later("start_trial", number, dict(params))

    def log_plan(self, number: int, spec: ArchSpec, plan: LayerPlan) -> None:
        self._later("log_plan", number, spec, plan)

    def log_epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        self._later("log_epoch", number, epoch, dict(metrics))

    def end_trial(self, record: TrialRecord) -> None:
        self._later("end_trial", record)

    def new_best(self, number: int, value: float, model: nn.Module,
                 example: torch.Tensor) -> None:
        self._now().new_best(number, value, model, example)

    def close_lost_runs(self, failed: set[int]) -> None:
        self._now().close_lost_runs(set(failed))

    def final_model(self, number: int, model: nn.Module, example: torch.Tensor, *,
                    history: list[dict[str, float]], value: float = float("nan")) -> None:
        self._now().final_model(number, model, example, history=history, value=value)

    def end_search(self, *, status: str, summary: dict[str, Any]) -> None:
        self._now().end_search(status=status, summary=summary)


__all__ = ["DeferredTracker"]
