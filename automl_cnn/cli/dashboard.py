"""``automl-cnn dashboard``: write the one-file HTML report of a search (finished or running)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from automl_cnn.cli._source import add_source_arguments, source_from_args

HELP = "write an offline HTML report (Plotly dashboards) of a search"
EVALUATORS = ("mdi", "ped-anova", "fanova")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("dashboard", help=HELP, description="Write one offline HTML file of "
                       "Plotly dashboards that summarise a search. Works on a finished study, "
                       "a running one (a snapshot) and one with no completed trial yet.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_source_arguments(p)
    p.add_argument("--out", default=None,
                   help="report file (default: RUN_DIR/report.html, or <study>-report.html "
                        "with --storage)")
    p.add_argument("--top-k", type=int, default=3,
                   help="architectures in the top table and the diagrams")
    p.add_argument("--png", action="store_true",
                   help="also write every figure as a PNG beside the report (Kaleido; needs "
                        "Chrome or Chromium, or BROWSER_PATH)")
    p.add_argument("--importance", default="mdi", choices=EVALUATORS,
                   help="parameter-importance evaluator (fanova is slow on large studies)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from automl_cnn.errors import UserError

    if args.top_k < 1:
        raise UserError(f"--top-k must be at least 1, but got {args.top_k}. Ask for how many "
                        "of the best architectures to show, e.g. --top-k 3.")
    source = source_from_args(args)
    run_dir = source.run_dir if source.run_dir.is_dir() else None
    if args.out:
        out = Path(args.out)
    elif run_dir is not None and not args.storage:
        out = run_dir / "report.html"
    else:
        out = Path(f"{source.name}-report.html")
    from automl_cnn.dashboards import write_report

    result = write_report(source.study, out, run_dir=run_dir, top_k=args.top_k, png=args.png,
                          importance=args.importance)
    print(f"Report: {result.path} ({len(result.figures)} figures)")
    if result.pngs:
        print(f"PNG figures: {result.pngs[0].parent}/ ({len(result.pngs)} files)")
    if result.png_notice:
        print(result.png_notice)
    return 0
