"""The run directory's layout, in one place: every module names its files through
:class:`RunDir` rather than by literal file names.

Layout (``automl-cnn search --out RUN_DIR``)::

    config.json       the SearchConfig (also stored in the study)
    study.journal     the Optuna study, unless --storage names another
    space.yaml        a copy of the search space
    models/           trial-NNNN/ checkpoints of the best --keep trials
    summary.json      counts, best trial, test accuracy
    report.html       the offline Plotly report
    retrained/        trial-NNNN-seedS/ checkpoints from `automl-cnn retrain`
    final/            the winner fitted on train + validation after the search (+ history.json)

Example:
    >>> RunDir("runs/demo").trial_folder(7)
    PosixPath('runs/demo/models/trial-0007')
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from automl_cnn.errors import UserError

JOURNAL_PREFIX = "journal:"


@dataclass(frozen=True)
class RunDir:
    """A search's output folder (it may not exist yet)."""

    path: Path

    def __init__(self, path: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "path", Path(path))

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def journal(self) -> Path:
        return self.path / "study.journal"

    @property
    def space(self) -> Path:
        return self.path / "space.yaml"

    @property
    def models(self) -> Path:
        return self.path / "models"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def report(self) -> Path:
        return self.path / "report.html"

    @property
    def retrained(self) -> Path:
        return self.path / "retrained"

    @property
    def final(self) -> Path:
        """The final fit's checkpoint folder (``history.json`` beside the weights)."""
        return self.path / "final"

    @property
    def journal_url(self) -> str:
        """The default study storage: a journal file inside the run directory."""
        return f"{JOURNAL_PREFIX}{self.journal}"

    def storage_url(self, storage: str | None) -> str:
        """``storage`` when given, else :attr:`journal_url` (the default-storage rule)."""
        return storage or self.journal_url

    def write_settings(self, config_json: str, space_file: Path) -> None:
        """A search's ``config.json`` (written anew) and ``space.yaml`` (copied once)."""
        from automl_cnn.atomic import write_text_atomic

        self.path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.config, config_json)
        if not self.space.exists():
            shutil.copyfile(space_file, self.space)

    def trial_folder(self, number: int) -> Path:
        """Where trial ``number``'s kept checkpoint lives."""
        return self.models / f"trial-{number:04d}"

    def is_run_dir(self) -> bool:
        """Whether a search has written here (it holds ``config.json``)."""
        return self.config.is_file()




def latest_run_dir(root: Path | str = "runs") -> Path:
    """The most recently modified run directory under ``root`` (what the CLI uses by default)."""
    root = Path(root)
    runs = [p for p in root.glob("*") if RunDir(p).is_run_dir()] if root.is_dir() else []
    if not runs:
        raise UserError(f"no run directory given and none found under {str(root)!r} (looked for "
                        f"folders holding {RunDir(root).config.name}). Pass RUN_DIR, or "
                        "--storage URL.")

    def modified(p: Path) -> float:
        return max(f.stat().st_mtime for f in (p, *p.iterdir()))

    return max(runs, key=modified)


__all__ = ["JOURNAL_PREFIX", "RunDir", "latest_run_dir"]
