"""Write an export folder: checkpoint files, the network file as model.py, the model card.

The whole folder is written into this writer's temp folder and then replaces ``--out`` at
once; an existing ``--out`` is replaced only when it is empty or an earlier export (its
meta.json carries ``automl_cnn_version`` and ``format``), never a folder of the user's own.

Example:
    >>> export_model("runs/digits-tiny", "exported", rank=0)  # doctest: +SKIP
    PosixPath('exported')
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

from automl_cnn import network
from automl_cnn.arch import ArchSpec
from automl_cnn.api import RunSource, Source, open_source, without_password
from automl_cnn.checkpoint import (ARCH, META, WEIGHTS, CheckpointMeta, load_checkpoint,
                                   replacing, write_checkpoint)
from automl_cnn.errors import UserError
from automl_cnn.export.card import model_card
from automl_cnn.export.formats import FILES, format_for
from automl_cnn.rundir import RunDir
from automl_cnn.shapes import plan_layers

MODEL_PY, CARD = "model.py", "README.md"
OURS = {ARCH, META, WEIGHTS, MODEL_PY, CARD, *FILES.values()}
MARKER = ("automl_cnn_version", "format")  # meta.json keys only an export writes


def _is_export(folder: Path) -> bool:
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and all(key in meta for key in MARKER)


def check_out(out: Path) -> Path:
    """``out`` made absolute, if an export may replace it: new, empty or an earlier export."""
    out = Path(out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {str(out)!r} is a file; pass a folder to export into.")
    here = Path.cwd().absolute()
    if out == here or out in here.parents:
        raise UserError(f"--out {str(out)!r} is the current folder or holds it; an export "
                        "replaces its folder whole, so name a new one, e.g. --out exported.")
    names = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if names and not (set(names) <= OURS and _is_export(out)):
        others = [n for n in names if n not in OURS] or names
        raise UserError(f"--out {str(out)!r} already holds other files ({', '.join(others[:5])})"
                        " that no earlier automl-cnn export wrote; an export replaces its folder"
                        " whole, so export into a new or empty folder.")
    return out


def _search_test_acc(src: RunSource, trial: int) -> float | None:
    """The search evaluated its best model once on the test split (summary.json)."""
    try:
        test = json.loads(RunDir(src.run_dir).summary.read_text()).get("test") or {}
    except (OSError, json.JSONDecodeError):
        return None
    return float(test["accuracy"]) if test.get("trial") == trial else None


def _pick_weights(src: RunSource, rank: int, retrained: bool, seed: int | None) -> Path:
    if not retrained:
        return src.checkpoint_for(rank)
    from automl_cnn.retrain import retrained_folders

    trial = src.trial(rank).number
    found = retrained_folders(src.run_dir, trial)
    if not found:
        raise UserError(f"rank {rank} (trial {trial}) has not been retrained: nothing in "
                        f"{src.run_dir / 'retrained'}. Run `automl-cnn retrain --rank {rank}` "
                        "first, or export the search's weights without --retrained.")
    if seed is None:
        return found[min(found)]
    if seed not in found:
        raise UserError(f"rank {rank} (trial {trial}) was retrained with seeds "
                        f"{', '.join(map(str, sorted(found)))}, not seed {seed}.")
    return found[seed]


def export_model(source: Source, out: str | Path, *, rank: int = 0, fmt: str = "safetensors",
                 retrained: bool = False, seed: int | None = None,
                 study_name: str | None = None, pareto: int | None = None) -> Path:
    """Write the export folder for ``rank``'s model into ``out``; returns the folder.

    ``retrained=True`` exports the weights of ``automl-cnn retrain`` (``seed``: which run;
    default the lowest seed) instead of the search's. ``pareto=i`` exports point ``i`` of
    the Pareto front (:mod:`automl_cnn.front`) instead of a rank.
    """
    write_extra = format_for(fmt)
    out = check_out(Path(out))
    src = open_source(source, study_name=study_name)
    rank = src.pareto_rank(pareto) if pareto is not None else rank
    model, spec, saved = load_checkpoint(_pick_weights(src, rank, retrained, seed))
    meta = _export_meta(src, rank, fmt, CheckpointMeta.from_dict(saved), retrained)
    params, flops = model_costs(spec, meta.input_shape, meta.num_classes)
    meta = replace(meta, params=params, flops=flops)
    with replacing(out) as tmp:
        write_checkpoint(tmp, model, spec, meta)  # arch.json, meta.json, model.safetensors
        extra = write_extra(model, meta.input_shape, tmp)
        shutil.copyfile(network.__file__, tmp / MODEL_PY)  # the package's own builder, as is
        files = [ARCH, META, WEIGHTS, MODEL_PY, CARD] + ([extra.name] if extra else [])
        (tmp / CARD).write_text(model_card(spec, meta.to_dict(), files=files))
    return out


def model_costs(spec: ArchSpec, input_shape: tuple[int, int, int],
                num_classes: int) -> tuple[int, int]:
    """Parameters and FLOPs per image of the model ``spec`` rebuilds, as it runs in eval mode:
    every ensemble network counts, and a network that averages flips (``head.tta``) runs each
    image twice, so its FLOPs count twice (its parameters once)."""
    plans = [(n, plan_layers(n, input_shape, num_classes)) for n in spec.networks]
    return (sum(p.params for _, p in plans),
            sum(p.flops * (2 if n.head.tta == "flip" else 1) for n, p in plans))


def _export_meta(src: RunSource, rank: int, fmt: str, saved: CheckpointMeta,
                 retrained: bool) -> CheckpointMeta:
    from automl_cnn import __version__

    trial = src.trial(rank)
    return replace(saved, study_name=src.name, trial=trial.number, rank=rank, format=fmt,
                   value=float(trial.values[0]),
                   search_test_acc=_search_test_acc(src, trial.number),
                   source=without_password(src.storage_url), automl_cnn_version=__version__,
                   retrained=saved.retrained if retrained else None,
                   latency_ms=trial.plan.latency_ms if trial.plan else None,
                   latency_device=trial.plan.latency_device if trial.plan else None)


__all__ = ["MODEL_PY", "check_out", "export_model", "model_costs", "without_password"]
