"""``automl-cnn retrain``: train a found architecture from scratch on train+val, over seeds."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from automl_cnn.cli._source import add_source_arguments, source_from_args

HELP = "retrain a found architecture on train+validation and report its test accuracy"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("retrain", help=HELP, description=HELP.capitalize() + ".",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_source_arguments(p)
    p.add_argument("--rank", type=int, default=0, help="which architecture (0 = the best)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs per run; if left out, the epochs the search found")
    p.add_argument("--seeds", type=int, default=3, help="independent runs (seeds 0..N-1)")
    p.add_argument("--device", default="auto", help="auto | cpu | gpu | cuda:N | mps")
    p.add_argument("--precision", default="auto",
                   help="auto | 32 | bf16, as search's --precision")
    tracking = p.add_argument_group("MLflow tracking")
    tracking.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    tracking.add_argument("--tracking-uri", default=None,
                          help="MLflow tracking URI; if left out, the search's, else "
                               "$MLFLOW_TRACKING_URI, else sqlite:///mlflow.db")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from automl_cnn.errors import UserError

    for flag, value in (("--seeds", args.seeds), ("--epochs", args.epochs)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be at least 1, but got {value}.")
    from automl_cnn.retrain import log_to_mlflow, retrain, tracking_uri

    src = source_from_args(args)
    trial = src.trial(args.rank)
    print(f"Retraining rank {args.rank} (trial {trial.number}) of {src.describe()} on "
          f"train+val, {args.seeds} seed(s) ...", file=sys.stderr)
    result = retrain(src, args.rank, epochs=args.epochs, seeds=args.seeds, device=args.device,
                     precision=args.precision)
    print(format_result(result))
    if not args.no_mlflow:
        uri = tracking_uri(args.tracking_uri, src)
        run_id = log_to_mlflow(result, src, uri=uri)
        print(f"MLflow run {run_id} in experiment "
              f"{src.config.experiment or src.name!r} ({uri}).")
    print(f"Export one: automl-cnn export {src.run_dir} --rank {args.rank} --retrained "
          "--out DIR")
    return 0


def format_result(result: Any) -> str:
    seeds = ", ".join(f"{acc:.4f}" for acc in result.test_acc)
    lines = [
        f"Trial {result.trial} (rank {result.rank}), {result.spec.train.epochs} epochs on "
        f"{result.train_images:,} images, {len(result.seeds)} seed(s) in "
        f"{result.seconds:.1f}s:",
        f"  test accuracy {result.mean:.4f} ± {result.std:.4f}  (seeds: {seeds})",
        f"  search: val_acc {result.search_val_acc:.4f}"
        + (f", test accuracy of its model {result.search_test_acc:.4f}"
           if result.search_test_acc is not None else ""),
        "  weights: " + ", ".join(str(f) for f in result.folders),
    ]
    return "\n".join(lines)
