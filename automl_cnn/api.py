"""Take the architectures a search found into your own code: one line each.

A *source* is where a search left its results, in one of two forms:

- a run directory (``runs/digits-default``, what ``automl-cnn search --out`` wrote), or
- an Optuna storage URL (``journal:PATH``, ``sqlite:///f.db``, ``postgresql://u@h/db``) with
  ``study_name=`` when the storage holds more than one study.

Ranks follow :func:`automl_cnn.results.ranked_trials`: rank 0 is the completed trial with the
highest validation accuracy. Weights exist only for the best ``--keep`` trials of a search
(``RUN_DIR/models/trial-NNNN``); any rank can be rebuilt untrained with ``weights=False``.

Example:
    >>> net = load_best("runs/digits-tiny")                     # best model, eval mode
    >>> net = load_best("runs/digits-tiny", rank=1)             # the runner-up
    >>> arch = load_best("sqlite:///s.db", study_name="digits-tiny", weights=False)
    >>> [a.val_acc for a in top_architectures("runs/digits-tiny", k=3)]
    [0.958, 0.951, 0.944]
"""

from __future__ import annotations

import json
import numbers
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from automl_cnn.arch import ArchSpec
from automl_cnn.checkpoint import WEIGHTS, load_checkpoint
from automl_cnn.config import SearchConfig
from automl_cnn.errors import UserError
from automl_cnn.record import DATASET_ATTR, TrialRecord, load_config, read_study_info
from automl_cnn.redact import require_password, without_password
from automl_cnn.model import build_for
from automl_cnn.rundir import JOURNAL_PREFIX, RunDir, latest_run_dir

if TYPE_CHECKING:
    import optuna
    from torch import nn

    from automl_cnn.front import ParetoPoint
    from automl_cnn.results import RankedArchitecture

Source = Union[str, os.PathLike, "RunSource"]


@dataclass(frozen=True)
class RunSource:
    """An opened study, the settings it was searched with, and the folder its weights live in.

    ``run_dir`` may not exist for a study opened from a storage URL on another machine.
    """

    study: optuna.Study
    config: SearchConfig
    run_dir: Path
    storage_url: str
    input_shape: tuple[int, int, int]
    num_classes: int
    classes: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.study.study_name

    def describe(self) -> str:
        return f"study {self.name!r} ({without_password(self.storage_url)})"

    def ranked(self) -> list[TrialRecord]:
        """Completed trials' records, best first; raises when there is none."""
        from automl_cnn.results import ranked_trials, study_counts

        ranked = ranked_trials(self.study)
        if not ranked:
            counts = study_counts(self.study)
            seen = ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "no trials at all"
            raise UserError(f"{self.describe()} has no completed trial yet ({seen}), so there "
                            "is no best architecture. Run more trials with `automl-cnn search "
                            "--resume`.")
        return ranked

    def trial(self, rank: int) -> TrialRecord:
        """The record of the trial at ``rank`` (0 = best)."""
        if isinstance(rank, bool) or not isinstance(rank, numbers.Integral):
            raise UserError(f"rank must be a whole number (0 is the best), but got {rank!r}.")
        ranked = self.ranked()
        if not 0 <= rank < len(ranked):
            raise UserError(f"rank {rank!r} does not exist: {self.describe()} has "
                            f"{len(ranked)} completed trial(s), so ranks 0..{len(ranked) - 1} "
                            "exist (0 is the best).")
        return ranked[int(rank)]

    def spec(self, rank: int) -> ArchSpec:
        trial = self.trial(rank)
        if trial.spec is None:
            raise UserError(f"trial {trial.number} of {self.describe()} holds no readable "
                            "architecture.")
        return trial.spec

    def front(self) -> list[ParetoPoint]:
        """The search's Pareto front (:mod:`automl_cnn.front`), point 0 first."""
        from automl_cnn.front import study_front

        return study_front(self.study, self.config)

    def pareto_rank(self, index: int) -> int:
        """The rank of Pareto point ``index`` (every front point is a completed trial)."""
        front = self.front() if self.ranked() else []
        if isinstance(index, bool) or not isinstance(index, numbers.Integral) or not (
                0 <= index < len(front)):
            raise UserError(f"Pareto point {index!r} does not exist: {self.describe()} has "
                            f"{len(front)} point(s) on its front, so 0..{len(front) - 1} exist. "
                            "List them with `automl-cnn best --pareto`.")
        trial = front[int(index)].trial
        return next(i for i, r in enumerate(self.ranked()) if r.number == trial)

    def weights_folder(self, trial_number: int) -> Path:
        return RunDir(self.run_dir).trial_folder(trial_number)

    def kept_ranks(self) -> list[int]:
        """Ranks whose weights were kept by the search."""
        return [i for i, t in enumerate(self.ranked())
                if (self.weights_folder(t.number) / WEIGHTS).exists()]

    def final_folder(self) -> Path | None:
        """The best trial fitted on train + validation after the search (``RUN_DIR/final``),
        when the search made one."""
        folder = RunDir(self.run_dir).final
        if not (folder / WEIGHTS).exists():
            return None
        meta = json.loads((folder / "meta.json").read_text())
        return folder if meta.get("trial") == self.trial(0).number else None

    def checkpoint_for(self, rank: int, *, final: bool = True) -> Path:
        """The kept checkpoint folder of ``rank`` (for rank 0, the final fit on train +
        validation when there is one and ``final``); a clear error when the search dropped it."""
        trial = self.trial(rank)
        fitted = self.final_folder() if final and rank == 0 else None
        if fitted is not None:
            return fitted
        folder = self.weights_folder(trial.number)
        if folder.exists():
            return folder
        if not self.run_dir.is_dir():
            raise UserError(f"the weights of {self.describe()} should be in {self.run_dir}, "
                            "which does not exist here (the study's config names it as its "
                            "run directory). Copy that folder here and pass its path, or use "
                            "weights=False / `automl-cnn retrain` to train the architecture.")
        kept = self.kept_ranks()
        have = f"ranks {', '.join(map(str, kept))} have weights" if kept else "no rank has weights"
        raise UserError(f"rank {rank} (trial {trial.number}) has no kept weights: the search "
                        f"keeps only its best --keep trials in {RunDir(self.run_dir).models}, "
                        "and "
                        f"{have}. Pass weights=False for the untrained architecture, or train "
                        f"it with `automl-cnn retrain --rank {rank}` (then export it with "
                        "--retrained).")


def open_source(source: Source, *, study_name: str | None = None) -> RunSource:
    """Open a run directory, or a storage URL (with ``study_name`` when it holds several)."""
    if isinstance(source, RunSource):
        return source
    text = os.fspath(source)
    if text.startswith(JOURNAL_PREFIX) or "://" in text:
        return _load(text, study_name, run_dir=None)
    return _open_run_dir(Path(text), study_name)


def _open_run_dir(run_dir: Path, study_name: str | None) -> RunSource:
    rundir = RunDir(run_dir)
    path = rundir.config
    if not run_dir.is_dir():
        raise UserError(f"run directory {str(run_dir)!r} does not exist. Pass the --out folder "
                        "of a search, or a storage URL such as sqlite:///study.db.")
    try:
        config = SearchConfig.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise UserError(f"{str(run_dir)!r} is not an automl-cnn run directory: it has no "
                        f"{path.name}. Pass the --out folder of a search.") from None
    except (json.JSONDecodeError, TypeError) as exc:
        raise UserError(f"{path} is not a readable search config ({exc}).") from None
    url = require_password(rundir.storage_url(config.storage), where=str(path), fix=(
        "Pass the storage URL with its password instead of the run directory, e.g. "
        "load_best('postgresql://user:PASSWORD@host/db', study_name=...) or --storage."))
    return _load(url, study_name or config.resolved_study_name, run_dir=run_dir)


def _load(url: str, study_name: str | None, *, run_dir: Path | None) -> RunSource:
    import optuna

    from automl_cnn.storage import make_storage

    journal = url[len(JOURNAL_PREFIX):]
    if url.startswith(JOURNAL_PREFIX) and not Path(journal).is_file():
        # make_storage would create an empty journal; say what is missing instead
        raise UserError(f"journal file {journal!r} does not exist, so there is "
                        "no study to read. Check the path, or run a search first.")
    storage = make_storage(url)
    shown = without_password(url)
    names = [s.study_name for s in storage.get_all_studies()]
    if study_name is None:
        if len(names) != 1:
            raise UserError(f"{shown} holds {len(names)} studies ({', '.join(names) or 'none'}); "
                            "name one with study_name= (CLI: --study-name).")
        study_name = names[0]
    if study_name not in names:
        raise UserError(f"there is no study {study_name!r} in {shown}; it holds "
                        f"{', '.join(map(repr, names)) or 'no study'}.")
    study = optuna.load_study(study_name=study_name, storage=storage,
                              sampler=optuna.samplers.RandomSampler())
    config = load_config(study)
    data = read_study_info(study).dataset
    if data is None:
        raise UserError(f"study {study_name!r} in {shown} records no dataset "
                        f"({DATASET_ATTR}); it was not created by automl-cnn search.")
    return RunSource(study, config, run_dir if run_dir is not None else config.run_dir, url,
                     data.input_shape, data.num_classes, data.classes)


def load_best(source: Source, rank: int = 0, weights: bool = True, *,
              study_name: str | None = None, input_shape: tuple[int, int, int] | None = None,
              device: str = "cpu", final: bool = True,
              pareto: int | None = None) -> nn.Module:
    """The ``rank``-th best architecture of a search as a ``torch.nn.Module`` in eval mode.

    ``weights=True`` loads the weights the search trained (kept for the best ``--keep``
    trials; for rank 0 of a search that ended with a final fit, the final model trained on
    train + validation, or with ``final=False`` the search's own weights of that trial);
    ``weights=False`` returns the untrained network. ``input_shape`` (C, H, W)
    rebuilds it for another input size (weights load only where their shapes still fit).
    ``pareto=i`` picks point ``i`` of the Pareto front instead of a rank (the search keeps the
    weights of every front point). Inputs are float images scaled to [0, 1]; outputs are logits.

    Example:
        >>> net = load_best("runs/digits-tiny")
        >>> net(torch.rand(4, 1, 8, 8)).shape
        torch.Size([4, 10])
    """
    src = open_source(source, study_name=study_name)
    if pareto is not None:
        if rank != 0:
            raise UserError(f"pass rank={rank} or pareto={pareto}, not both.")
        rank = src.pareto_rank(pareto)
    spec = src.spec(rank)
    shape = tuple(input_shape) if input_shape is not None else src.input_shape
    if not weights:
        return build_for(spec, shape, src.num_classes,  # type: ignore[arg-type]
                         searched_on=src.input_shape).to(device).eval()
    folder = src.checkpoint_for(rank, final=final)
    saved, saved_spec, _ = load_checkpoint(folder)
    if not same_network(saved_spec, spec):
        raise UserError(f"the checkpoint {folder} holds another architecture than trial "
                        f"{src.trial(rank).number} of {src.describe()}; the run directory and "
                        "the study do not belong together.")
    # The saved spec: the model handed over may average flips or an ensemble's members.
    model = build_for(saved_spec, shape, src.num_classes,  # type: ignore[arg-type]
                      searched_on=src.input_shape)
    try:
        model.load_state_dict(saved.state_dict())
    except RuntimeError:
        raise UserError(f"the weights in {folder} were trained for input {src.input_shape} and "
                        f"do not fit input {shape} (a flatten head's size depends on the "
                        "input). Use weights=False, or retrain for that input.") from None
    return model.to(device).eval()


def same_network(saved: ArchSpec, trial: ArchSpec) -> bool:
    """Whether a checkpoint's spec is ``trial``'s network: the same blocks and head, apart from
    what the model handed over adds (flip averaging, ensemble members)."""
    def plain(spec: ArchSpec) -> tuple[Any, ...]:
        return spec.blocks, replace(spec.head, tta="none")

    return plain(saved.lead) == plain(trial.lead)


def top_architectures(source: Source, k: int = 5, *,
                      study_name: str | None = None) -> list[RankedArchitecture]:
    """The ``k`` best architectures (spec, val_acc, params, FLOPs, layer plan), best first.

    Empty when no trial has completed yet.

    Example:
        >>> best = top_architectures("runs/digits-tiny", k=3)[0]
        >>> print(best.trial, best.val_acc, best.params, best.spec.depth)
        10 0.9583 10426 1
    """
    from automl_cnn.results import top_from_study

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UserError(f"k must be a whole number >= 1, but got {k!r}.")
    return top_from_study(open_source(source, study_name=study_name).study, k)


__all__ = ["RunSource", "build_for", "latest_run_dir", "load_best", "open_source",
           "top_architectures", "without_password"]
