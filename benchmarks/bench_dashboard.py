"""How long the HTML report takes to build, and how big it gets, as a study grows.

Builds synthetic studies (architectures sampled from the default space and planned with the
real shape planner; made-up accuracies) of 100, 300 and 1,000 trials in memory, writes the
report for each, and compares with two baselines on the same study:

- ``plotly.js only``: an HTML page holding nothing but the embedded plotly.js (the size floor);
- ``optuna.visualization``: Optuna's own history, importance, parallel-coordinate, slice and
  timeline plots written to one HTML file (what a user would otherwise reach for).

It also times the parameter-importance evaluators at 1,000 trials (the report's default is
mdi, marked *; fANOVA fits a random forest).

Run: ``python benchmarks/bench_dashboard.py [--trials 100 300 1000] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import optuna
import plotly.io as pio
from plotly.offline import get_plotlyjs

from automl_cnn.dashboards import param_importances, trial_rows, write_report
from automl_cnn.dashboards.synthetic import synthetic_study


def timed(fn, repeat: int) -> float:
    """Median wall time of ``repeat`` calls, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def optuna_plots(study: optuna.Study, path: Path) -> None:
    from optuna import visualization as vis

    target = {"target": lambda t: t.values[0], "target_name": "val_acc"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        figs = [vis.plot_optimization_history(study),
                vis.plot_param_importances(study),
                vis.plot_parallel_coordinate(study, params=["depth", "optim.lr", "optim.name"],
                                             **target),
                vis.plot_slice(study, params=["depth", "optim.lr", "optim.name"], **target),
                vis.plot_timeline(study)]
    parts = [pio.to_html(f, full_html=False, include_plotlyjs=False) for f in figs]
    path.write_text(f"<script>{get_plotlyjs()}</script>" + "".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    floor = out / "plotlyjs.html"
    floor.write_text(f"<script>{get_plotlyjs()}</script>")
    floor_mb = floor.stat().st_size / 1e6

    print(f"{'trials':>6} | {'report s':>8} | {'optuna.vis s':>12} | {'ratio':>5} | "
          f"{'report MB':>9} | {'optuna.vis MB':>13} | {'plotly.js MB':>12} | {'figures':>7}")
    print("-" * 95)
    study = None
    for n in args.trials:
        study = synthetic_study(n, seed=0, running=2)
        report = out / f"report-{n}.html"
        figures: list[int] = []
        seconds = timed(lambda: figures.append(len(write_report(study, report).figures)),
                        args.repeat)
        vis_path = out / f"optuna-{n}.html"
        vis_seconds = timed(lambda: optuna_plots(study, vis_path), 1)  # slow: once is enough
        print(f"{n:>6} | {seconds:>8.2f} | {vis_seconds:>12.2f} | {seconds / vis_seconds:>5.2f} | "
              f"{report.stat().st_size / 1e6:>9.2f} | {vis_path.stat().st_size / 1e6:>13.2f} | "
              f"{floor_mb:>12.2f} | {figures[-1]:>7}")

    rows = trial_rows(study.get_trials(deepcopy=False))
    print(f"\nparameter importances at {args.trials[-1]} trials "
          f"({sum(r.outcome == 'complete' for r in rows)} completed). Ground truth: the synthetic "
          "accuracy depends only on the parameter count\n(depth, filters, head.global_pool, "
          "head.layers drive it; label smoothing, dropout, weight decay are noise). "
          "* = the report's default.")
    print(f"{'evaluator':>10} | {'seconds':>7} | {'vs PED-ANOVA':>12} | top 3")
    print("-" * 70)
    base = None
    for name in ("ped-anova", "mdi", "fanova"):
        result = []
        seconds = timed(lambda: result.append(param_importances(rows, evaluator=name)), 1)
        base = base or seconds
        mark = "*" if name == "mdi" else " "
        print(f"{name + mark:>10} | {seconds:>7.2f} | {seconds / base:>11.1f}× | "
              f"{', '.join(result[-1].names[:3])}")
    print(f"\nfiles in {out}")


if __name__ == "__main__":
    main()
