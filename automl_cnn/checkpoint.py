"""Checkpoints: safetensors weights beside the JSON of the architecture that built them.

Loading rebuilds the network from the JSON and fills it from safetensors; nothing is
unpickled, so a checkpoint from an untrusted source cannot run code.

Layout of a checkpoint folder::

    arch.json           ArchSpec.to_json()
    meta.json           input_shape, num_classes, classes, trial number, metrics ...
    model.safetensors   the state dict
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import re
import shutil
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from automl_cnn.arch import ArchSpec, SpecError
from automl_cnn.atomic import temp_name, write_text_atomic
from automl_cnn.errors import UserError
from automl_cnn.model import build_model

if TYPE_CHECKING:
    from automl_cnn.data import ImageSplits

log = logging.getLogger(__name__)
WEIGHTS, ARCH, META = "model.safetensors", "arch.json", "meta.json"
TRIAL_FOLDER = re.compile(r"trial-\d{4,}")  # complete kept weights; temps are named otherwise
LEFTOVER = re.compile(r".+\.tmp(-.+)?")  # a writer's temp (atomic.temp_name; older: NAME.tmp)
LEFTOVER_AGE = 3600.0  # seconds; younger leftovers may belong to a live writer
LOCK = ".lock"


def _version() -> str:
    from automl_cnn import __version__

    return __version__


@dataclass(frozen=True)
class CheckpointMeta:
    """What meta.json says about the weights beside it: enough to rebuild the network
    (``input_shape``, ``num_classes``), rank it (``value``, ``val_loss``, ``trial``) and describe
    it (the rest). Export-only fields stay ``None`` elsewhere and are left out of the JSON."""

    input_shape: tuple[int, int, int]
    num_classes: int
    classes: tuple[str, ...] = ()
    dataset: str = ""
    study_name: str = ""
    trial: int = 0
    value: float | None = None  # the trial's validation accuracy in the search
    val_loss: float | None = None
    values: tuple[float, ...] | None = None  # every objective's value, in ``objectives`` order
    objectives: tuple[str, ...] | None = None
    trained_on: str = "train"  # "train+val" for retrained weights
    retrained: dict[str, Any] | None = None  # seed, this_seed; the group's test_acc, mean, std
    rank: int | None = None  # export only: rank, format, params, flops, search_test_acc, source
    format: str | None = None
    params: int | None = None
    flops: int | None = None
    search_test_acc: float | None = None
    source: str | None = None  # the study's storage, without its password
    rung: int | None = None  # the fidelity-ladder rung ``value`` was earned at (None: no ladder)
    latency_ms: float | None = None  # measured by the search before training (automl_cnn.latency)
    latency_device: str | None = None
    automl_cnn_version: str = field(default_factory=_version)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in asdict(self).items() if v is not None}

    @classmethod
    def for_dataset(cls, data: ImageSplits, **rest: Any) -> CheckpointMeta:
        """The meta of weights trained on ``data``; ``rest`` names the other fields.

        Example:
            >>> meta = CheckpointMeta.for_dataset(data, trial=3, value=0.9)  # doctest: +SKIP
        """
        return cls(input_shape=data.input_shape, num_classes=data.num_classes,
                   classes=tuple(data.classes), dataset=data.name, **rest)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckpointMeta:
        """Read a meta.json dict; keys this version does not know are ignored."""
        known = {f.name for f in fields(cls)}
        kept = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return cls(**kept)


class CheckpointError(UserError):
    """A checkpoint folder that is missing files or holds unreadable ones."""


@contextmanager
def replacing(folder: Path) -> Iterator[Path]:
    """Yield this writer's own temp folder; on success it replaces ``folder`` whole.

    A reader sees the old folder or the new one (for an instant, between two renames, none),
    never a half-written one; a writer that dies leaves only its own temp
    (:func:`automl_cnn.atomic.temp_name`), which :func:`keep_best` ignores and later removes.
    """
    folder = Path(folder)
    tmp = temp_name(folder)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        old = temp_name(folder)
        try:
            folder.rename(old)  # set aside, so that the new one can take the name at once
        except FileNotFoundError:
            pass
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_checkpoint(folder: Path, model: nn.Module, spec: ArchSpec,
                    meta: CheckpointMeta | Mapping[str, Any]) -> Path:
    """Write ``model``'s weights, ``spec`` and ``meta`` to ``folder`` (created; replaced whole)."""
    with replacing(folder) as tmp:
        write_checkpoint(tmp, model, spec, meta)
    return Path(folder)


def write_checkpoint(folder: Path, model: nn.Module, spec: ArchSpec,
                     meta: CheckpointMeta | Mapping[str, Any]) -> None:
    """The three checkpoint files into an existing ``folder`` (use :func:`replacing`)."""
    data = meta.to_dict() if isinstance(meta, CheckpointMeta) else dict(meta)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS))
    (folder / ARCH).write_text(spec.to_json())
    (folder / META).write_text(json.dumps(data, indent=2, sort_keys=True))


def write_meta(folder: Path, meta: CheckpointMeta) -> None:
    """Replace ``folder``'s meta.json atomically (a reader sees the old one or the new one)."""
    write_text_atomic(Path(folder) / META, json.dumps(meta.to_dict(), indent=2, sort_keys=True))


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


def keep_best(root: Path, k: int, *, also: Collection[int] = ()) -> list[Path]:
    """Delete all but the best ``k`` checkpoints under ``root``, ranked like the study's trials
    (:func:`automl_cnn.results.rank_key` on the accuracy and loss in ``meta.json``), and the
    trials numbered in ``also`` (the Pareto front's, so any front point can be exported).

    Safe with many workers sharing ``root``: only complete folders named ``trial-NNNN`` count
    (another writer's temp never does), eviction holds an exclusive lock on ``root/.lock``,
    and an unreadable meta.json is skipped, not fatal. Leftover temps older than an hour (of
    killed writers) are removed. Returns the kept folders, best first.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / LOCK):
        _remove_leftovers(root)
        ranked = [folder for _, folder in sorted(_ranked_folders(root))]
        front = {f"trial-{n:04d}" for n in also}
        kept = [folder for i, folder in enumerate(ranked) if i < k or folder.name in front]
        for stale in ranked:
            if stale not in kept:
                shutil.rmtree(stale, ignore_errors=True)
    return kept


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


def _ranked_folders(root: Path) -> list[tuple[tuple[float, float, int], Path]]:
    from automl_cnn.results import rank_key  # optuna: only for the search, not for loading

    found = []
    for folder in root.iterdir():
        if not TRIAL_FOLDER.fullmatch(folder.name) or not (folder / WEIGHTS).exists():
            continue
        try:
            meta = read_meta(folder)
            value = meta.get("value")
            key = rank_key(-math.inf if value is None else float(value), meta.get("val_loss"),
                           int(meta.get("trial", 0)), int(meta.get("rung") or 0))
        except (CheckpointError, AttributeError, TypeError, ValueError) as exc:
            log.warning("ignoring kept weights %s: unreadable meta.json (%s)", folder, exc)
            continue
        found.append((key, folder))
    return found


def _remove_leftovers(root: Path) -> None:
    """Temps of writers that died (kill -9, full disk) an hour or more ago."""
    now = time.time()
    for path in root.iterdir():
        if LEFTOVER.fullmatch(path.name):
            try:
                if now - path.stat().st_mtime > LEFTOVER_AGE:
                    shutil.rmtree(path, ignore_errors=True)
            except FileNotFoundError:
                pass  # its writer finished meanwhile


def trial_folder(run_dir: Path, number: int) -> Path:
    """Alias of :meth:`automl_cnn.rundir.RunDir.trial_folder`."""
    from automl_cnn.rundir import RunDir

    return RunDir(run_dir).trial_folder(number)
