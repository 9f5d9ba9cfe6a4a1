"""``automl-cnn``: the command line. Each sub-command lives in its own module here and imports
its heavy dependencies (torch, optuna, mlflow, plotly) only when it runs, so ``--help`` is fast.

A sub-command module defines ``add_parser(subparsers)`` and sets ``func`` to a handler taking
the parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import textwrap

from automl_cnn.ending import end_quickly

#: Sub-command modules, in the order ``--help`` lists them.
COMMANDS = ("search", "best", "export", "retrain", "ui", "dashboard")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="automl-cnn",
        description="Search convolutional network architectures with Optuna, train them with "
                    "PyTorch Lightning, track them in MLflow and summarise them with Plotly.",
    )
    from automl_cnn import __version__

    parser.add_argument("--version", action="version", version=f"automl-cnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"automl_cnn.cli.{name}").add_parser(sub)
    return parser


def fail(message: str, code: int = 2) -> int:
    """Print a user error as one wrapped paragraph on stderr; return the exit code."""
    text = textwrap.fill(message, width=100, subsequent_indent="  ",
                         break_long_words=False, break_on_hyphens=False)
    print(f"automl-cnn: error: {text}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from automl_cnn.errors import UserError

    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        return fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        print("automl-cnn: interrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `automl-cnn best | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        return 0


def entry() -> None:
    """The ``automl-cnn`` console script (and ``python -m automl_cnn``): :func:`main`, then an
    exit that does not spend a second collecting what the process is about to drop
    (:func:`automl_cnn.ending.end_quickly`)."""
    code = main()
    end_quickly()
    sys.exit(code)


if __name__ == "__main__":
    entry()
