"""The phases of a budgeted search around ``study.optimize``: size the ladder before it, fit the
winner after it.

- :func:`plan_search` times a few training steps of each enqueued baseline (the search's
  typical candidates) and sizes the fidelity ladder from that speed, the training split and
  the seconds the search phase has (:func:`automl_cnn.ladder.plan_ladder`).
- :func:`run_final_fit` trains the best trial's architecture on train + validation for the
  epochs that fill the final share of the budget, and checkpoints it in ``RUN_DIR/final``.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from automl_cnn.arch import ArchSpec
from automl_cnn.budget import Budget
from automl_cnn.checkpoint import ARCH, CheckpointMeta, load_checkpoint
from automl_cnn.config import SearchConfig
from automl_cnn.data import ImageSplits
from automl_cnn.device import Device
from automl_cnn.final_fit import (FinalPlan, ensemble_of, epoch_cap, epoch_seconds_for,
                                  fit_each, fit_ensemble, more_trainings, plan_final_fit,
                                  save_final, trial_seed, tta_views, with_tta)
from automl_cnn.finalists import ensemble_size, noise_band, pick_finalists
from automl_cnn.ladder import (MIN_SEARCH_TRAININGS, Ladder, min_search_trainings, plan_ladder,
                               search_pays)
from automl_cnn.record import TrialRecord, records
from automl_cnn.results import ranked_trials
from automl_cnn.rundir import RunDir
from automl_cnn.search_spaces import SearchSpace
from automl_cnn.tracking import Tracker
from automl_cnn.training import FitResult

from .climb import measure_speed, scoring_seconds
from .parallel import WorkerPlan
from .progress import EpochBar
from .warm import WarmPool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchPlan:
    """The ladder the search climbs and the speed it was sized from."""

    ladder: Ladder
    images_per_second: float | None  # one worker alone
    seconds: float  # spent measuring
    #: The search phase's workers together train this many times one worker's images/s
    #: (:attr:`~automl_cnn.runners.parallel.WorkerPlan.speedup`).
    speedup: float = 1.0
    #: Each worker trained at this share of one process alone
    #: (:attr:`~automl_cnn.runners.parallel.WorkerPlan.share`): the final fit, alone, runs the
    #: epochs its trials timed 1/share times faster.
    share: float = 1.0


def plan_search(config: SearchConfig, space: SearchSpace, data: ImageSplits, device: Device,
                budget: Budget | None, *, speedup: float = 1.0) -> SearchPlan:
    """Measure the baselines' training speed and size the ladder (flat without a budget).

    ``speedup``: the search phase's workers train that many times one worker's images/s
    (``--jobs N`` sharing a GPU); the final fit trains in one process at one worker's speed.
    """
    n = len(data.y_train)
    if budget is None or config.ladder == "off" or config.multi_objective:
        why = "no time budget" if budget is None else "--ladder off"
        return SearchPlan(Ladder.flat(n, why), None, 0.0)
    started = time.perf_counter()
    specs = [space.sample(optuna.trial.FixedTrial(b.params), flip_ok=data.flip_ok)
             for b in space.baselines]
    # At most 3 % of the budget (and 10 s) goes to timing the baselines, 24 steps each at most.
    each = min(10.0, 0.03 * budget.final_left()) / max(1, len(specs))

    def timed(some: list[Any]) -> list[float]:
        return [measure_speed(s, data, device, steps=24, max_seconds=each) for s in some]

    speeds = timed(specs[:1])
    epochs = [s.train.epochs for s in specs] or [space.max_epochs]
    least = min_search_trainings(n, data.num_classes)
    # One worker's seconds a search would buy: the search phase's, times its workers' speedup.
    bought = budget.final_left() + (speedup - 1.0) * budget.search_left()
    if speeds and speeds[0] and not search_pays(
            total_seconds=bought, images_per_second=speeds[0], train_images=n,
            spec_epochs=epochs[0], min_trainings=least):
        # Too short to search: the first baseline is all that trains, so the others' speed
        # is not worth the budget's time.
        ladder = whole_budget_ladder(data, budget.final_left(), speeds[0], epochs[0], least,
                                     bought=bought)
        log.info("no search: %s", ladder.reason)
        return SearchPlan(ladder, speeds[0], time.perf_counter() - started)
    speeds += timed(specs[1:])
    ips = statistics.fmean(speeds or [0.0])  # the baselines stand for a typical candidate
    ladder = plan_ladder(train_images=n, num_classes=data.num_classes,
                         spec_epochs=max(epochs), search_seconds=budget.search_left(),
                         images_per_second=ips * speedup)
    log.info("ladder: %s (%.0f images/s, x%.2f workers)", ladder.to_dict(), ips, speedup)
    return SearchPlan(ladder, ips, time.perf_counter() - started, speedup)


#: A trial's Trainer, first batch and checkpoint cost about this much beyond its epochs (CPU).
TRIAL_SETUP_S = 3.0
def whole_budget_ladder(data: ImageSplits, seconds: float, images_per_second: float,
                        spec_epochs: int, least: int = MIN_SEARCH_TRAININGS, *,
                        bought: float | None = None) -> Ladder:
    """The plan when the budget is too short to search: the space's first baseline trains on
    train + validation (there is nothing to select, so no image is held out) until the search
    deadline, its schedule run by the clock (:func:`automl_cnn.training.fit_spec`'s
    ``clocked``), up to the final fit's epoch cap. The rung's epochs are the estimate at the
    timed speed (the progress bar's total); the clock, not the estimate, ends the fit, so a
    timing that reads fast or slow (15 % either way on clutter) costs nothing."""
    n, n_val = len(data.y_train), len(data.y_val)
    epochs = plan_final_fit(seconds=max(0.0, seconds - TRIAL_SETUP_S),
                            epoch_seconds=(n + n_val) / images_per_second,
                            spec_epochs=spec_epochs).epochs
    # ``bought``: one worker's seconds a search would have had (several workers: more)
    trainings = (seconds if bought is None else bought) * images_per_second / (n * spec_epochs)
    return Ladder.whole_budget(n + n_val, epochs, (
        f"the budget buys {trainings:.1f} full trainings, fewer than the "
        f"{least} a search needs: the first baseline trains for all of it"))


def for_plan(plan: SearchPlan, budget: Budget | None, config: SearchConfig,
             study: optuna.Study
             ) -> tuple[Budget | None, SearchConfig, int | None, Callable[[], bool]]:
    """The budget, settings, trial target and "enough" test the search phase runs with: as
    given, unless the budget is too short to search, when trials run in this process until one
    has trained (baselines over a hard limit cost no training and are passed over) with all the
    budget."""
    from .slots import read_target

    if not plan.ladder.whole or budget is None:
        return budget, config, read_target(study), lambda: False
    before = _complete(study)
    return (replace(budget, final_share=0.0), config.replace(jobs=1), None,
            lambda: bool(_complete(study) - before))


def _complete(study: optuna.Study) -> set[int]:
    """Trials that trained to the end (to Optuna, one over a limit is complete too)."""
    from automl_cnn.record import Outcome, outcome_of

    return {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if outcome_of(t) == Outcome.COMPLETE}


def search_bar(plan: SearchPlan, config: SearchConfig, budget: Budget | None, runner: Any,
               *, enabled: bool) -> Any:
    """The search phase's bar: trials, or the epochs of the one trial a budget too short to
    search trains (``training (no search) 3/9 epochs · 1m10s left``)."""
    if plan.ladder.whole:
        bar = EpochBar(plan.ladder.rungs[0].epochs or 1, budget, enabled=enabled,
                       desc="training (no search)")
        runner.on_epoch = bar.update
        return bar
    from .progress import ProgressBar

    return ProgressBar(total=config.trials, enabled=enabled, budget=budget)


#: The final fit is planned to need its winner's capped epochs times this, at least.
FINAL_NEED_MARGIN = 1.25
#: Spare time below this is not worth a second search round.
MIN_SPARE_S = 5.0


def search_rounds(plan: SearchPlan, study: optuna.Study, budget: Budget | None,
                  data: ImageSplits, config: SearchConfig, *,
                  team: WorkerPlan | None = None) -> Iterator[Budget | None]:
    """The search phase's budget; then, once, the same budget with its search phase extended by
    the time the final fit cannot use. The final fit trains at most ``MAX_EPOCH_FACTOR`` × the
    winner's epochs, so on a small set its share is more than it needs (digits at 60 s: the
    final fit used 13-17 s of its 28 s, and the command ended 15 s early)."""
    yield budget
    if budget is None or plan.ladder.whole:
        return
    need = final_fit_need(study, budget, data, config, share=plan.share, team=team)
    if need is None or budget.final_left() - FINAL_NEED_MARGIN * need < MIN_SPARE_S:
        return
    kept = FINAL_NEED_MARGIN * need / max(1e-9, budget.total - budget.reserve)
    log.info("the final fit needs ~%.0fs; the search goes on for %.0fs more", need,
             budget.final_left() - FINAL_NEED_MARGIN * need)
    yield replace(budget, final_share=min(budget.final_share, kept))


def final_fit_need(study: optuna.Study, budget: Budget, data: ImageSplits,
                   config: SearchConfig, *, share: float = 1.0,
                   team: WorkerPlan | None = None) -> float | None:
    """Seconds the final fit of the current winner (or finalists) would train, at most
    (None: unknown; ``share``: see :func:`winner_plan`; ``team``: the networks train at once,
    see :mod:`automl_cnn.runners.final_team`)."""
    if team is not None and team_pays(study, config, data, budget.final_left(), team,
                                      share=share):
        plans = [plan for _, plan in team_plans(study, data, budget.final_left(), team,
                                                  share=share)]
        if not plans or not all(plan.epoch_seconds for plan in plans):
            return None
        return team_seconds(plans)
    chosen = final_plans(study, config, data, budget.final_left(), share=share)
    if not chosen or not all(plan.epoch_seconds for _, plan in chosen):
        return None
    return sum(plan.train_seconds for _, plan in chosen)


def winner_plan(best: TrialRecord, data: ImageSplits, seconds: float | None, *,
                share: float = 1.0) -> FinalPlan:
    """The final fit of ``best`` over train + validation in ``seconds``, its seconds per epoch
    scaled from the trial's own history (on a ladder rung, from the rung's images), and by
    ``share``, the share of one process's speed the trial's worker had (``--jobs N`` workers
    sharing a device: the final fit trains alone)."""
    assert best.spec is not None
    images = best.fidelity.train_images if best.fidelity is not None else None
    per_epoch = epoch_seconds_for([dict(r) for r in best.history],
                                  int(images or len(data.y_train)),
                                  len(data.y_train) + len(data.y_val))
    per_epoch = None if per_epoch is None else per_epoch * share
    return plan_final_fit(seconds=seconds, epoch_seconds=per_epoch,
                          spec_epochs=best.spec.train.epochs)


def rung_counts(recs: Sequence[TrialRecord]) -> list[int]:
    """How many of the trials ``recs`` (:func:`~automl_cnn.record.records`) trained at each
    ladder rung (``[]`` without a ladder): a trial
    promoted to rung 2 counts at rungs 0, 1 and 2; a late promotion to rung 2 (its source
    counted below) at rung 2 alone."""
    spans = [(r.promotion.rung if r.promotion else 0, int(r.fidelity.rung or 0))
             for r in recs if r.fidelity is not None]
    top = max((reached for _, reached in spans), default=-1)
    return [sum(first <= k <= reached for first, reached in spans) for k in range(top + 1)]


def budget_summary(study: optuna.Study, config: SearchConfig, plan: SearchPlan | None,
                   final: dict[str, Any] | None) -> dict[str, Any]:
    """``summary.json``'s budget keys: the timeout, the ladder, the rungs' trial counts and
    the final fit (``None`` where there was none)."""
    recs = records(study)
    return {"timeout": config.timeout, "ladder": plan.ladder.to_dict() if plan else None,
            "images_per_second": plan.images_per_second if plan else None,
            "workers_speedup": plan.speedup if plan else None,
            "rungs": rung_counts(recs),
            "promoted_late": sum(r.promotion is not None for r in recs),
            "neighbours_of_best": sum(r.neighbour_of is not None for r in recs),
            "final": final}


def final_plans(study: optuna.Study, config: SearchConfig, data: ImageSplits,
                seconds: float | None, *, share: float = 1.0
                ) -> list[tuple[TrialRecord, FinalPlan]]:
    """The trials the final fit trains, each with its plan, the winner first: the near-tied
    finalists (:mod:`automl_cnn.finalists`), as many as an equal share of ``seconds`` buys
    each its own recipe's epochs; ``[]`` when there is no winner with an architecture."""
    finalists = pick_finalists(ranked_trials(study), n_train=len(data.y_train),
                               n_val=len(data.y_val), most=ensemble_size(config))
    if not finalists or finalists[0].spec is None:
        return []
    for k in range(len(finalists), 0, -1):
        each = None if seconds is None else seconds / k
        plans = [winner_plan(f, data, each, share=share) for f in finalists[:k]]
        if k == 1 or all(f.spec is not None and plan.epochs >= f.spec.train.epochs
                         for f, plan in zip(finalists, plans)):
            return list(zip(finalists[:k], plans))
    return []


def run_final_fit(study: optuna.Study, config: SearchConfig, data: ImageSplits,
                  device: Device, run_dir: Path, budget: Budget | None, *,
                  progress: bool = True, tracker: Tracker | None = None, share: float = 1.0,
                  scoring: float = 0.0, team: WorkerPlan | None = None,
                  pool: WarmPool | None = None) -> dict[str, Any] | None:
    """Fit the winner (or the near-tied finalists, averaged) on train + validation; ``None``
    when there is no winner or no time (``share``: see :func:`winner_plan`). A single winner
    that reaches its epoch cap with time left is trained again with other seeds
    (:func:`more_seeds`; ``scoring``: the seconds each network takes to score the test
    split), and the model handed over averages them. With a ``team``
    (:func:`~automl_cnn.runners.final_team.final_team`), its networks train at once instead
    (:func:`fit_team`), in ``pool``'s waiting processes where it has them."""
    seconds = budget.final_left() if budget is not None else None
    if team is not None and config.fits_final and team_pays(study, config, data, seconds, team,
                                                            share=share):
        return fit_team(study, config, data, device, run_dir, seconds, team, budget=budget,
                        progress=progress, tracker=tracker, share=share, scoring=scoring,
                        pool=pool)
    chosen = (final_plans(study, config, data, seconds, share=share) if config.fits_final
              else [])
    if not chosen:
        return None
    # The budget keeps one network's scoring at the first baseline's speed; the networks the
    # final fit hands over may be slower (larger maps) and more than one: keep the rest too.
    each = member_scoring([plan for _, plan in chosen], data, config, device, scoring)
    short = sum(each) - scoring
    if seconds is not None and short > 0:
        seconds = max(0.0, seconds - short)
        chosen = final_plans(study, config, data, seconds, share=share) or chosen
    members, plans = [m for m, _ in chosen], [plan for _, plan in chosen]
    best = members[0]
    per_epoch = plans[0].epoch_seconds
    if seconds is not None and per_epoch and seconds < per_epoch:
        log.info("no time left for a final fit (%.1fs < one epoch %.1fs)", seconds, per_epoch)
        return None
    bar = EpochBar(sum(p.epochs for p in plans), budget, enabled=progress)
    try:
        spec, fit = fit_ensemble(
            [with_tta(m.spec, config, data.flip_ok) for m in members if m.spec], plans, data,
            device, seed=config.seed, on_epoch=bar.update,
            deadline=None if seconds is None else time.time() + seconds)
    finally:
        bar.close()
    first = fit
    if len(members) == 1 and best.spec is not None:
        recipe = with_tta(best.spec, config, data.flip_ok)
        more = more_seeds(recipe, fit.seconds, len(fit.history), data, device, config, budget,
                          each[0], number=best.number, progress=progress,
                          short=max(0.0, each[0] - scoring))
        if more is not None:
            spec, fit = ensemble_of([spec, *more[0]], [fit, *more[1]])
    folder = hand_over(study, data, run_dir, best, spec, fit, tracker)
    return final_summary(best, members, spec, fit, first, folder, data, plans[0].epochs)


def final_summary(best: TrialRecord, members: list[TrialRecord], spec: ArchSpec,
                  fit: FitResult, first: FitResult, folder: Path, data: ImageSplits,
                  planned: int, **more: Any) -> dict[str, Any]:
    """``summary.json``'s ``final``: the model handed over (``spec``, ``fit``), the trials
    whose recipes it trained (``members``) and its first network's fit (``first``)."""
    trainings = {"trainings": len(spec.networks)} if len(spec.networks) > len(members) else {}
    return {"trial": best.number, "dir": str(folder), "tta": spec.head.tta,
            **trainings, "members": [m.number for m in members],
            "member_epochs": [n.train.epochs for n in spec.networks],
            "band": round(noise_band(float(best.val_acc or 0.0), len(data.y_val)), 6),
            "epochs_planned": planned,
            "epochs": len(first.history), "seconds": round(fit.seconds, 3),
            "stopped": first.stopped_reason,
            "train_images": len(data.y_train) + len(data.y_val),
            "history": first.history, **more}


#: A network of a final team is planned to need this much more than its epochs: its process
#: starts, imports torch and Lightning and loads the data before it trains.
TEAM_START_S = 8.0


def team_plans(study: optuna.Study, data: ImageSplits, seconds: float | None,
               team: WorkerPlan, *, share: float = 1.0
               ) -> list[tuple[TrialRecord, FinalPlan]]:
    """The finalists a ``team`` trains (at most one per process), each with its plan: all of
    ``seconds`` at the speed each of ``team.count`` networks trains at together
    (``team.share`` of one alone); ``[]`` when there is no winner with an architecture."""
    finalists = pick_finalists(ranked_trials(study), n_train=len(data.y_train),
                               n_val=len(data.y_val), most=team.count)
    if not finalists or finalists[0].spec is None:
        return []
    return [(f, winner_plan(f, data, seconds, share=share / team.share)) for f in finalists
            if f.spec is not None]


def team_pays(study: optuna.Study, config: SearchConfig, data: ImageSplits,
              seconds: float | None, team: WorkerPlan, *, share: float = 1.0) -> bool:
    """Whether a ``team`` trains the final networks sooner or longer than one process: with a
    budget, when its ``seconds`` are at least twice a member's start (each network then
    trains for nearly all of them, not an equal share); without one, when the finalists'
    epochs in parallel, start included, end before they would one after the other (digits'
    finalists train in a few seconds each: a member's start costs more than it saves)."""
    if seconds is not None:
        return seconds >= 2 * TEAM_START_S
    alone = [plan for _, plan in final_plans(study, config, data, None, share=share)]
    together = [plan for _, plan in team_plans(study, data, None, team, share=share)]
    if not alone or not together or not all(p.epoch_seconds for p in [*alone, *together]):
        return False
    return team_seconds(together) < sum(p.train_seconds for p in alone)


def team_seconds(plans: Sequence[FinalPlan]) -> float:
    """Seconds a team training ``plans`` at once takes: a member's start, then the longest."""
    return TEAM_START_S + max(p.train_seconds for p in plans)


def fit_team(study: optuna.Study, config: SearchConfig, data: ImageSplits, device: Device,
             run_dir: Path, seconds: float | None, team: WorkerPlan, *,
             budget: Budget | None, progress: bool, tracker: Tracker | None,
             share: float, scoring: float,
             pool: WarmPool | None = None) -> dict[str, Any] | None:
    """The final fit as ``team.count`` networks trained at once
    (:mod:`automl_cnn.runners.final_team`): the finalists, then the winner again with other
    seeds, each over all of ``seconds`` (less the test scoring of the networks beyond what the
    budget's reserve keeps, :func:`member_scoring`), and the model handed over averages them."""
    from .final_team import MEMBERS_DIR, fit_together, team_networks

    chosen = team_plans(study, data, seconds, team, share=share)
    if not chosen:
        return None
    finalists, first_plan = [f for f, _ in chosen], chosen[0][1]
    if seconds is not None and first_plan.epoch_seconds and seconds < first_plan.epoch_seconds:
        log.info("no time left for a final fit (%.1fs < one epoch %.1fs)", seconds,
                 first_plan.epoch_seconds)
        return None
    networks = team_networks(finalists, team.count, config.seed)
    plans = dict((f.number, plan) for f, plan in chosen)
    bar = EpochBar(sum(plans[f.number].epochs for f, _ in networks), budget,
                   enabled=progress, desc=f"final fit ({team.count} at once)")
    # Each network scores the test split in this process, alone, at the end: at its own speed
    # (its plan's is the speed training beside the others, team.share of alone), less the one
    # network's scoring the budget's reserve keeps.
    kept = team.share * sum(member_scoring([plans[f.number] for f, _ in networks], data,
                                           config, device, scoring / team.share)) - scoring
    deadline = None if seconds is None else time.time() + seconds - max(0.0, kept)
    began, members_dir = time.time(), RunDir(run_dir).path / MEMBERS_DIR
    try:  # none trained (a GPU out of memory, say): the search's own best is the model
        specs, fits, spans = fit_together(
            config, [with_tta(f.spec, config, data.flip_ok) for f, _ in networks if f.spec],
            [s for _, s in networks], team, deadline=deadline, device=device.torch_device,
            epochs=[plans[f.number].epochs for f, _ in networks],
            folder=members_dir, on_epoch=bar.update, pool=pool)
    except RuntimeError as exc:
        log.error("%s: no final model; the search's best is tested", exc)
        return None
    finally:
        bar.close()
    spec, fit = ensemble_of(specs, fits)
    folder = hand_over(study, data, run_dir, finalists[0], spec, fit, tracker)
    return final_summary(finalists[0], finalists, spec, fit, fits[0], folder, data,
                         first_plan.epochs, together={
                             "networks": len(fits), "devices": list(team.devices),
                             "spans": [[round(a - began, 2), round(b - began, 2)]
                                       for a, b in spans]})


def hand_over(study: optuna.Study, data: ImageSplits, run_dir: Path, trial: TrialRecord,
              spec: ArchSpec, fit: FitResult, tracker: Tracker | None) -> Path:
    """Save the model fitted on train + validation for ``trial`` as the run's final model
    (``RUN_DIR/final``), and make it the registered MLflow champion; returns its folder."""
    meta = CheckpointMeta.for_dataset(data, study_name=study.study_name, trial=trial.number,
                                      value=trial.val_acc, trained_on="train+val")
    folder = save_final(run_dir, fit, spec, meta)
    if tracker is not None:
        example = data.x_val[:4].float().div(255.0).cpu()
        tracker.final_model(trial.number, fit.model.to("cpu").eval(), example,
                            history=fit.history, value=float(trial.val_acc or 0.0))
    return folder


def end_scoring_seconds(images_per_second: float | None, config: SearchConfig,
                        data: ImageSplits, device: Device) -> float:
    """Seconds the end of the command takes to score the test split with one network of the
    model handed over (twice where it averages flips), at a timed training speed (the plan's:
    the first baseline's; 0 when none was timed)."""
    return scoring_seconds(len(data.y_test), images_per_second,
                           tta_views(config, data.flip_ok), timed_in_cpu_bf16=device.mixed_on_cpu)


def member_scoring(plans: Sequence[FinalPlan], data: ImageSplits, config: SearchConfig,
                   device: Device, default: float) -> list[float]:
    """Seconds each network a final fit trains (``plans``) takes to score the test split at the
    end (twice where the model averages flips), from its own planned speed on train +
    validation; ``default`` (the first baseline's) where a plan has no timed speed.

        >>> from automl_cnn.data import load_dataset
        >>> from automl_cnn.device import resolve_device
        >>> digits = load_dataset("digits", seed=0)
        >>> images = len(digits.y_train) + len(digits.y_val)
        >>> fast, slow = FinalPlan(12, images / 3000, None), FinalPlan(12, images / 1000, None)
        >>> [round(s, 2) for s in member_scoring([slow, fast, FinalPlan(12, None, None)],
        ...  digits, SearchConfig(), resolve_device("cpu", "32"), default=0.5)]
        [0.24, 0.08, 0.5]
    """
    images = len(data.y_train) + len(data.y_val)
    return [end_scoring_seconds(images / plan.epoch_seconds, config, data, device)
            if plan.epoch_seconds else default for plan in plans]


def more_seeds(recipe: ArchSpec, took: float | None, epochs: int, data: ImageSplits,
               device: Device, config: SearchConfig, budget: Budget | None, scoring: float,
               *, number: int, progress: bool = True, short: float = 0.0
               ) -> tuple[list[ArchSpec], list[FitResult]] | None:
    """Further trainings of ``recipe`` on train + validation with other seeds, when its first
    training reached the epoch cap (``epochs``) in ``took`` seconds with time left: as many as
    the final phase's time left buys at :data:`automl_cnn.final_fit.MIN_SEED_SHARE` of the
    first's time each (``scoring``: the seconds each network takes to score the test split),
    at most ``--ensemble`` networks in all, each annealed by the clock over an equal share.
    ``None`` when the clock ended the first (the budget is spent), or nothing more fits.
    ``number``: the trial whose recipe it is (the seeds: :func:`trial_seed`). ``short``: the
    first network's scoring beyond what the budget's reserve keeps, which comes out of the
    time left too."""
    cap = epoch_cap(recipe.train.epochs)
    if budget is None or not took or epochs < cap:
        return None
    left = budget.final_left() - short
    extra = more_trainings(left, took + scoring, ensemble_size(config) - 1)
    if extra == 0:
        return None
    log.info("trial's recipe reached its %d-epoch cap in %.0fs; %d more trainings fill the "
             "%.0fs left", cap, took, extra, left)
    seeds = [trial_seed(config.seed, number, again=i + 1) for i in range(extra)]
    more = FinalPlan(cap, took / max(1, epochs), left / extra)
    bar = EpochBar(extra * cap, budget, enabled=progress, desc="more trainings")
    try:
        return fit_each([recipe] * extra, [more] * extra, data, device, seeds=seeds,
                        on_epoch=bar.update, deadline=time.time() + left - extra * scoring)
    finally:
        bar.close()


def run_more_trainings(study: optuna.Study, config: SearchConfig, data: ImageSplits,
                       device: Device, run_dir: Path, budget: Budget | None,
                       plan: SearchPlan, *, progress: bool = True,
                       tracker: Tracker | None = None) -> dict[str, Any] | None:
    """A budget too short to search but longer than the one baseline's epoch cap: train the
    same recipe again with other seeds, on train + validation, in the time left (each at
    least :data:`automl_cnn.final_fit.MIN_SEED_SHARE` of the first's time, at most
    ``--ensemble`` networks in all), and hand over their average with the first. ``None``
    (the one trial is the model) when the first stopped before its cap, when what is left buys
    no further training, or where the final model must be one network (``--ensemble 1``, a
    hard limit, ``--no-final-fit``)."""
    found = whole_trial(study, config, run_dir)
    if budget is None or found is None:
        return None
    first, folder = found
    assert first.spec is not None
    more = more_seeds(first.spec, first.timings.train_seconds, first.epochs_trained, data,
                      device, config, budget,
                      end_scoring_seconds(plan.images_per_second, config, data, device),
                      number=first.number, progress=progress)
    if more is None:
        return None
    return average_with_whole(study, data, device, run_dir, found, *more, tracker=tracker)


def whole_trial(study: optuna.Study, config: SearchConfig,
                run_dir: Path) -> tuple[TrialRecord, Path] | None:
    """The one trial of a budget too short to search and its checkpoint folder; ``None``
    where there is none, or where the final model must be that one network (``--ensemble
    1``, a hard limit, ``--no-final-fit``)."""
    ranked = ranked_trials(study)
    first = ranked[0] if ranked else None
    if (first is None or first.spec is None or first.fidelity is None
            or not first.fidelity.whole or not config.fits_final):
        return None
    folder = RunDir(run_dir).trial_folder(first.number)
    return (first, folder) if (folder / ARCH).exists() else None


def average_with_whole(study: optuna.Study, data: ImageSplits, device: Device, run_dir: Path,
                       found: tuple[TrialRecord, Path], specs: Sequence[ArchSpec],
                       fits: Sequence[FitResult], *, tracker: Tracker | None,
                       **more: Any) -> dict[str, Any]:
    """Hand over the average of the one trial's network (``found``, :func:`whole_trial`)
    and further trainings of its recipe (``specs``, ``fits``); ``summary.json``'s ``final``
    (``more``: extra keys)."""
    first, folder = found
    assert first.spec is not None
    took = first.timings.train_seconds
    own, _, _ = load_checkpoint(folder, device=device.torch_device)
    trained = replace(first.spec, train=replace(first.spec.train, epochs=first.epochs_trained))
    spec, both = ensemble_of([trained, *specs], [
        FitResult(own, [dict(r) for r in first.history], took, None), *fits])
    saved = hand_over(study, data, run_dir, first, spec, both, tracker)
    return {"trial": first.number, "dir": str(saved), "tta": spec.head.tta,
            "members": [first.number], "trainings": len(spec.networks),
            "member_epochs": [n.train.epochs for n in spec.networks],
            "epochs_planned": epoch_cap(first.spec.train.epochs),
            "epochs": first.epochs_trained,
            "seconds": round(both.seconds, 3), "stopped": None,
            "train_images": len(data.y_train) + len(data.y_val), "history": both.history,
            **more}


__all__ = ["SearchPlan", "average_with_whole", "budget_summary", "end_scoring_seconds",
           "final_fit_need", "final_plans", "final_summary", "fit_team", "for_plan",
           "hand_over", "member_scoring", "more_seeds", "plan_search", "rung_counts",
           "run_final_fit",
           "run_more_trainings", "search_bar", "search_rounds", "team_pays", "team_plans",
           "whole_budget_ladder", "whole_trial", "winner_plan"]
