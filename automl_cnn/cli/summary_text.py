"""What ``automl-cnn search`` prints at the end: the study, the best trial, the budget's
phases, the final model and its test score, the limits and the Pareto front."""

from __future__ import annotations

import sys
from typing import Any


def print_summary(summary: dict[str, Any], out: Any = None) -> None:
    from automl_cnn.rundir import RunDir
    from automl_cnn.shapes import format_plan_rows

    out = out or sys.stdout
    counts = summary["counts"]
    precision = summary.get("precision") or "32-true"  # runs before 2026-11-28 trained fp32
    mixed = "" if precision == "32-true" else f" ({precision.replace('-', ' ')} precision)"
    print(f"\nStudy {summary['study_name']}: {summary['trials']} trials "
          f"({', '.join(f'{v} {k}' for k, v in counts.items() if v)}) "
          f"in {summary['wall_seconds']:.1f}s on {summary['device']}{mixed}", file=out)
    best = summary.get("best")
    if not best:
        print("No trial completed yet, so there is no best architecture.", file=out)
    else:
        print(f"Best trial {best['trial']}: val_acc {best['value']:.4f}, "
              f"{best['params']:,} params, {best['flops']:,} FLOPs, "
              f"receptive field {best['receptive_field']}px"
              + (f", {best['latency_ms']:.3f} ms on {best['latency_device']}"
                 if best.get("latency_ms") is not None else ""), file=out)
        print_budget(summary, out)
        if summary.get("test"):
            which = ("final model (trained on train + validation)"
                     if summary["test"].get("model") == "final" else "best model")
            final = summary.get("final") or {}
            if len(final.get("members") or []) > 1:
                which += ", the average of the finalists"
            elif (final.get("trainings") or 1) > 1:
                which += f", the average of {final['trainings']} trainings of it"
            if summary["test"].get("tta") == "flip":
                which += ", each image averaged with its mirror image"
            print(f"Test accuracy of the {which}, evaluated once: "
                  f"{summary['test']['accuracy']:.4f}", file=out)
        print(format_plan_rows(best["layer_plan"]), file=out)
    print_limits_and_front(summary, out)
    run_dir = RunDir(summary["run_dir"])
    print(f"\nRun directory: {run_dir.path}  ({run_dir.summary.name}, {run_dir.models.name}/, "
          f"{run_dir.config.name})", file=out)
    if summary.get("report"):
        print(f"Report: {summary['report']}  (open it in a browser; works offline)", file=out)
    print(f"Study storage: {summary['storage']}", file=out)


def late_promotions(n: int) -> str:
    """The ladder line's note of trials that went on after they were stopped at a rung."""
    return f"; {n} trial{'' if n == 1 else 's'} promoted late" if n else ""


def neighbours_of_best(n: int) -> str:
    """The ladder line's note of the trials its local search queued."""
    return f"; {n} neighbour{'' if n == 1 else 's'} of the best so far" if n else ""


def print_budget(summary: dict[str, Any], out: Any) -> None:
    """Phases' wall times, the ladder's rungs and the final fit, when there were any."""
    phases = summary.get("phases") or {}
    if summary.get("timeout") or summary.get("final"):
        budget = f" of a {summary['timeout']:.0f}s budget" if summary.get("timeout") else ""
        print(f"Wall time {summary['wall_seconds']:.1f}s{budget}: " + ", ".join(
            f"{k.replace('_', ' ')} {v:.1f}s" for k, v in phases.items()), file=out)
    ladder = summary.get("ladder") or {}
    rungs = ladder.get("rungs") or []
    if ladder.get("whole") and rungs:
        epochs = (summary.get("best") or {}).get("epochs_trained") or rungs[0]["epochs"]
        print(f"No search: {ladder['reason']} ({epochs} epochs on "
              f"{rungs[0]['images']:,} train + validation images, so its validation score is "
              "in-sample). Give a longer --timeout to search.", file=out)
    elif len(rungs) > 1:
        held = summary.get("rungs") or []
        print("Fidelity ladder (eta 3): " + "; ".join(
            f"rung {r['rung']}: {r['images']:,} images x {r['epochs']} epochs, "
            f"{held[i] if i < len(held) else 0} trials" for i, r in enumerate(rungs))
            + late_promotions(summary.get("promoted_late") or 0)
            + neighbours_of_best(summary.get("neighbours_of_best") or 0), file=out)
    final = summary.get("final")
    members = (final or {}).get("members") or []
    together = (final or {}).get("together")
    if final and together:
        trials = (f"trial {final['trial']} with {len(final['member_epochs'])} seeds"
                  if len(members) == 1 else "trials " + ", ".join(map(str, members)))
        print(f"Trained at once: {together['networks']} networks "
              f"({', '.join(sorted(set(together['devices'])))}), {trials}, each annealed to "
              f"the same deadline on {final['train_images']:,} train + validation images "
              f"({', '.join(map(str, final['member_epochs']))} epochs); the final model "
              f"averages them ({final['seconds']:.1f}s of training)", file=out)
    elif final and (final.get("trainings") or 1) > 1:
        epochs = final["member_epochs"]
        print(f"More trainings: trial {final['trial']} reached its {final['epochs_planned']}-"
              f"epoch cap with time left, so {_trainings(len(epochs) - 1)} of it with "
              f"other seeds ({', '.join(map(str, epochs[1:]))} epochs) filled the budget; the "
              f"final model averages all {len(epochs)} ({final['seconds']:.1f}s of training)",
              file=out)
    elif len(members) > 1:
        print(f"Final model: the average of trials {', '.join(map(str, members))} (within "
              f"{100 * final['band']:.1f} points of the best on validation: too close to pick "
              f"one by chance), each fit on {final['train_images']:,} train + validation "
              f"images ({', '.join(map(str, final['member_epochs']))} epochs) in "
              f"{final['seconds']:.1f}s", file=out)
    elif final:
        print(f"Final fit of trial {final['trial']}: {final['epochs']} epochs on "
              f"{final['train_images']:,} train + validation images in {final['seconds']:.1f}s"
              + (f" (stopped: {final['stopped']})" if final.get("stopped") else ""), file=out)


def _trainings(n: int) -> str:
    return f"{n} more training{'' if n == 1 else 's'}"


def print_limits_and_front(summary: dict[str, Any], out: Any) -> None:
    """Trials the hard limits kept from training, and the size of the Pareto front."""
    over = summary.get("over_limit") or {}
    if over:
        print(f"Over a hard limit, never trained: {sum(over.values())} trials ("
              + ", ".join(f"{k} {v}" for k, v in over.items()) + ")", file=out)
    front = summary.get("pareto") or []
    if front:
        print(f"Pareto front ({', '.join(summary['pareto_objectives'])}): {len(front)} trials; "
              "list them with automl-cnn best --pareto, ship one with export --pareto I",
              file=out)


__all__ = ["print_budget", "print_limits_and_front", "print_summary"]
