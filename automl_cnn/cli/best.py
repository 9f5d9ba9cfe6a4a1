"""``automl-cnn best``: the top-k architectures of a search, with their layer plans."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from automl_cnn.cli._source import add_source_arguments, source_from_args

HELP = "list the best architectures a search found"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("best", help=HELP, description=HELP.capitalize() + ".",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_source_arguments(p)
    p.add_argument("--k", type=int, default=5, help="how many architectures to list")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from automl_cnn.api import top_architectures
    from automl_cnn.errors import UserError

    if args.k < 1:
        raise UserError(f"--k must be at least 1, but got {args.k}.")
    src = source_from_args(args)
    src.ranked()  # a clear error when nothing completed
    top = top_architectures(src, args.k)
    kept = set(src.kept_ranks())
    print(f"Best {len(top)} of {len(src.ranked())} completed trials in {src.describe()}:\n")
    print(format_top(top, kept))
    from automl_cnn.shapes import format_plan_rows

    for arch in top:
        print(f"\nRank {arch.rank} (trial {arch.trial}), val_acc {arch.val_acc:.4f}:")
        print(format_plan_rows(arch.layer_plan))
    print("\nLoad one in Python: automl_cnn.load_best(RUN_DIR, rank=R); ship one: automl-cnn "
          "export RUN_DIR --rank R --out DIR.", file=sys.stdout)
    return 0


def layer_chain(plan: list[dict[str, Any]]) -> str:
    """Output volumes from input to logits: ``8×8×1 → 8×8×16 → 4×4×16 → 256 → 10``."""
    return " → ".join(str(row["output"]) for row in plan)


def format_top(top: list[Any], kept: set[int]) -> str:
    header = ("rank", "trial", "val_acc", "params", "FLOPs", "weights", "layers (output volumes)")
    rows = [(str(a.rank), str(a.trial), f"{a.val_acc:.4f}", f"{a.params:,}", f"{a.flops:,}",
             "kept" if a.rank in kept else "-", layer_chain(a.layer_plan)) for a in top]
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:>{w}}}" if 0 < i < 5 or i == 0 else f"{{:<{w}}}"
                    for i, w in enumerate(widths))
    return "\n".join("  " + fmt.format(*row).rstrip() for row in [header, *rows])
