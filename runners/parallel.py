"""``--jobs N``: N trials at once, in worker processes that share the study through its storage.

The parent validates, creates the study, and then only watches: it starts the workers (spawned,
each in its own process group so a terminal's Ctrl-C reaches the parent alone), polls the
storage for the one progress bar, and on Ctrl-C or SIGTERM tells every worker to stop through a
shared flag. Each worker loads the data once, keeps it on its device (``cuda:i`` round-robin,
several per GPU), uses ``cores / N`` torch threads, and runs the very same
:class:`~automl_cnn.runners.trial.TrialRunner` and
:func:`~automl_cnn.runners.slots.run_until_target` as a one-process search: the study ends with
exactly its target of trials, and an interrupted trial is recorded (and queued again) as for
one process. The summary, the final test and the report stay with the parent, after the
workers end.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from automl_cnn.config import SearchConfig
from automl_cnn.errors import UserError
from automl_cnn.timeline import mark

if TYPE_CHECKING:  # torch stays unimported until a worker is planned (runners/warm.py)
    from automl_cnn.device import Device
    from .warm import WarmPool

log = logging.getLogger(__name__)

#: Workers per GPU at most: on an H200, 8 workers trained 5.6x one worker's images/s and 4
#: trained 3.7x (:data:`GPU_SHARING`); the 8 kept it 87 % busy through a 60k search.
MAX_PER_GPU = 8
#: Each worker keeps a core busy launching its kernels (8 workers had 16 cores when measured).
CORES_PER_GPU_WORKER = 2
#: GPU memory a worker is allowed to count on (CUDA context + data + a small CNN's activations).
GIB_PER_GPU_WORKER = 3.0
#: A GPU already busier than this (another job) gets one worker.
BUSY_PERCENT = 50
#: Workers on a CPU: one process per this many cores, so 1 on a 2-core machine, which is also
#: the faster there: measured quiet (benchmarks/bench_throughput.py, digits, 20 trials), --jobs 2
#: (1 torch thread each) ran 0.75x the trials per hour of --jobs 1 (2 threads). A seeded
#: one-process search is reproducible too; N workers are not.
CORES_PER_CPU_WORKER = 4
#: Training images/s of k workers sharing one GPU, as a multiple of one worker alone: (k,
#: multiple) points, linear between them and flat past the last. A small CNN's steps leave a
#: big GPU mostly idle (one trial kept an H100 16-17 % busy), and other processes' kernels fill
#: the gaps. Measured on an H200 with ``benchmarks/bench_concurrency.py`` (the VGG-style
#: baseline on a 60,000-image 28x28 set, batch 64, bf16, medians of 2 rounds): one worker
#: 19,200 images/s; 2, 4 and 8 workers 2.06x (counted as 2), 3.69x and 5.58x.
GPU_SHARING = ((1, 1.0), (2, 2.0), (4, 3.69), (8, 5.58))
#: Another card's table, measured with the same script: ``AUTOML_CNN_GPU_SHARING=2:1.9,4:3.1``.
SHARING_ENV = "AUTOML_CNN_GPU_SHARING"
STOP_REASONS = ("", "Ctrl-C", "SIGTERM")
POLL_SECONDS = 0.25


@dataclass(frozen=True)
class WorkerPlan:
    """Where each worker trains and how many torch threads it uses."""

    devices: tuple[str, ...]  # one torch device per worker, e.g. ("cuda:0", "cuda:0")
    threads: int

    @property
    def count(self) -> int:
        return len(self.devices)

    @property
    def on_gpus(self) -> bool:
        return self.devices[0].startswith("cuda")

    @property
    def per_device(self) -> list[int]:
        """How many workers each device holds."""
        return list(Counter(self.devices).values())

    @property
    def speedup(self) -> float:
        """Training images/s of all the workers together, as a multiple of one alone: 1 on a
        CPU (the workers share its cores), else the sum over the GPUs of
        :func:`gpu_sharing` of the workers on each."""
        return sum(map(gpu_sharing, self.per_device)) if self.on_gpus else 1.0

    @property
    def share(self) -> float:
        """Each worker's training speed as a share of one worker alone (on the most crowded
        device): what sizes a rung's time limit and its scoring time in a worker."""
        if not self.on_gpus:
            return 1.0 / self.count
        most = max(self.per_device)
        return gpu_sharing(most) / most


def gpu_sharing(workers: int) -> float:
    """Images/s of ``workers`` sharing one GPU as a multiple of one alone (:func:`sharing_table`).

    Example:
        >>> gpu_sharing(1), gpu_sharing(3) == (GPU_SHARING[1][1] + GPU_SHARING[2][1]) / 2
        (1.0, True)
    """
    points = sharing_table()
    if workers <= points[0][0]:
        return points[0][1]
    for (k0, v0), (k1, v1) in zip(points, points[1:]):
        if workers <= k1:
            return v0 + (v1 - v0) * (workers - k0) / (k1 - k0)
    return points[-1][1]


def sharing_table() -> tuple[tuple[int, float], ...]:
    """:data:`GPU_SHARING`, or the table in ``$AUTOML_CNN_GPU_SHARING`` (``k:multiple`` pairs,
    comma-separated; one worker is always 1.0). A malformed value is one clear error."""
    text = os.environ.get(SHARING_ENV, "").strip()
    if not text:
        return GPU_SHARING
    points = {1: 1.0}
    try:
        for part in text.split(","):
            k, multiple = part.split(":")
            points[int(k)] = float(multiple)
        ok = all(k >= 1 and 0 < v <= k for k, v in points.items()) and points[1] == 1.0
    except ValueError:
        ok = False
    if not ok:
        raise UserError(
            f"{SHARING_ENV}={text!r} is not a table of workers per GPU and their speed-up. "
            "Write it as comma-separated k:multiple pairs, each multiple above 0 and at most k "
            "(e.g. 2:1.9,4:3.5,8:5), as benchmarks/bench_concurrency.py measures it, or unset "
            "it to use the table measured on an H200.")
    return tuple(sorted(points.items()))


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def gpu_busy_percent(index: int) -> int:
    """How busy GPU ``index`` is right now (0 when no driver tool answers)."""
    import torch

    try:
        return int(torch.cuda.utilization(index))
    except Exception:  # pynvml missing or no permission: count the GPU as idle
        return 0


def auto_jobs(device: Device) -> int:
    """Workers for ``--jobs auto`` on ``device``'s kind of hardware.

    A GPU takes up to :data:`MAX_PER_GPU` workers, fewer when its free memory is short
    (:data:`GIB_PER_GPU_WORKER` each) and one when another job keeps it busy; with
    ``--device auto`` every visible GPU counts; all of them together get at most one worker
    per :data:`CORES_PER_GPU_WORKER` cores. A CPU takes one per :data:`CORES_PER_CPU_WORKER`
    cores.
    """
    if device.accelerator != "gpu":
        return jobs_for([])
    import torch

    per_gpu = []
    for index in _gpu_indices(device):
        free, _ = torch.cuda.mem_get_info(index)
        fit = int(free / 2**30 // GIB_PER_GPU_WORKER)
        busy = gpu_busy_percent(index) > BUSY_PERCENT
        per_gpu.append(max(1, min(MAX_PER_GPU, fit, 1 if busy else MAX_PER_GPU)))
    return jobs_for(per_gpu)


def jobs_for(per_gpu: list[int]) -> int:
    """Workers for GPUs that can take ``per_gpu[i]`` each (none: a CPU, one worker per
    :data:`CORES_PER_CPU_WORKER` cores): their sum, at most one per
    :data:`CORES_PER_GPU_WORKER` cores, never fewer than one per GPU."""
    if not per_gpu:
        return max(1, usable_cores() // CORES_PER_CPU_WORKER)
    return max(len(per_gpu), min(sum(per_gpu), usable_cores() // CORES_PER_GPU_WORKER))


def capped(jobs: int, config: SearchConfig) -> int:
    """``jobs`` workers, but no more than ``--trials`` (a worker without a trial is idle)."""
    return max(1, min(jobs, config.trials)) if config.trials is not None else jobs


def _gpu_indices(device: Device) -> list[int]:
    import torch

    if device.accelerator != "gpu":
        return []
    if device.all_gpus:
        return list(range(torch.cuda.device_count()))
    return [torch.device(device.torch_device).index or 0]


def plan_workers(config: SearchConfig, device: Device) -> WorkerPlan:
    """``config.jobs`` (None = auto) workers, pinned to GPUs round-robin, threads split."""
    jobs = capped(config.jobs if config.jobs is not None else auto_jobs(device), config)
    gpus = _gpu_indices(device)
    devices = tuple(f"cuda:{gpus[i % len(gpus)]}" if gpus else device.torch_device
                    for i in range(jobs))
    return WorkerPlan(devices=devices, threads=max(1, usable_cores() // jobs))


def run_workers(config: SearchConfig, plan: WorkerPlan, *, stop: Any,
                on_poll: Any = None, ladder: Any = None,
                images_per_second: float | None = None,
                pool: WarmPool | None = None) -> list[int]:
    """Run the study's trials in ``plan.count`` workers; return their exit codes.

    ``ladder`` (a :class:`~automl_cnn.ladder.Ladder`, the parent's plan) is climbed by every
    worker: promotion reads the rung scores all of them reported to the shared study.

    ``stop`` is the parent's :class:`~automl_cnn.runners.trial.StopFlag` (set by its signal
    handler); ``on_poll()`` is called a few times a second (the progress bar). A second Ctrl-C
    (KeyboardInterrupt) still waits for the workers, which stop within one batch.

    ``pool`` (:class:`~automl_cnn.runners.warm.WarmPool`): its waiting processes become the
    first workers; the rest are spawned now.
    """
    from .warm import STOP_CODE, WarmPool

    pool = WarmPool(config, 0) if pool is None else pool  # none: every worker spawned now
    stop_code = pool.stop_code
    deadline = time.time() + config.timeout if config.timeout else None
    climb = (ladder.to_dict() if ladder is not None else None, images_per_second)
    mark(f"command: starting {plan.count} workers ({min(plan.count, pool.waiting)} warm)")
    procs = [pool.launch(worker_main, (config.to_dict(), i, dev, plan.threads, STOP_CODE,
                                       deadline, climb), name=f"automl-cnn-worker-{i}")
             for i, dev in enumerate(plan.devices)]
    try:
        while any(p.is_alive() for p in procs):
            if stop and not stop_code.value:
                stop_code.value = STOP_REASONS.index(stop.reason) if stop.reason in \
                    STOP_REASONS else 1
            if on_poll:
                on_poll()
            time.sleep(POLL_SECONDS)
    finally:
        if any(p.is_alive() for p in procs):  # an exception or a second Ctrl-C: stop them
            stop_code.value = stop_code.value or 1
            _wait_or_kill(procs)
        if on_poll:
            on_poll()
    codes = [p.exitcode if p.exitcode is not None else -1 for p in procs]
    for proc, code in zip(procs, codes, strict=True):
        if code:
            log.warning("%s ended with exit code %s", proc.name, code)
    return codes


def _wait_or_kill(procs: list[Any], grace: float = 60.0) -> None:
    """Workers stop at their next batch; one stuck past ``grace`` seconds is terminated."""
    end = time.monotonic() + grace
    for proc in procs:
        proc.join(max(0.0, end - time.monotonic()))
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
            proc.join(5)


# -- the worker process ---------------------------------------------------------------------
def worker_main(config_dict: dict[str, Any], index: int, device_name: str, threads: int,
                stop_code: Any, deadline: float | None,
                climb: tuple[dict[str, Any] | None, float | None] = (None, None)) -> None:
    """One worker: load the data once, then take trials until the study holds its target
    (:func:`~automl_cnn.runners.slots.run_until_target`, exact under the storage lock)."""
    os.setpgrp()  # a terminal's Ctrl-C goes to the parent, which tells us through stop_code
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    mark(f"worker {index}: started")
    import torch

    from .slots import read_target, run_until_target
    from .storage_lock import storage_lock
    from .trial import SearchInterrupted, TrialFailed

    torch.set_num_threads(threads)
    config = SearchConfig.from_dict(config_dict).replace(device=device_name, jobs=1)
    stop = _SharedStop(stop_code)
    signal.signal(signal.SIGTERM, lambda *_: stop.set("SIGTERM"))
    runner, study, tracker = _worker_setup(config, stop, climb)
    mark(f"worker {index}: ready")
    runner.deadline = deadline  # a trial training at the search phase's end stops there
    status = "FINISHED"
    try:
        run_until_target(
            study, runner, lock=lambda: storage_lock(config.storage_url, study._storage),
            target=read_target(study), interval=config.heartbeat,
            timeout=None if deadline is None else max(0.0, deadline - time.time()),
            stop=lambda: bool(stop), catch=(TrialFailed,), on_lost=tracker.close_lost_runs)
    except SearchInterrupted:
        status = "KILLED"
    finally:
        tracker.end_search(status="KILLED" if stop else status, summary={})
        mark(f"worker {index}: done")


def _worker_setup(config: SearchConfig, stop: Any,
                  climb: tuple[dict[str, Any] | None, float | None]) -> tuple[Any, Any, Any]:
    import optuna

    from automl_cnn.device import resolve_device
    from automl_cnn.ladder import Ladder
    from automl_cnn.search_spaces import load_space
    from automl_cnn.tracking import make_tracker
    from automl_cnn.training import silence_lightning

    from .study import open_study
    from .trial import TrialRunner
    from .warm import load_data

    mark("worker: imported")
    silence_lightning()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space, device = load_space(config.space), resolve_device(config.device, config.precision)
    data = load_data(config).to(device.torch_device)  # loaded already in a warm process
    mark("worker: data on the device")
    study = open_study(config, space, create=False)  # a sampler seeded per worker (PID)
    tracker = make_tracker(config)
    tracker.start_search(config, settings={})  # attaches to the parent's run
    ladder, images_per_second = climb
    runner = TrialRunner(config, space, data, device, tracker=tracker, run_dir=config.run_dir,
                         stop=stop, ladder=Ladder.from_dict(ladder) if ladder else None,
                         images_per_second=images_per_second)
    return runner, study, tracker


class _SharedStop:
    """The worker's stop flag: its own SIGTERM, the parent's word through ``stop_code``, or the
    parent's death."""

    def __init__(self, stop_code: Any) -> None:
        from .trial import StopFlag

        self._own, self._code = StopFlag(), stop_code
        self._parent = os.getppid()

    def set(self, reason: str) -> None:
        self._own.set(reason)

    @property
    def reason(self) -> str:
        if not self._own and not self._code.value and os.getppid() != self._parent:
            return "the parent process died"
        return self._own.reason or STOP_REASONS[self._code.value % len(STOP_REASONS)]

    def __bool__(self) -> bool:
        # A parent killed outright (kill -9) cannot tell us: an orphan stops by itself.
        return bool(self._own) or bool(self._code.value) or os.getppid() != self._parent


__all__ = ["WorkerPlan", "auto_jobs", "gpu_sharing", "jobs_for", "plan_workers", "run_workers",
           "sharing_table", "worker_main"]
