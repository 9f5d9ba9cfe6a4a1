"""Checkpoints: safetensors weights beside the JSON of the architecture that built them.

Loading rebuilds the network from the JSON and fills it from safetensors; nothing is
unpickled, so a checkpoint from an untrusted source cannot run code.

Layout of a checkpoint folder::

    arch.json           ArchSpec.to_json()
    meta.json           input_shape, num_classes, classes, trial number, metrics ...
    model.safetensors   the state dict
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from automl_cnn.arch import ArchSpec, SpecError
from automl_cnn.errors import UserError
from automl_cnn.model import build_model

WEIGHTS, ARCH, META = "model.safetensors", "arch.json", "meta.json"


class CheckpointError(UserError):
    """A checkpoint folder that is missing files or holds unreadable ones."""


def save_checkpoint(folder: Path, model: nn.Module, spec: ArchSpec, meta: dict[str, Any]) -> Path:
    """Write ``model``'s weights, ``spec`` and ``meta`` to ``folder`` (created; replaced whole)."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp / WEIGHTS))
    (tmp / ARCH).write_text(spec.to_json())
    (tmp / META).write_text(json.dumps(meta, indent=2, sort_keys=True))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)  # a reader never sees a half-written checkpoint
    return folder


def read_meta(folder: Path) -> dict[str, Any]:
    path = Path(folder) / META
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {folder} has no {META}.") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}).") from None


def read_spec(folder: Path) -> ArchSpec:
    path = Path(folder) / ARCH
    try:
        return ArchSpec.from_json(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {folder} has no {ARCH}.") from None
    except SpecError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def load_checkpoint(folder: Path, *, weights: bool = True,
                    device: str = "cpu") -> tuple[nn.Module, ArchSpec, dict[str, Any]]:
    """Rebuild the network saved in ``folder``; returns (model in eval mode, spec, meta)."""
    folder = Path(folder)
    spec, meta = read_spec(folder), read_meta(folder)
    model = build_model(spec, tuple(meta["input_shape"]), int(meta["num_classes"]))
    if weights:
        path = folder / WEIGHTS
        if not path.exists():
            raise CheckpointError(f"checkpoint {folder} has no weights file {WEIGHTS}; "
                                  "load with weights=False to get the untrained architecture.")
        try:
            state = load_file(str(path), device=device)
            model.load_state_dict(state)
        except (SafetensorError, RuntimeError, OSError) as exc:
            raise CheckpointError(f"cannot load weights {path}: {exc}. The file is corrupted "
                                  "or belongs to another architecture.") from None
    return model.to(device).eval(), spec, meta


def keep_best(root: Path, k: int) -> list[Path]:
    """Delete all but the best ``k`` checkpoints under ``root``, ranked like the study's trials
    (:func:`automl_cnn.results.rank_key` on the accuracy and loss in ``meta.json``).

    Returns the kept folders, best first.
    """
    from automl_cnn.results import rank_key  # optuna: only for the search, not for loading

    def key(folder: Path) -> tuple[float, float, int]:
        try:
            meta = read_meta(folder)
        except CheckpointError:  # another worker (--jobs) removed it a moment ago
            return rank_key(float("-inf"), None, 2**62)
        return rank_key(meta.get("value", float("-inf")), meta.get("val_loss"),
                        int(meta.get("trial", 0)))

    # A ``.tmp`` folder is another worker's checkpoint being written: not ours to judge.
    folders = [p for p in Path(root).glob("trial-*")
               if not p.name.endswith(".tmp") and (p / META).exists()]
    ranked = sorted(folders, key=key)
    for stale in ranked[k:]:
        shutil.rmtree(stale, ignore_errors=True)
    return ranked[:k]


def trial_folder(run_dir: Path, number: int) -> Path:
    return Path(run_dir) / "models" / f"trial-{number:04d}"
