"""Processes started warm: the search's workers and the final team's members begin importing
torch and Lightning while the command itself does, not after it.

A spawned process pays the same start-up as the command: on the H200 box a fresh process took
10.5 s to import Lightning (3.4 s for torch alone), and the 8 workers of a digits search, started
once the command had planned them, were ready 13-16 s later, 11.5 s into the command (its own
imports), so trials began 24-27 s in (``benchmarks/bench_timeline.py``). A :class:`WarmPool`
spawns its processes at once (the CLI starts one right after parsing the arguments, before its
own heavy imports); each imports what a worker needs, loads the dataset, starts CUDA on the
device it will most likely get, and then waits. :meth:`WarmPool.launch` hands a waiting process
its work (a worker's or a final-team member's function and arguments) instead of spawning a
cold one; where none is left it spawns one as before, with the same arguments. A process never
handed work is ended by :meth:`WarmPool.close` (it holds nothing but what it loaded); one whose
parent died ends by itself.

Shared objects (the workers' stop flag, the members' epoch queue) cannot travel through a pipe:
they are created with the pool, inherited by every process it spawns, and put in place of
:data:`STOP_CODE` and :data:`ROWS` in the arguments of the work.
"""

from __future__ import annotations

import glob
import importlib
import logging
import multiprocessing as mp
import os
import signal
import time
from typing import Any

from automl_cnn.config import SearchConfig
from automl_cnn.ending import end_quickly
from automl_cnn.timeline import mark

log = logging.getLogger(__name__)

#: Placeholders in a work's arguments for the pool's shared objects.
STOP_CODE = "<the pool's stop flag>"
ROWS = "<the pool's epoch queue>"
#: What a worker and a final-team member import before they can train.
MODULES = ("torch", "lightning.pytorch", "optuna", "optuna_integration",
           "automl_cnn.runners.trial", "automl_cnn.runners.slots", "automl_cnn.final_fit",
           "automl_cnn.checkpoint")
#: A waiting process checks this often whether its parent is still there.
WAIT_POLL_S = 0.5

# In a warm process: the dataset loaded while it waited, handed to the first work that asks.
_loaded: dict[tuple[Any, ...], Any] = {}


def with_shared(args: tuple[Any, ...], stop_code: Any, rows: Any) -> tuple[Any, ...]:
    """``args`` with the pool's shared objects in place of :data:`STOP_CODE` and
    :data:`ROWS` (the same for a waiting process's work and a cold spawn's)."""
    shared = {STOP_CODE: stop_code, ROWS: rows}
    return tuple(shared.get(a, a) if isinstance(a, str) else a for a in args)


def data_key(config: SearchConfig) -> tuple[Any, ...]:
    return (config.dataset, config.seed, config.image_size, config.train_subset)


def load_data(config: SearchConfig) -> Any:
    """``config``'s dataset, on the CPU: the one this process loaded while it waited, if it is
    that one, else loaded now (a bad dataset fails here, as it would without a pool)."""
    from automl_cnn.data import load_search_data

    found = _loaded.pop(data_key(config), None)
    return found if found is not None else load_search_data(config)


def visible_gpus() -> int:
    """NVIDIA GPUs this process may use, counted without starting CUDA (or importing torch):
    ``$CUDA_VISIBLE_DEVICES`` when set, else the driver's ``/proc`` entries or device files."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        count = 0
        for item in listed.split(","):  # CUDA stops at the first entry that is not a device
            if not item.strip() or item.strip().startswith("-"):
                break
            count += 1
        return count
    try:
        return len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return len(glob.glob("/dev/nvidia[0-9]*"))


def expected_processes(config: SearchConfig) -> int:
    """How many worker processes the command will most likely start (0 for one: it trains in
    its own process), from its flags and the hardware, without importing torch: what
    :func:`~automl_cnn.runners.parallel.auto_jobs` will decide with ``--jobs auto``, less what
    it can only measure then (free memory, another job on the GPU)."""
    from .parallel import MAX_PER_GPU, capped, jobs_for

    jobs = config.jobs
    if jobs is None:
        gpus = 0 if config.device in ("cpu", "mps") else visible_gpus()
        if gpus and config.device not in ("auto", "cuda", "gpu"):
            gpus = 1  # cuda:N: one GPU
        jobs = jobs_for([MAX_PER_GPU] * gpus)
    jobs = capped(jobs, config)
    return jobs if jobs > 1 else 0


class WarmPool:
    """Processes spawned now that wait for work; see the module docstring.

    Example:
        >>> pool = WarmPool(SearchConfig(device="cpu"), count=0)
        >>> pool.waiting
        0
        >>> pool.close()
    """

    def __init__(self, config: SearchConfig, count: int) -> None:
        self._ctx = mp.get_context("spawn")
        self.stop_code = self._ctx.Value("i", 0)
        self.rows: Any = self._ctx.Queue()
        self._preload = config.to_dict()
        self._waiting: list[_Warm] = []
        self.started = 0
        self.add(count)

    @classmethod
    def for_command(cls, config: SearchConfig) -> WarmPool:
        """A pool of :func:`expected_processes` for ``config`` (none where one process trains)."""
        return cls(config, expected_processes(config))

    def add(self, count: int) -> None:
        """Spawn ``count`` more waiting processes."""
        for _ in range(max(0, count)):
            self._waiting.append(_Warm(self._ctx, self.started, self._preload, self.stop_code,
                                       self.rows))
            self.started += 1

    def reserve(self, count: int) -> None:
        """Make sure ``count`` processes are waiting (spawning the difference)."""
        self._waiting = [w for w in self._waiting if w.is_alive()]
        self.add(count - len(self._waiting))

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def launch(self, target: Any, args: tuple[Any, ...], name: str) -> Any:
        """Run ``target(*args)`` in a waiting process (the longest waiting first), else in one
        spawned now; returns it (``is_alive``, ``join``, ``terminate``, ``exitcode``,
        ``name``, as a :class:`multiprocessing.Process`)."""
        while self._waiting:
            warm = self._waiting.pop(0)
            if warm.give(target, args, name):
                return warm
        proc = self._ctx.Process(target=run_then_end, name=name, daemon=False,
                                 args=(target, *with_shared(args, self.stop_code, self.rows)))
        proc.start()
        return proc

    def close(self) -> None:
        """End the processes never handed work."""
        waiting, self._waiting = self._waiting, []
        for warm in waiting:
            warm.terminate()
        for warm in waiting:
            warm.join(5)


class _Warm:
    """One waiting process and the end of the pipe its work goes through."""

    def __init__(self, ctx: Any, index: int, preload: dict[str, Any], stop_code: Any,
                 rows: Any) -> None:
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=warm_main, name=f"automl-cnn-warm-{index}",
                                 daemon=False, args=(child, preload, index, stop_code, rows))
        self._proc.start()
        child.close()
        self.name = self._proc.name

    def give(self, target: Any, args: tuple[Any, ...], name: str) -> bool:
        """Send the work; False where the process is gone (it could not start)."""
        if not self._proc.is_alive():
            return False
        try:
            self._conn.send((target, args))
        except (OSError, EOFError):
            return False
        self.name = name
        return True

    def is_alive(self) -> bool:
        return self._proc.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self._proc.join(timeout)

    def terminate(self) -> None:
        self._proc.terminate()

    @property
    def exitcode(self) -> int | None:
        return self._proc.exitcode

    @property
    def pid(self) -> int | None:
        return self._proc.pid


def warm_main(conn: Any, preload: dict[str, Any], index: int, stop_code: Any,
              rows: Any) -> None:
    """A waiting process: get ready (:func:`_get_ready`), then run the one work it is sent
    (``None``: nothing to do) and end, as a spawned worker would."""
    os.setpgrp()  # a terminal's Ctrl-C goes to the parent, which ends us or sends us work
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    mark(f"warm {index}: started")
    try:
        _get_ready(SearchConfig.from_dict(preload))
    except Exception as exc:  # noqa: BLE001 - the work loads again and fails there, clearly
        log.debug("warm process %d could not get ready: %s", index, exc)
    mark(f"warm {index}: ready")
    while not conn.poll(WAIT_POLL_S):
        if os.getppid() != parent:
            return  # the command is gone
    try:
        work = conn.recv()
    except EOFError:  # the parent closed its end
        return
    if work is None:
        return
    target, args = work
    run_then_end(target, *with_shared(args, stop_code, rows))


def run_then_end(target: Any, *args: Any) -> None:
    """A worker's or a final-team member's work, then a quick end: the parent waits for the
    process to end, so the second its exit would spend collecting garbage is skipped
    (:func:`automl_cnn.ending.end_quickly`)."""
    target(*args)
    end_quickly()


def _get_ready(config: SearchConfig) -> None:
    """Import what training needs, load the dataset, and start CUDA on the device this process
    will most likely train on (only where that is certain: one visible GPU, or ``cuda:N``)."""
    began = time.perf_counter()
    for module in MODULES:
        importlib.import_module(module)
    mark("warm: imported")
    _loaded[data_key(config)] = load_data(config)
    import torch

    device = config.device
    if device.startswith("cuda:"):
        likely = device
    elif device in ("auto", "cuda", "gpu") and torch.cuda.is_available() \
            and torch.cuda.device_count() == 1:
        likely = "cuda:0"
    else:
        likely = None
    if likely is not None:
        _start_cuda(torch, likely)
    log.debug("warm in %.1f s", time.perf_counter() - began)


def _start_cuda(torch: Any, device: str) -> None:
    """CUDA's context and cuDNN's first convolution, forward and backward in the precision the
    trials train in: what a process's first training step would otherwise wait for."""
    from automl_cnn.device import resolve_device

    dev = resolve_device(device)
    conv = torch.nn.Conv2d(1, 8, 3, padding=1).to(dev.torch_device)
    x = torch.zeros(2, 1, 8, 8, device=dev.torch_device)
    with dev.autocast():
        out = conv(x).float().sum()
    out.backward()
    torch.cuda.synchronize(dev.torch_device)


__all__ = ["ROWS", "STOP_CODE", "WarmPool", "expected_processes", "load_data", "run_then_end",
           "visible_gpus", "warm_main"]
