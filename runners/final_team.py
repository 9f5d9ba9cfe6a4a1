"""The final fit's networks trained at once, one process each, where the search had a GPU's
workers.

One small CNN's training keeps a big GPU 16-18 % busy (:data:`~automl_cnn.runners.parallel.
GPU_SHARING`: 8 workers train 5.6 times one worker's images/s on an H200). The search phase
fills the card with ``--jobs`` workers, but the final fit was one process again: a 60k search
on the H200 kept it 86.7 % busy while searching and 46.6 % over the whole command. So where the
search ran on GPUs with several workers, the final fit trains the ``--ensemble`` networks it
averages (the near-tied finalists, then the winner again with other seeds) in as many
processes at once, each annealed by the clock over the whole final phase: three networks on
one GPU each train at 95 % of one alone, where one after the other each had a third of the
time (on the H200, a 60k set at 5 minutes: 81.8 % busy over the whole command, test 0.9913
against 0.9862 for one network trained for the whole budget). A budget too short to search gets
the same beside its one trial (:func:`start_whole_team`). On a CPU the networks would only
share its cores, so the final fit stays one process.

Each member process loads the data, trains on train + validation with
:func:`automl_cnn.final_fit.fit_final`, and saves its checkpoint and learning curve under
``RUN_DIR/final-members/<i>``; the parent shows their epochs on one bar, then loads them. A
member that fails is left out (logged) as long as one succeeds; Ctrl-C and SIGTERM reach the
parent, which stops the members (in their own process group, they also stop when it dies).
"""

from __future__ import annotations

import json
import logging
import os
import queue as queue_mod
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl_cnn.config import SearchConfig
from automl_cnn.final_fit import trial_seed
from automl_cnn.finalists import ensemble_size

from automl_cnn.timeline import mark

from .parallel import WorkerPlan, usable_cores

if TYPE_CHECKING:
    import optuna

    from automl_cnn.arch import ArchSpec
    from automl_cnn.data import ImageSplits
    from automl_cnn.device import Device
    from automl_cnn.search_spaces import SearchSpace
    from automl_cnn.tracking import Tracker
    from automl_cnn.record import TrialRecord
    from automl_cnn.training import FitResult

    from .warm import WarmPool

log = logging.getLogger(__name__)

MEMBERS_DIR = "final-members"
HISTORY = "history.json"
POLL_SECONDS = 0.25
#: A trial number in no early study: the seeds of the networks beside a short budget's one trial.
NOT_A_TRIAL = 104_729


def final_team(config: SearchConfig, workers: WorkerPlan) -> WorkerPlan | None:
    """The processes the final fit trains its networks in at once: ``--ensemble`` of them
    (at most one per search worker) on the search workers' GPUs, round-robin; ``None`` (one
    process, one network after the other) on a CPU, with one worker, without a final fit, or
    where the final model must be one network (:func:`automl_cnn.finalists.ensemble_size`).

    Example:
        >>> team = final_team(SearchConfig(ensemble=3), WorkerPlan(("cuda:0",) * 8, 2))
        >>> team.devices
        ('cuda:0', 'cuda:0', 'cuda:0')
        >>> final_team(SearchConfig(ensemble=3), WorkerPlan(("cpu",) * 2, 1)) is None
        True
    """
    k = min(ensemble_size(config), workers.count)
    if not config.fits_final or not workers.on_gpus or k < 2:
        return None
    return WorkerPlan(devices=workers.devices[:k], threads=max(1, usable_cores() // k))


def team_networks(finalists: Sequence[TrialRecord], count: int,
                  seed: int) -> list[tuple[TrialRecord, int]]:
    """``count`` (finalist, seed) pairs: each finalist once with ``seed`` (as the one-process
    fit trains it), then the finalists again, best first, with other seeds.

    Example:
        >>> from types import SimpleNamespace as T
        >>> [(t.number, s) for t, s in team_networks([T(number=4)], 3, seed=0)]
        [(4, 0), (4, 7923), (4, 15842)]
    """
    out = []
    for i in range(count):
        finalist, again = finalists[i % len(finalists)], i // len(finalists)
        out.append((finalist, seed if again == 0
                    else trial_seed(seed, finalist.number, again)))
    return out


def fit_together(config: SearchConfig, specs: Sequence[ArchSpec], seeds: Sequence[int],
                 team: WorkerPlan, *, deadline: float | None, epochs: Sequence[int],
                 folder: Path, device: str = "cpu",
                 on_epoch: Callable[[dict[str, float]], None] | None = None,
                 pool: WarmPool | None = None
                 ) -> tuple[list[ArchSpec], list[FitResult], list[tuple[float, float]]]:
    """Train ``specs[i]`` with ``seeds[i]`` on train + validation in process ``i`` on
    ``team.devices[i]``, all at once, and wait for them (:class:`Together`)."""
    return Together.start(config, specs, seeds, team.devices, threads=team.threads,
                          deadline=deadline, epochs=epochs, folder=folder, pool=pool
                          ).wait(device=device, on_epoch=on_epoch)


class Together:
    """Final-fit networks training at once, one process each (:meth:`start`); :meth:`wait`
    collects them, :meth:`cancel` ends them early."""

    def __init__(self, procs: list[Any], folder: Path, rows: Any,
                 devices: Sequence[str] = ()) -> None:
        self.procs, self.folder, self.rows = procs, folder, rows
        self.outs = [folder / str(i) for i in range(len(procs))]
        self.devices = list(devices)

    @classmethod
    def start(cls, config: SearchConfig, specs: Sequence[ArchSpec], seeds: Sequence[int],
              devices: Sequence[str], *, threads: int, deadline: float | None,
              epochs: Sequence[int], folder: Path, pool: WarmPool | None = None) -> Together:
        """Start ``specs[i]``'s training with ``seeds[i]`` on train + validation in a process
        on ``devices[i]``: annealed by the clock to ``deadline`` (a ``time.time()`` reading)
        at most to its epoch cap, or without one for ``epochs[i]``. The processes are
        ``pool``'s waiting ones first (:mod:`~automl_cnn.runners.warm`), then spawned ones."""
        from .warm import ROWS, WarmPool

        pool = WarmPool(config, 0) if pool is None else pool  # none: every member spawned now
        mark(f"command: starting {len(specs)} final networks "
             f"({min(len(specs), pool.waiting)} warm)")
        procs = [pool.launch(member_main, (config.to_dict(), spec.to_dict(), seed, dev, threads,
                                           deadline, n, str(folder / str(i)), ROWS),
                             name=f"automl-cnn-final-{i}")
                 for i, (spec, seed, dev, n) in enumerate(zip(specs, seeds, devices, epochs))]
        return cls(procs, folder, pool.rows, devices)

    def wait(self, *, device: str = "cpu",
             on_epoch: Callable[[dict[str, float]], None] | None = None
             ) -> tuple[list[ArchSpec], list[FitResult], list[tuple[float, float]]]:
        """Wait for every network (``on_epoch`` gets each finished epoch's row); return the
        specs (each holding the epochs it trained), fits (models on ``device``) and training
        spans (``time.time()`` at its start and end) of those that succeeded. Raises
        :class:`RuntimeError` when none did."""
        from automl_cnn.arch import ArchSpec
        from automl_cnn.checkpoint import load_checkpoint
        from automl_cnn.training import FitResult

        try:
            while any(p.is_alive() for p in self.procs):
                _drain(self.rows, on_epoch)
                time.sleep(POLL_SECONDS)
            _drain(self.rows, on_epoch)
        except BaseException:
            self.cancel()  # an exception or Ctrl-C in the parent: the members stop too
            raise
        self.stop()  # joins them
        trained, fits, spans = [], [], []
        for proc, out in zip(self.procs, self.outs):
            if proc.exitcode != 0 or not (out / HISTORY).exists():
                log.warning("%s ended with exit code %s: left out of the final model",
                            proc.name, proc.exitcode)
                continue
            model, _, _ = load_checkpoint(out, device=device)
            done = json.loads((out / HISTORY).read_text())
            trained.append(ArchSpec.from_dict(done["spec"]))
            fits.append(FitResult(model, done["history"], float(done["seconds"]),
                                  done["stopped"]))
            spans.append((float(done["began"]), float(done["ended"])))
        shutil.rmtree(self.folder, ignore_errors=True)  # the parent holds the models now
        if not fits:
            raise RuntimeError(f"none of the final fit's {len(self.procs)} networks trained; "
                               "see the log above")
        return trained, fits, spans

    def stop(self) -> None:
        """End the networks still training (what they saved is only read by :meth:`wait`)."""
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
            proc.join(10)

    def cancel(self) -> None:
        """Stop the networks and delete what they saved."""
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def start_whole_team(config: SearchConfig, space: SearchSpace, data: ImageSplits,
                     team: WorkerPlan, *, deadline: float, scoring: float,
                     folder: Path, pool: WarmPool | None = None) -> Together | None:
    """A budget too short to search trains its one baseline in this process; with a ``team``
    the ``team.count - 1`` other networks train the same recipe with other seeds at the same
    time, on ``team.devices[1:]``, to the same ``deadline`` less the time to score them
    (``scoring`` seconds each), and the model handed over averages all of them
    (:func:`finish_whole_team`). ``None`` where that time is under twice a network's start
    (:data:`~automl_cnn.runners.phases.TEAM_START_S`) or the space has no baseline."""
    import optuna

    from automl_cnn.final_fit import with_tta

    from .phases import TEAM_START_S

    others = team.count - 1
    deadline -= others * scoring
    if not space.baselines or others < 1 or deadline - time.time() < 2 * TEAM_START_S:
        return None
    spec = with_tta(space.sample(optuna.trial.FixedTrial(space.baselines[0].params),
                                 flip_ok=data.flip_ok), config, data.flip_ok)
    # The one trial's number is not known yet: seeds apart from any early trial's own.
    seeds = [trial_seed(config.seed, NOT_A_TRIAL, again=j) for j in range(others)]
    return Together.start(config, [spec] * others, seeds, team.devices[1:],
                          threads=team.threads, deadline=deadline,
                          epochs=[spec.train.epochs] * others, folder=folder, pool=pool)


def finish_whole_team(together: Together, study: optuna.Study, config: SearchConfig,
                      data: ImageSplits, device: Device, run_dir: Path, *,
                      tracker: Tracker | None, began: float) -> dict[str, Any] | None:
    """Wait for :func:`start_whole_team`'s networks and hand over their average with the one
    trial's (``summary.json``'s ``final``); ``None`` (the trial alone is the model) where none
    trained, or the trial is not the recipe they trained."""
    from .phases import average_with_whole, whole_trial

    try:
        specs, fits, spans = together.wait(device=device.torch_device)
    except RuntimeError as exc:
        log.error("%s: the one trial is the model", exc)
        return None
    found = whole_trial(study, config, run_dir)
    if found is None or any(_recipe(s) != _recipe(found[0].spec) for s in specs):
        log.warning("the networks trained beside the one trial are not its recipe: left out")
        return None
    # spans: those of the networks beside the trial, which trained from ``began`` on
    return average_with_whole(
        study, data, device, run_dir, found, specs, fits, tracker=tracker,
        together={"networks": len(fits) + 1,
                  "devices": [device.torch_device, *together.devices[:len(fits)]],
                  "spans": [[round(a - began, 2), round(b - began, 2)] for a, b in spans]})


def _recipe(spec: ArchSpec | None) -> ArchSpec | None:
    """``spec`` without its epoch count (the clock sets it)."""
    return None if spec is None else replace(spec, train=replace(spec.train, epochs=1))


def _drain(rows: Any, on_epoch: Callable[[dict[str, float]], None] | None) -> None:
    while True:
        try:
            row = rows.get_nowait()
        except queue_mod.Empty:
            return
        if on_epoch:
            on_epoch(row)


def member_main(config_dict: dict[str, Any], spec_dict: dict[str, Any], seed: int,
                device_name: str, threads: int, deadline: float | None, epochs: int, out: str,
                rows: Any) -> None:
    """One network of the final fit: load the data, train, save the checkpoint and then its
    learning curve (``history.json``, written last: its presence says the member finished)."""
    os.setpgrp()  # a terminal's Ctrl-C goes to the parent, which stops us
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    from automl_cnn.arch import ArchSpec
    from automl_cnn.atomic import write_text_atomic
    from automl_cnn.callbacks import StopCheck
    from automl_cnn.checkpoint import CheckpointMeta, save_checkpoint
    from automl_cnn.device import resolve_device
    from automl_cnn.final_fit import FinalPlan, fit_final
    from automl_cnn.training import silence_lightning

    from .warm import load_data

    torch.set_num_threads(threads)
    silence_lightning()
    config = SearchConfig.from_dict(config_dict)
    device = resolve_device(device_name, config.precision)
    data = load_data(config).to(device.torch_device)  # loaded already in a warm process
    spec = ArchSpec.from_dict(spec_dict)
    parent = os.getppid()
    began = time.time()
    seconds = None if deadline is None else max(1.0, deadline - began)
    fit = fit_final(spec, data, device, seed=seed, plan=FinalPlan(epochs, None, seconds),
                    max_seconds=seconds, on_epoch=rows.put,
                    callbacks=[StopCheck(lambda: os.getppid() != parent, SystemExit)])
    trained = replace(spec, train=replace(spec.train, epochs=len(fit.history) or 1))
    folder = Path(out)
    save_checkpoint(folder, fit.model.to("cpu"),
                    trained, CheckpointMeta.for_dataset(data, trained_on="train+val"))
    write_text_atomic(folder / HISTORY, json.dumps(
        {"spec": trained.to_dict(), "history": fit.history, "seconds": fit.seconds,
         "stopped": fit.stopped_reason, "began": began, "ended": time.time()}))


__all__ = ["MEMBERS_DIR", "Together", "final_team", "finish_whole_team", "start_whole_team", "fit_together", "member_main", "team_networks"]
