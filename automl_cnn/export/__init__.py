"""Ship a found architecture: one folder that works without automl-cnn installed.

The folder holds ``arch.json`` (the spec), ``meta.json``, ``model.safetensors`` (weights),
a generated ``model.py`` (the network in plain torch), ``README.md`` (the model card) and,
for ``torchscript``/``onnx``, that file too. It is also an automl-cnn checkpoint folder, so
:func:`automl_cnn.checkpoint.load_checkpoint` reads it back.

Example:
    >>> folder = export_model("runs/digits-tiny", "exported", rank=0, fmt="onnx")
    >>> sorted(p.name for p in folder.iterdir())[:3]
    ['README.md', 'arch.json', 'meta.json']
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from automl_cnn.api import RunSource, Source, open_source, without_password
from automl_cnn.checkpoint import ARCH, META, WEIGHTS, load_checkpoint, save_checkpoint
from automl_cnn.errors import UserError
from automl_cnn.export.card import model_card
from automl_cnn.export.codegen import model_source
from automl_cnn.export.formats import FILES, FORMATS, write_format
from automl_cnn.shapes import plan_layers

MODEL_PY, CARD = "model.py", "README.md"
OURS = {ARCH, META, WEIGHTS, MODEL_PY, CARD, *FILES.values()}


def _check_out(out: Path) -> None:
    """Refuse to replace a folder that is not an earlier export."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {str(out)!r} is a file; pass a folder to export into.")
    if out.is_dir():
        others = sorted(p.name for p in out.iterdir() if p.name not in OURS)
        if others:
            raise UserError(f"--out {str(out)!r} already holds other files ({', '.join(others[:5])}"
                            "); export into a new or empty folder.")


def _search_test_acc(src: RunSource, trial: int) -> float | None:
    """The search evaluated its best model once on the test split (summary.json)."""
    try:
        test = json.loads((src.run_dir / "summary.json").read_text()).get("test") or {}
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
                 study_name: str | None = None) -> Path:
    """Write the export folder for ``rank``'s model into ``out``; returns the folder.

    ``retrained=True`` exports the weights of ``automl-cnn retrain`` (``seed``: which run;
    default the lowest seed) instead of the search's.
    """
    from automl_cnn import __version__

    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}. Valid formats: {', '.join(FORMATS)}.")
    out = Path(out)
    _check_out(out)
    src = open_source(source, study_name=study_name)
    trial = src.trial(rank)
    model, spec, saved = load_checkpoint(_pick_weights(src, rank, retrained, seed))
    shape = tuple(saved["input_shape"])
    plan = plan_layers(spec, shape, int(saved["num_classes"]))  # type: ignore[arg-type]
    meta: dict[str, Any] = {
        **{k: saved[k] for k in ("dataset", "classes", "input_shape", "num_classes")},
        "study_name": src.name, "trial": trial.number, "rank": rank, "format": fmt,
        "value": float(trial.values[0]), "params": plan.params, "flops": plan.flops,
        "search_test_acc": _search_test_acc(src, trial.number),
        "source": without_password(src.storage_url),
        "automl_cnn_version": __version__,
        "retrained": saved.get("retrained") if retrained else None,
    }
    save_checkpoint(out, model, spec, meta)  # arch.json, meta.json, model.safetensors
    extra = write_format(fmt, model, shape, out)  # type: ignore[arg-type]
    title = f"{src.name}, rank {rank} (trial {trial.number}): a network found by automl-cnn."
    source = model_source(spec, shape, meta["num_classes"],  # type: ignore[arg-type]
                          classes=tuple(meta["classes"]), title=title, version=__version__)
    (out / MODEL_PY).write_text(source)
    files = [ARCH, META, WEIGHTS, MODEL_PY, CARD] + ([extra.name] if extra else [])
    (out / CARD).write_text(model_card(spec, meta, files=files))
    return out


__all__ = ["FORMATS", "export_model", "model_source"]
