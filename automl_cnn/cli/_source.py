"""Where ``best``, ``export`` and ``retrain`` read a search from: RUN_DIR or --storage URL."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", nargs="?", default=None, metavar="RUN_DIR",
                   help="a search's run directory; if left out, the most recently modified "
                        "one under ./runs")
    p.add_argument("--storage", default=None,
                   help="read the study from this Optuna storage URL instead of a run directory "
                        "(weights are looked for in the run directory its config names)")
    p.add_argument("--study-name", default=None,
                   help="the study, when the storage or run directory holds several")


def source_from_args(args: argparse.Namespace) -> Any:
    """Open the source the arguments name (printing which run directory was picked)."""
    from automl_cnn.api import latest_run_dir, open_source
    from automl_cnn.errors import UserError

    from automl_cnn.redact import without_password

    if args.storage and args.run_dir:
        raise UserError(f"pass either RUN_DIR ({args.run_dir}) or --storage "
                        f"({without_password(args.storage)}), not both.")
    if args.storage:
        return open_source(args.storage, study_name=args.study_name)
    run_dir = args.run_dir
    if run_dir is None:
        run_dir = latest_run_dir("runs")
        print(f"Using {run_dir}, the most recently modified run directory under ./runs.",
              file=sys.stderr)
    return open_source(run_dir, study_name=args.study_name)
