"""``automl-cnn export``: one folder that ships a found model without automl-cnn."""

from __future__ import annotations

import argparse
from typing import Any

from automl_cnn.cli._source import add_source_arguments, source_from_args
from automl_cnn.export.formats import FORMATS  # names only: torch loads when a writer runs

HELP = "export a found model (weights, spec, model card, standalone model.py)"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("export", help=HELP, description=HELP.capitalize() + ".",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_source_arguments(p)
    p.add_argument("--rank", type=int, default=0, help="which architecture (0 = the best)")
    p.add_argument("--pareto", type=int, default=None, metavar="I",
                   help="export point I of the Pareto front (automl-cnn best --pareto) instead "
                        "of a rank")
    p.add_argument("--format", dest="fmt", default="safetensors", choices=list(FORMATS),
                   help="extra file beside the safetensors weights and model.py")
    p.add_argument("--out", required=True, help="folder to write (new, empty or an old export)")
    p.add_argument("--retrained", action="store_true",
                   help="export the weights of `automl-cnn retrain` instead of the search's")
    p.add_argument("--seed", type=int, default=None,
                   help="with --retrained: which seed's model; if left out, the lowest")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from automl_cnn.errors import UserError
    from automl_cnn.export import export_model

    if args.seed is not None and not args.retrained:
        raise UserError(f"--seed {args.seed} picks a retrained model; add --retrained.")
    src = source_from_args(args)
    if args.pareto is not None and args.rank != 0:
        raise UserError(f"pass --rank {args.rank} or --pareto {args.pareto}, not both.")
    folder = export_model(src, args.out, rank=args.rank, fmt=args.fmt, retrained=args.retrained,
                          seed=args.seed, pareto=args.pareto)
    rank = src.pareto_rank(args.pareto) if args.pareto is not None else args.rank
    which = f"Pareto point {args.pareto}, rank {rank}" if args.pareto is not None else \
        f"rank {rank}"
    print(f"Exported {which} (trial {src.trial(rank).number}) of {src.describe()} to {folder}:")
    for path in sorted(folder.iterdir()):
        print(f"  {path.name:<22} {path.stat().st_size:>10,} bytes")
    print(f"\nLoad it with torch alone:  cd {folder} && python -c "
          "\"from model import load; print(load('.'))\"")
    return 0
