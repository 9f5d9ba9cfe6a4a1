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
    p.add_argument("--pareto", action="store_true",
                   help="list the Pareto front instead: every completed trial no other beats on "
                        "all objectives at once (accuracy, params, latency ...)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from automl_cnn.api import top_architectures
    from automl_cnn.errors import UserError

    if args.k < 1:
        raise UserError(f"--k must be at least 1, but got {args.k}.")
    src = source_from_args(args)
    src.ranked()  # a clear error when nothing completed
    if args.pareto:
        print_front(src)
        return 0
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


def print_front(src: Any) -> None:
    """The Pareto front as a table: point, trial, every objective, latency device, weights."""
    front = src.front()
    names = list(front[0].values) if front else []
    kept = {src.ranked()[r].number for r in src.kept_ranks()}
    header = ("point", "trial", *names, "weights")
    rows = [(str(p.index), str(p.trial), *(_show(n, v) for n, v in p.values.items()),
             "kept" if p.trial in kept else "-") for p in front]
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    print(f"Pareto front of {src.describe()}: {len(front)} of {len(src.ranked())} completed "
          f"trials ({', '.join(names)}):\n")
    for row in [header, *rows]:
        print("  " + "  ".join(x.rjust(w) for x, w in zip(row, widths)))
    devices = {p.latency_device for p in front if p.latency_device}
    if devices:
        print(f"\nLatency measured on {', '.join(sorted(devices))}.")
    print("\nLoad one in Python: automl_cnn.load_best(RUN_DIR, pareto=I); ship one: automl-cnn "
          "export RUN_DIR --pareto I --out DIR.")


def _show(name: str, value: float) -> str:
    if name == "val_acc":
        return f"{value:.4f}"
    return f"{value:.3f} ms" if name == "latency" else f"{value:,.0f}"


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
