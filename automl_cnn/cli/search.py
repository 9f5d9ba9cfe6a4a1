"""``automl-cnn search``: run (or resume) an architecture search."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from automl_cnn.strategies import PRUNERS, SAMPLERS

HELP = "run or resume an architecture search"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("search", help=HELP, description=HELP.capitalize() + ".",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--trials", type=int, default=None,
                   help="trials to run (more, on --resume); default 100, or as many as "
                        "--timeout allows")
    _add_budget_arguments(p)
    p.add_argument("--dataset", default="digits",
                   help="digits | shapes | clutter[:N] (built in), or a local dataset: mnist:DIR, "
                        "cifar10:DIR, cifar100:DIR, folder:DIR, npz:FILE")
    p.add_argument("--image-size", type=int, default=None, metavar="N",
                   help="resize images to N×N (unset: the dataset's own size; for folder: the "
                        "most common size)")
    p.add_argument("--train-subset", type=int, default=None, metavar="N",
                   help="search on a class-balanced N training images (a cheap fidelity for "
                        "big sets); validation and test stay whole")
    p.add_argument("--space", default="default",
                   help="a shipped space (default, tiny) or the path of a YAML space file")
    p.add_argument("--sampler", default=next(iter(SAMPLERS)), help=" | ".join(SAMPLERS))
    p.add_argument("--pruner", default=next(iter(PRUNERS)), help=" | ".join(PRUNERS))
    p.add_argument("--objective", action="append", dest="objectives", default=None,
                   help="val_acc (always), params, flops, latency; repeat for a "
                        "multi-objective search")
    p.add_argument("--storage", default=None,
                   help="Optuna storage URL (sqlite:///f.db, postgresql://..., journal:PATH); "
                        "default: a journal file in the run directory")
    p.add_argument("--study-name", default=None, help="default: <dataset>-<space>")
    p.add_argument("--seed", type=int, default=0, help="seeds sampler, splits and training")
    p.add_argument("--device", default="auto", help="auto | cpu | gpu | cuda:N | mps")
    p.add_argument("--precision", default="auto",
                   help="training precision: auto (bf16 mixed on a GPU, and on a CPU with "
                        "native bf16, AVX-512 BF16 or AMX; else fp32) | 32 | bf16")
    p.add_argument("--out", default=None, help="run directory (default: runs/<study name>)")
    p.add_argument("--resume", action="store_true", help="add trials to an existing study")
    p.add_argument("--join", action="store_true",
                   help="work on the study with other workers: create it unless another worker "
                        "did (under a storage lock), then run trials until the study holds "
                        "--trials finished ones; every worker runs the same command")
    p.add_argument("--heartbeat", type=int, default=60, metavar="SECONDS",
                   help="lease renewal (and Optuna heartbeat on RDB storages) interval; a "
                        "killed worker's trial is failed and retried once: at once by a worker "
                        "on the same host, within 3 × SECONDS from another host")
    p.add_argument("--keep", type=int, default=3, help="keep the weights of this many best")
    p.add_argument("--jobs", default="auto", type=_jobs, metavar="N|auto",
                   help="trials at once, in N worker processes sharing the study (auto: "
                        "from the devices present; 1: in this process)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_target_arguments(p)
    tracking = p.add_argument_group("MLflow tracking")
    tracking.add_argument("--no-mlflow", action="store_true", help="do not track in MLflow")
    tracking.add_argument("--tracking-uri", default=None,
                          help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                               "sqlite:///mlflow.db)")
    tracking.add_argument("--experiment", default=None, help="MLflow experiment (default: study)")
    tracking.add_argument("--model-name", default=None,
                          help="registered model name (default: the study name)")
    p.set_defaults(func=run, search_parser=p)  # the resume command reads its flags


def add_target_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "target device", "Hard limits: an architecture over one is recorded as infeasible and "
        "never trained. Latency is the median time of one forward pass of the untrained network "
        "(measured once per architecture, before training).")
    g.add_argument("--max-params", type=int, default=None, metavar="N", help="parameter limit")
    g.add_argument("--max-flops", type=int, default=None, metavar="N",
                   help="FLOPs limit (per image)")
    g.add_argument("--max-latency-ms", type=float, default=None, metavar="MS",
                   help="latency limit per forward pass at --latency-batch")
    g.add_argument("--max-memory-mb", type=float, default=None, metavar="MB",
                   help="peak inference memory limit: measured on CUDA; on the CPU estimated "
                        "from the layer plan (weights + the two largest neighbouring "
                        "activations × batch × 4 bytes)")
    g.add_argument("--max-train-memory-mb", type=float, default=None, metavar="MB",
                   help="peak memory of one training step at the recipe's batch size on the "
                        "search's device: measured on CUDA; on the CPU estimated from the plan "
                        "(weights, gradients, optimiser state, activations kept for backward)")
    g.add_argument("--latency-device", default="auto",
                   help="where latency is timed: auto (the search's device), cpu, cuda[:N]")
    g.add_argument("--latency-threads", type=int, default=1, metavar="N",
                   help="CPU threads torch may use while timing (recorded with the latency)")
    g.add_argument("--latency-batch", type=int, default=1, metavar="N",
                   help="batch size of the timed forward pass (and the memory limit)")


def target_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The SearchConfig fields of :func:`add_target_arguments`."""
    return {name: getattr(args, name) for name in (
        "max_params", "max_flops", "max_latency_ms", "max_memory_mb", "max_train_memory_mb",
        "latency_device", "latency_threads", "latency_batch")}


def _add_budget_arguments(p: argparse.ArgumentParser) -> None:
    budget = p.add_argument_group("time budget")
    budget.add_argument("--timeout", default=None, metavar="DURATION",
                        help="the whole command's wall budget: 90s, 20m, 1h30m (a plain number is "
                             "seconds); split into search, final fit (--final-share) and report")
    budget.add_argument("--final-share", type=float, default=0.5, metavar="F",
                        help="share of --timeout for the final fit of the winner on train+val")
    budget.add_argument("--final-fit", dest="final_fit", action="store_true", default=None,
                        help="retrain the winner on train+val after the search (the default, "
                             "but for several objectives without --timeout; without --timeout "
                             "for the winner's own epochs)")
    budget.add_argument("--no-final-fit", dest="final_fit", action="store_false",
                        help="keep the search's own weights of the winner")
    budget.add_argument("--ladder", default="auto", choices=("auto", "off"),
                        help="fidelity ladder (more data and epochs for promoted trials) when "
                             "--timeout needs one; off: every trial trains on the whole split")
    budget.add_argument("--ensemble", type=int, default=3, metavar="K",
                        help="the final model averages up to K finalists whose validation "
                             "scores are too close to tell apart (within two standard errors "
                             "of the best), or, when the budget is too short to search, up to "
                             "K trainings of the one baseline with other seeds if time is left "
                             "after its epoch cap; 1: one network. Off under a size or latency "
                             "limit")
    budget.add_argument("--tta", default="auto", choices=("auto", "off"),
                        help="the model you get averages its logits over each image and its "
                             "mirror image where the data's labels survive a flip and no "
                             "latency limit or objective is set (auto); off: never")


def config_from_args(args: argparse.Namespace) -> Any:
    from automl_cnn.budget import parse_duration
    from automl_cnn.config import SearchConfig

    timeout = None if args.timeout is None else parse_duration(args.timeout)
    trials = args.trials if args.trials is not None else (None if timeout else 100)
    return SearchConfig(
        trials=trials, timeout=timeout, final_share=args.final_share,
        final_fit=args.final_fit, ladder=args.ladder, tta=args.tta, ensemble=args.ensemble,
        dataset=args.dataset,
        space=args.space,
        sampler=args.sampler, pruner=args.pruner, storage=args.storage,
        study_name=args.study_name, seed=args.seed, device=args.device,
        precision=args.precision, out=args.out,
        objectives=tuple(args.objectives or ("val_acc",)), keep=args.keep,
        image_size=args.image_size, train_subset=args.train_subset,
        mlflow=not args.no_mlflow, tracking_uri=args.tracking_uri,
        experiment=args.experiment, model_name=args.model_name, heartbeat=args.heartbeat,
        jobs=args.jobs, **target_settings(args),
    )


def _jobs(text: str) -> int | None:
    """``auto`` -> None (chosen at run time); a number stays a number (checked in the config)."""
    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or auto, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    import time

    from automl_cnn.timeline import mark

    started = time.monotonic()  # the budget covers the heavy imports below too
    mark("command: arguments parsed")
    config = config_from_args(args)
    config.check()  # fail on flags before the heavy imports below
    from automl_cnn.runners.warm import WarmPool

    # The workers start now, importing torch and Lightning while this process does.
    pool = WarmPool.for_command(config)
    try:
        import optuna

        from automl_cnn.runners.search import run_search

        mark("command: search imported")
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar reports trials
        outcome = run_search(config, resume=args.resume, join=args.join,
                             progress=not args.no_progress, started=started, pool=pool)
    finally:
        pool.close()
    from .summary_text import print_summary

    print_summary(outcome.summary)
    if config.mlflow:
        from automl_cnn.redact import without_password
        from automl_cnn.tracking import resolve_tracking_uri

        uri = without_password(resolve_tracking_uri(config.tracking_uri))
        print(f"MLflow runs: {uri} (experiment {config.experiment or outcome.study.study_name}); "
              f"browse them with: automl-cnn ui" + (f" --tracking-uri {uri}"
                                                    if config.tracking_uri else ""))
    if outcome.interrupted:
        command = resume_command(args)
        print(f"\nStopped early; every finished trial is kept. Resume with:\n  {command}")
        if "***" in command:
            print("  (put the storage password back in place of ***)")
        return 130
    return 0


#: Flags the resume command leaves out: how this run was started, not what it searches.
NOT_RESUMED = {"resume", "join", "trials", "help"}


def resume_command(args: argparse.Namespace) -> str:
    """The command that continues this search exactly as it was asked for: every flag given
    a non-default value (new flags included, read from the parser), the storage without
    its password, then ``--resume`` (``--join`` for a joining worker).

    Example:
        >>> from automl_cnn.cli import build_parser
        >>> args = build_parser().parse_args(["search", "--seed", "3", "--objective",
        ...                                   "val_acc", "--objective", "params"])
        >>> resume_command(args)
        'automl-cnn search --trials 100 --objective val_acc --objective params --seed 3 --resume'
    """
    from automl_cnn.redact import without_password

    words = ["automl-cnn", "search", "--trials", str(args.trials or 100)]
    for action in args.search_parser._actions:
        if action.dest in NOT_RESUMED or not action.option_strings:
            continue
        value, default = getattr(args, action.dest), action.default
        if isinstance(default, str) and action.type is not None:
            default = action.type(default)  # --jobs auto parses to None
        if value == default or value is None:
            continue
        flag = action.option_strings[-1]
        if isinstance(action, argparse._StoreTrueAction):
            words.append(flag)
        elif isinstance(value, list):
            for item in value:
                words += [flag, str(item)]
        else:
            words += [flag, without_password(str(value)) if action.dest in (
                "storage", "tracking_uri") else str(value)]
    return shlex.join(words + ["--join" if args.join else "--resume"])
