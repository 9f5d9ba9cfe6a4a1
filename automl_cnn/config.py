"""Search settings as one validated, serialisable value.

Every check on user input that can be made before training lives in :meth:`SearchConfig.check`,
so a bad flag fails fast with one clear paragraph and nothing trains.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from automl_cnn.errors import UserError
from automl_cnn.rundir import RunDir
from automl_cnn.strategies import PRUNERS, SAMPLERS

#: Objective name -> Optuna direction. Several objectives make a multi-objective study.
LADDERS = ("auto", "off")
TTA_MODES = ("auto", "off")  # see automl_cnn.final_fit.with_tta
#: --precision: auto (bf16 mixed where the device computes bf16 natively, else fp32), 32 (fp32
#: everywhere), bf16 (bf16 mixed; emulated, and slow, on a CPU without it). automl_cnn.device.
PRECISIONS = ("auto", "32", "bf16")
MAX_ENSEMBLE = 8  # --ensemble: each member is a final fit, and the model runs them all
OBJECTIVES = {"val_acc": "maximize", "params": "minimize", "flops": "minimize",
              "latency": "minimize"}  # latency: measured ms per forward on the latency device
#: Seeds numpy, torch and Lightning all accept (Lightning's ``seed_everything`` bound).
MAX_SEED = 2**32 - 1
#: Largest ``--image-size``: one 4096×4096 RGB image is 48 MiB as uint8 and 192 MiB as the
#: float input of a network, so a training batch of bigger ones fits no device.
#: In-memory sets have a tighter bound (``automl_cnn.data.registry.MAX_MEMORY_IMAGE_SIZE``).
MAX_IMAGE_SIZE = 4096


@dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a search; stored with the study so any process can run trials."""

    trials: int | None = 100
    timeout: float | None = None
    dataset: str = "digits"
    space: str = "default"
    sampler: str = "tpe"
    pruner: str = "median"
    storage: str | None = None  # None: a journal file inside the run directory
    study_name: str | None = None  # None: "<dataset>-<space>"
    seed: int = 0
    device: str = "auto"
    # auto: bf16 mixed precision on a GPU and on a CPU that computes bf16 natively (AVX-512
    # BF16, AMX), else fp32; 32: fp32; bf16: bf16 mixed (automl_cnn.device).
    precision: str = "auto"
    out: str | None = None  # None: runs/<study name>
    objectives: tuple[str, ...] = ("val_acc",)
    keep: int = 3  # weights kept for the best `keep` trials
    image_size: int | None = None  # None: the dataset's own size (a folder's most common)
    train_subset: int | None = None  # None: the whole training split; N: a balanced N
    mlflow: bool = True
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else MLflow's default
    experiment: str | None = None  # None: the study name
    model_name: str | None = None  # registry name; None: the study name
    # Liveness: seconds between a running trial's lease renewals (and Optuna's heartbeat on RDB
    # storages); a dead worker's trial is failed and retried 3 × this later (at once on its host).
    heartbeat: int = 60
    jobs: int | None = None  # trials at once (worker processes); None: auto (runners/parallel)
    final_share: float = 0.5  # of --timeout, for the final fit (automl_cnn.budget.FINAL_SHARE)
    # Retrain the winner on train + validation after the search; None: with --timeout only.
    final_fit: bool | None = None
    ladder: str = "auto"  # auto: a fidelity ladder when the budget needs one; off: never
    # The model users get scores each image and its mirror image (automl_cnn.final_fit.with_tta).
    tta: str = "auto"
    # The final model averages up to this many near-tied finalists (automl_cnn.finalists).
    ensemble: int = 3
    # Hard limits (automl_cnn.limits): an architecture over one is recorded, never trained.
    max_params: int | None = None
    max_flops: int | None = None
    max_latency_ms: float | None = None
    max_memory_mb: float | None = None  # peak inference memory (CPU: estimated from the plan)
    # Peak memory of one training step on the search's device (CUDA: measured; CPU: estimated).
    max_train_memory_mb: float | None = None
    latency_device: str = "auto"  # where latency is timed: auto (the search's device), cpu, cuda:N
    latency_threads: int = 1  # CPU threads while timing (a stated target, not the machine's)
    latency_batch: int = 1

    def __post_init__(self) -> None:
        # Accuracy is always the first objective: summaries, rankings and pruning read values[0].
        objectives = tuple(self.objectives)
        if "val_acc" in objectives:
            objectives = ("val_acc", *(o for o in objectives if o != "val_acc"))
        object.__setattr__(self, "objectives", objectives)

    # -- derived values ---------------------------------------------------------------------
    @property
    def resolved_study_name(self) -> str:
        if self.study_name:
            return self.study_name
        # mnist:/data/fashion -> mnist-fashion, npz:x/set.npz -> npz-set, folder:. -> folder
        kind, sep, where = self.dataset.partition(":")
        parts = [p for p in re.split(r"[\\/]+", where) if p not in ("", ".", "..")]
        data = f"{kind}-{Path(parts[-1]).stem}" if sep and parts else kind
        data = re.sub(r"[^A-Za-z0-9_.-]+", "-", data).strip("-")
        return f"{data}-{Path(self.space).stem}"

    @property
    def run_dir(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / self.resolved_study_name

    @property
    def storage_url(self) -> str:
        """The Optuna storage: given URL, or ``journal:<run_dir>/study.journal``."""
        return RunDir(self.run_dir).storage_url(self.storage)

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[o] for o in self.objectives]

    @property
    def fits_final(self) -> bool:
        """Whether the search ends with a final fit of its winner on train + validation: by
        default yes, unless several objectives and no time budget leave no single winner. On
        the 100-trial digits search the final model scored 98.6-99.4 % test on seeds 0-2,
        where the winner's own weights scored 98.1-99.2 % (README, benchmarks)."""
        if self.final_fit is not None:
            return self.final_fit
        return self.timeout is not None or not self.multi_objective

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    # -- validation -------------------------------------------------------------------------
    def check(self) -> SearchConfig:
        """Raise :class:`UserError` for the first bad setting; return self when all are fine."""
        if self.trials is not None and self.trials < 1:
            raise UserError(f"--trials must be at least 1, but got {self.trials}. "
                            "Ask for the number of trials to run, e.g. --trials 100.")
        if self.timeout is not None and self.timeout <= 0:
            raise UserError(f"--timeout must be a positive number of seconds, but got "
                            f"{self.timeout}. Leave it out to run until --trials are done.")
        _one_of("sampler", self.sampler, tuple(SAMPLERS))
        _one_of("pruner", self.pruner, tuple(PRUNERS))
        for objective in self.objectives:
            _one_of("objective", objective, tuple(OBJECTIVES))
        if "val_acc" not in self.objectives:
            raise UserError(f"--objective {','.join(self.objectives)} leaves out val_acc; "
                            "accuracy is always one of the objectives.")
        if self.multi_objective and self.pruner != "none":
            raise UserError(f"--pruner {self.pruner} cannot prune a multi-objective search "
                            f"({', '.join(self.objectives)}); Optuna prunes single-objective "
                            "studies only. Pass --pruner none.")
        if not isinstance(self.heartbeat, int) or self.heartbeat < 1:
            raise UserError(f"--heartbeat must be a whole number of seconds, at least 1, but got "
                            f"{self.heartbeat!r}. The default, 60, finds a dead worker on "
                            "another machine within 3 minutes.")
        if self.jobs is not None and (not isinstance(self.jobs, int) or self.jobs < 1):
            raise UserError(f"--jobs must be a positive whole number or auto, but got "
                            f"{self.jobs!r}. Leave it out (auto) to let the search choose.")
        if not 0.0 <= self.final_share < 1.0:
            raise UserError(f"--final-share must be at least 0 and below 1, but got "
                            f"{self.final_share}. It is the share of --timeout given to the "
                            "final fit, e.g. 0.5.")
        _one_of("ladder", self.ladder, LADDERS)
        _one_of("tta", self.tta, TTA_MODES)
        _one_of("precision", self.precision, PRECISIONS)
        if isinstance(self.ensemble, bool) or not isinstance(self.ensemble, int) or not (
                1 <= self.ensemble <= MAX_ENSEMBLE):
            raise UserError(f"--ensemble must be a whole number from 1 to {MAX_ENSEMBLE}, but got "
                            f"{self.ensemble!r}. It is how many near-tied finalists the final "
                            "model averages; 1 keeps the best alone.")
        if self.keep < 1:
            raise UserError(f"--keep must be at least 1, but got {self.keep}.")
        for flag, value in (("--image-size", self.image_size),
                            ("--train-subset", self.train_subset)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise UserError(f"{flag} must be a positive whole number, but got {value!r}. "
                                "Leave it out to use the dataset as it is.")
        if self.image_size is not None and self.image_size > MAX_IMAGE_SIZE:
            raise UserError(f"--image-size {self.image_size} is more than {MAX_IMAGE_SIZE}: "
                            "a training batch of such images fits no device. Ask for "
                            f"{MAX_IMAGE_SIZE} or less.")
        if not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise UserError(f"--seed must be a whole number from 0 to {MAX_SEED} (the range "
                            f"numpy and torch accept), but got {self.seed!r}.")
        _check_journal(self.storage)
        if self.storage:
            from automl_cnn.redact import require_password

            require_password(self.storage, where="--storage", fix=(
                "Put the password back in place of *** (or keep it in PGPASSWORD / ~/.pgpass "
                "and leave it out of the URL)."))
        _check_limits(self)
        return self

    @property
    def measures_latency(self) -> bool:
        """Latency is timed before training for the objective or for a latency limit."""
        return "latency" in self.objectives or self.max_latency_ms is not None

    # -- serialisation ----------------------------------------------------------------------
    def public(self) -> SearchConfig:
        """This config as it may be written or shown: URLs without their passwords. The real
        URLs live only in memory (and in what the user typed)."""
        from automl_cnn.redact import without_password

        return replace(self, storage=self.storage and without_password(self.storage),
                       tracking_uri=self.tracking_uri and without_password(self.tracking_uri))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        data = dict(data)
        data["objectives"] = tuple(data.get("objectives", ("val_acc",)))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def replace(self, **changes: Any) -> SearchConfig:
        return replace(self, **changes)


def _check_journal(storage: str | None) -> None:
    """``journal:PATH`` must name a file: empty or a folder fails here, not in Optuna."""
    if not storage or not storage.startswith("journal:"):
        return
    path = storage[len("journal:"):]
    if not path.strip():
        raise UserError(f"--storage {storage!r} names no file; write journal:PATH, e.g. "
                        "journal:runs/study.journal, or leave --storage out to keep the study "
                        "in the run directory.")
    if Path(path).is_dir():
        raise UserError(f"--storage {storage!r} names a folder; a journal storage is a file. "
                        f"Write journal:{path.rstrip('/')}/study.journal.")


def _check_limits(config: SearchConfig) -> None:
    for flag, value in (("--max-params", config.max_params), ("--max-flops", config.max_flops),
                        ("--max-latency-ms", config.max_latency_ms),
                        ("--max-memory-mb", config.max_memory_mb),
                        ("--max-train-memory-mb", config.max_train_memory_mb)):
        if value is not None and (isinstance(value, bool) or not value > 0):
            raise UserError(f"{flag} must be a positive number, but got {value!r}. Leave it "
                            "out for no limit.")
    for flag, count in (("--latency-threads", config.latency_threads),
                        ("--latency-batch", config.latency_batch)):
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise UserError(f"{flag} must be a whole number >= 1, but got {count!r}.")
    device = config.latency_device
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise UserError(f"--latency-device {device!r} is not a latency target. Use auto (the "
                        "search's device), cpu, cuda or cuda:N.")


def _one_of(what: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UserError(f"unknown {what} {value!r}. Valid {what}s: {', '.join(allowed)}.")
