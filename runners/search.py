"""Run a whole search: validate, open or resume the study, optimise, evaluate, summarise.

Side effects live here (run directory, signals, storage, tracker); the library pieces it
calls take paths and values.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna

from automl_cnn.atomic import write_text_atomic
from automl_cnn.budget import Budget
from automl_cnn.config import SearchConfig
from automl_cnn.data import ImageSplits, load_search_data
from automl_cnn.device import Device, resolve_device
from automl_cnn.errors import UserError
from automl_cnn.front import front_summary
from automl_cnn.record import DatasetInfo, enqueue_baseline, read_study_info, write_study_info
from automl_cnn.redact import require_password, without_password
from automl_cnn.results import ranked_trials, summarize
from automl_cnn.rundir import RunDir
from automl_cnn.search_spaces import SearchSpace, load_space
from automl_cnn.storage import study_exists
from automl_cnn.timeline import mark
from automl_cnn.tracking import Tracker, make_tracker
from automl_cnn.training import evaluate_checkpoint, silence_lightning

from .join import check_join, study_identity
from .keep import kept_checkpoints
from .final_team import MEMBERS_DIR, final_team, finish_whole_team, start_whole_team
from .parallel import plan_workers, run_workers, sharing_table
from .phases import (SearchPlan, budget_summary, for_plan, plan_search, run_final_fit,
                     run_more_trainings, search_bar, search_rounds, end_scoring_seconds)
from .progress import poll_progress
from .slots import run_until_target, settle_target
from .storage_lock import storage_lock
from .study import open_study, search_storage
from .target import fitted_baselines, latency_target
from .signals import StopFlag, TrialFailed, is_interruption, stop_on_signals, stopping
from .trial import TrialRunner
from .warm import WarmPool

log = logging.getLogger(__name__)
STUDY_IDENTITY = ("dataset", "space", "objectives", "image_size", "train_subset")
#: Trials queued after the baselines, each near the first baseline (SearchSpace.neighbours).
NEIGHBOURS = 8


@dataclass
class SearchOutcome:
    """What a search leaves behind: the study, its summary, and where things were written."""

    study: optuna.Study
    summary: dict[str, Any]
    run_dir: Path
    interrupted: bool


def prepare(config: SearchConfig, *, resume: bool,
            join: bool = False) -> tuple[SearchSpace, ImageSplits, Device]:
    """Everything that can fail on user input, before any file is written or any training."""
    config.check()
    space = load_space(config.space)
    device = resolve_device(config.device, config.precision)
    latency_target(config, device)  # a --latency-device GPU that is not there fails here
    sharing_table()  # a malformed $AUTOML_CNN_GPU_SHARING fails here, on any device
    data = load_search_data(config)
    _check_run_dir(config, resume=resume, join=join)
    return space, data, device


def _check_run_dir(config: SearchConfig, *, resume: bool, join: bool = False) -> None:
    saved_path = RunDir(config.run_dir).config
    if not saved_path.exists():
        if resume and not join and config.storage is None:
            raise UserError(f"--resume: {config.run_dir} holds no study to resume. Run the "
                            "search without --resume first, or point --out at the run directory.")
        return
    saved = SearchConfig.from_dict(json.loads(saved_path.read_text()))
    if saved.resolved_study_name != config.resolved_study_name:
        raise UserError(f"{config.run_dir} holds study {saved.resolved_study_name!r}, not "
                        f"{config.resolved_study_name!r}. Choose another --out, or pass "
                        f"--study-name {saved.resolved_study_name} to continue that study.")
    diffs = [f"{key}: stored {getattr(saved, key)!r}, given {getattr(config, key)!r}"
             for key in STUDY_IDENTITY
             # as JSON: a list read back from config.json equals the tuple it was written from
             if json.dumps(getattr(saved, key)) != json.dumps(getattr(config, key))]
    if diffs:
        raise UserError(f"{config.run_dir} holds study {saved.resolved_study_name!r}, searched "
                        f"with other settings ({'; '.join(diffs)}). Run with the stored "
                        "settings to continue it, or use --out to start a separate study; "
                        "nothing was changed.")
    if not (resume or join):
        raise UserError(f"{config.run_dir} already holds study {saved.resolved_study_name!r} "
                        f"({saved_path}). Pass --resume to add trials to it, or choose another "
                        "--out / --study-name to start a new one; nothing was changed.")


def open_or_create(config: SearchConfig, space: SearchSpace, data: ImageSplits, *,
                   resume: bool, join: bool = False) -> optuna.Study:
    """Create the study, or open it (``resume``: it must exist; ``join``: create it unless
    another worker did — under the storage lock, so exactly one creates it). A joining worker
    whose settings differ from the study's is refused (:func:`.join.check_join`)."""
    storage = search_storage(config.storage_url, heartbeat=config.heartbeat)
    name, shown = config.resolved_study_name, without_password(config.storage_url)
    identity = study_identity(config, space, data)
    with storage_lock(config.storage_url, storage):
        exists = study_exists(storage, name)
        if exists and not (resume or join):
            raise UserError(f"study {name!r} already exists in {shown}. Pass "
                            "--resume to add trials to it, --join to work on it with other "
                            "workers, or choose another --study-name.")
        if not exists and resume and config.storage is not None:
            raise UserError(f"--resume: there is no study {name!r} in {shown}. "
                            "Leave out --resume to create it, or pass --join.")
        try:
            study = open_study(config, space, create=not exists, storage=storage)
        except optuna.exceptions.DuplicatedStudyError:  # a worker without the lock made it
            raise UserError(f"study {name!r} was just created in {shown} by "
                            "another process. Run this worker with --join to share it.") from None
        if exists:
            check_join(read_study_info(study).identity, identity, study=name,
                       where=shown)
        else:
            _describe_new_study(study, space, data, identity)
            for name_, params in fitted_baselines(config, space, data):  # narrowed to limits
                enqueue_baseline(study, params, name_)
            enqueue_neighbours(study, space, config)
        mode = "join" if join else "resume" if exists else "create"
        settle_target(study, config.trials, mode=mode)
    return study


def _describe_new_study(study: optuna.Study, space: SearchSpace, data: ImageSplits,
                        identity: dict[str, Any]) -> None:
    write_study_info(study, dataset=DatasetInfo.of(data), identity=identity)
    for baseline in space.baselines:  # start from known-good recipes, then improve
        enqueue_baseline(study, baseline.params, baseline.name)


def enqueue_neighbours(study: optuna.Study, space: SearchSpace, config: SearchConfig) -> None:
    """After the baselines, :data:`NEIGHBOURS` trials near the first of them
    (:meth:`~automl_cnn.search_spaces.SearchSpace.neighbours`), before the sampler goes
    anywhere else; with ``--trials N``, no more than the N leave room for."""
    queued = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
    count = NEIGHBOURS if config.trials is None else min(NEIGHBOURS, config.trials - queued)
    for params in space.neighbours(count, seed=config.seed):
        study.enqueue_trial(params)


def with_recorded_storage(config: SearchConfig, *, resume: bool) -> SearchConfig:
    """``--resume`` without ``--storage`` continues the study where the run directory says it
    lives (its ``config.json``), never a fresh journal beside it."""
    saved_path = RunDir(config.run_dir).config
    if not resume or config.storage is not None or not saved_path.exists():
        return config
    try:
        saved = json.loads(saved_path.read_text()).get("storage")
    except (OSError, json.JSONDecodeError):
        return config
    if not saved:
        return config
    require_password(saved, where=str(saved_path), fix=(
        "Pass --storage with the full URL (password included) to resume, or keep the password "
        "in PGPASSWORD / ~/.pgpass and leave it out of the URL."))
    return config.replace(storage=saved)


def run_search(config: SearchConfig, *, resume: bool = False, join: bool = False,
               progress: bool = True, tracker: Tracker | None = None,
               on_ready: Callable[[SearchConfig], None] | None = None,
               started: float | None = None, pool: WarmPool | None = None) -> SearchOutcome:
    """Run ``config.trials`` more trials (or until ``config.timeout``), fit the winner on
    train + validation, and summarise. ``config.timeout`` bounds all of it, from ``started``
    (a ``time.monotonic()`` reading; default: now). ``pool``: processes started warm for the
    workers (:mod:`~automl_cnn.runners.warm`; the CLI starts them before its imports); it is
    closed here, once the search and the final fit have taken what they need.

    Example:
        >>> outcome = run_search(SearchConfig(trials=3, space="tiny", out="runs/demo"))
        >>> outcome.summary["best"]["value"] > 0.5
        True
    """
    pool = pool if pool is not None else WarmPool(config, 0)
    try:
        return _run_search(config, resume=resume, join=join, progress=progress,
                           tracker=tracker, on_ready=on_ready, started=started, pool=pool)
    finally:
        pool.close()  # the processes still waiting: nothing was handed to them


def _run_search(config: SearchConfig, *, resume: bool, join: bool, progress: bool,
                tracker: Tracker | None, on_ready: Callable[[SearchConfig], None] | None,
                started: float | None, pool: WarmPool) -> SearchOutcome:
    silence_lightning()
    budget = None if config.timeout is None else Budget.start(
        config.timeout, final_share=config.final_share if config.fits_final else 0.0,
        started=started)
    config = with_recorded_storage(config, resume=resume or join)
    space, data, device = prepare(config, resume=resume, join=join)
    mark("command: data loaded")
    # Before the study or any file exists: an unreachable tracking server fails here.
    tracker = tracker or make_tracker(config)
    run_dir = config.run_dir
    study = open_or_create(config, space, data, resume=resume, join=join)
    RunDir(run_dir).write_settings(config.public().to_json(), load_space(config.space).path)
    tracker.start_search(config, settings=_settings(config, data, device))
    if on_ready:
        on_ready(config)
    stop = StopFlag()
    mark("command: study ready")
    data = data.to(device.torch_device)  # once: trials and the final test batch from here
    mark("command: data on the device")
    began = time.perf_counter()
    startup = time.monotonic() - started if started is not None else 0.0  # imports, data, study
    budget = budget.after_startup() if budget else None  # a slow start means a slow end
    # Planned once, before the speed timing: a GPU read just after our own timed steps could
    # look busy and get fewer workers than the plan was sized for.
    workers = plan_workers(config, device)
    plan = plan_search(config, space, data, device, budget, speedup=workers.speedup)
    mark(f"command: planned ({workers.count} workers)")
    # each network scores the test split
    scoring = end_scoring_seconds(plan.images_per_second, config, data, device)
    if budget is not None:  # the end scores the test split: keep its time (flips: twice)
        budget = budget.reserving(scoring)
    # GPU workers: the final fit's networks train at once (planned before a budget too short
    # to search brings the search down to one process: its one trial gets a team too)
    team = final_team(config, workers)
    budget, searching, target, enough = for_plan(plan, budget, config, study)
    if searching.jobs != config.jobs:  # too short to search: one trial, in this process
        workers = plan_workers(searching, device)
    if team is not None and budget is not None and not plan.ladder.whole:
        pool.reserve(workers.count + team.count)  # the team's processes get ready meanwhile
    elif workers.count < 2 and not (plan.ladder.whole and team is not None):
        pool.close()  # one process trains: the waiting processes have nothing to do
    config = searching
    plan = replace(plan, share=workers.share)
    each = plan.images_per_second and plan.images_per_second * plan.share  # workers share
    runner = TrialRunner(config, space, data, device, tracker=tracker, run_dir=run_dir, stop=stop,
                         ladder=plan.ladder, images_per_second=each)
    # The search phase, then the time the final fit can spare.
    beside = None  # networks trained beside the one trial of a budget too short to search
    searched_all = False
    try:
        for budget in search_rounds(plan, study, budget, data, config, team=team):
            runner.deadline = None if budget is None else time.time() + budget.search_left()
            if plan.ladder.whole and team is not None and runner.deadline is not None:
                beside = start_whole_team(config, space, data, team, deadline=runner.deadline,
                                          scoring=scoring, pool=pool,
                                          folder=RunDir(run_dir).path / MEMBERS_DIR)
                pool.close()  # the one trial trains here: no other process has work
            bar = search_bar(plan, config, budget, runner, enabled=progress)
            interrupted = _search_phase(config, study, runner, workers, stop, bar, budget,
                                        tracker, target, enough, pool)
            if interrupted:
                break
        searched_all = not interrupted
    finally:
        if beside is not None and not searched_all:  # Ctrl-C, SIGTERM or an error
            beside.cancel()
    searched = time.perf_counter()
    mark("command: search ended")
    if interrupted:
        final = None
    elif beside is not None:  # the one trial and the networks trained beside it
        final = finish_whole_team(beside, study, config, data, device, run_dir,
                                  tracker=tracker, began=time.time() - (searched - began))
    elif plan.ladder.whole:  # the one baseline reached its epoch cap early: more seeds
        final = run_more_trainings(study, config, data, device, run_dir, budget, plan,
                                   progress=progress, tracker=tracker)
    else:
        final = run_final_fit(study, config, data, device, run_dir, budget, progress=progress,
                              tracker=tracker, share=plan.share, scoring=scoring, team=team,
                              pool=pool)
    mark("command: final fit ended")
    phases = {"startup": round(startup, 3), "search": round(searched - began, 3),
              "final_fit": round(time.perf_counter() - searched, 3)}
    with stopping(interrupted):  # a second Ctrl-C must not cost the summary
        summary = finish(study, config, data, device, run_dir, interrupted=interrupted,
                         final=final, plan=plan, phases=phases)
        tracker.end_search(status="KILLED" if interrupted else "FINISHED", summary=summary)
    return SearchOutcome(study, summary, run_dir, interrupted)


def _search_phase(config: SearchConfig, study: optuna.Study, runner: TrialRunner,
                  workers: Any, stop: StopFlag, bar: Any, budget: Budget | None,
                  tracker: Tracker, target: int | None, enough: Callable[[], bool],
                  pool: WarmPool | None = None) -> bool:
    """Run trials until the study's target, the search deadline or a stop (in this process,
    or in ``--jobs`` worker processes); returns whether Ctrl-C / SIGTERM stopped it."""
    interrupted = False
    try:
        with stop_on_signals(stop):
            if workers.count > 1:  # N processes share the study; this one only watches
                searching = config if budget is None else config.replace(
                    timeout=budget.search_left())  # workers stop at the search deadline
                tracker.ready()  # the parent run exists before the workers attach to it
                run_workers(searching, workers, stop=stop, on_poll=poll_progress(study, bar),
                            ladder=runner.ladder, images_per_second=runner.images_per_second,
                            pool=pool)
            else:
                run_until_target(
                    study, runner, lock=lambda: storage_lock(config.storage_url, study._storage),
                    target=target, interval=config.heartbeat, on_lost=tracker.close_lost_runs,
                    timeout=budget.search_left() if budget else None, catch=(TrialFailed,),
                    stop=lambda: bool(stop) or enough(), callbacks=[bar.after_trial])
    except BaseException as exc:
        if not is_interruption(exc):
            tracker.end_search(status="FAILED", summary={})
            raise
        interrupted = True
    finally:
        bar.close()
    return interrupted or bool(stop)


def _settings(config: SearchConfig, data: ImageSplits, device: Device) -> dict[str, Any]:
    return {"dataset": config.dataset, "space": config.space, "sampler": config.sampler,
            "pruner": config.pruner, "seed": config.seed, "trials": config.trials,
            "timeout": config.timeout, "objectives": ",".join(config.objectives),
            "device": device.torch_device, "precision": device.precision,
            "input_shape": "x".join(map(str, data.input_shape)), "classes": data.num_classes}


def finish(study: optuna.Study, config: SearchConfig, data: ImageSplits, device: Device,
           run_dir: Path, *, interrupted: bool, final: dict[str, Any] | None = None,
           plan: SearchPlan | None = None, phases: dict[str, float]) -> dict[str, Any]:
    """Evaluate the final model (else the best kept one) once on the test split and write
    ``summary.json``; its wall time is the sum of ``phases`` and this report phase."""
    began = time.perf_counter()
    summary = summarize(study)
    summary.update(interrupted=interrupted, run_dir=str(run_dir), test=None,
                   storage=without_password(config.storage_url), device=device.torch_device,
                   precision=device.precision,
                   **budget_summary(study, config, plan, final), **front_summary(study, config))
    rundir = RunDir(run_dir)
    front = {p["trial"] for p in summary["pareto"]} if config.multi_objective else set()
    kept = kept_checkpoints(run_dir, config.keep, also=front)
    summary["kept_models"] = [str(p) for p in kept]
    ranked = ranked_trials(study)
    if ranked:
        best_dir = rundir.trial_folder(ranked[0].number)
        if best_dir.exists():
            summary["test"] = {"trial": ranked[0].number, "model": "search",
                               "tta": ranked[0].spec.head.tta if ranked[0].spec else "none",
                               **evaluate_checkpoint(best_dir, data, device)}
            summary["best_model_dir"] = str(best_dir)
    if final:  # the model users get, tested as such; the search's own score kept beside it
        summary["search_test"] = summary["test"]
        summary["test"] = {"trial": final["trial"], "model": "final", "tta": final["tta"],
                           **evaluate_checkpoint(Path(final["dir"]), data, device)}
        summary["best_model_dir"] = final["dir"]
    from automl_cnn.dashboards.report import report_beside_run  # plotly: only when needed

    report = report_beside_run(study, run_dir, data)
    summary["report"] = str(report) if report else None
    summary["phases"] = {**phases, "report": round(time.perf_counter() - began, 3)}
    summary["wall_seconds"] = round(sum(summary["phases"].values()), 3)
    write_text_atomic(rundir.summary, json.dumps(summary, indent=2, default=str))
    mark("command: report written")
    return summary


__all__ = ["SearchOutcome", "finish", "open_or_create", "prepare", "run_search",
           "stop_on_signals"]
