"""Pick the training device and its precision: a GPU with bf16 mixed precision when there is
one, else the CPU, in bf16 mixed precision where the CPU computes bf16 natively.

A CPU with AVX-512 BF16 or AMX instructions runs a convolution's bf16 matrix products in
hardware: on this project's 2-core development machine (AMD EPYC, AVX-512 BF16) the default
space's baselines trained clutter at 1.23-1.88x the images/s of fp32 with the same test
accuracy (``benchmarks/bench_precision.py``, README). Without those instructions torch has no
native bf16 kernels to run, so ``--precision auto`` keeps fp32 there (not measured: no such
machine was at hand). The weights stay fp32 either way (autocast computes in bf16 and keeps
fp32 master weights): checkpoints, exports and test scores do not change kind.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from automl_cnn.config import PRECISIONS
from automl_cnn.errors import UserError

DEVICE_CHOICES = ("auto", "cpu", "gpu", "cuda", "mps")


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products in hardware (AVX-512 BF16 or AMX), as
    torch's own dispatch sees it."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


@dataclass(frozen=True)
class Device:
    """Where trials train, in both torch's and Lightning's words."""

    torch_device: str  # "cpu", "cuda:0", "mps"
    accelerator: str  # Lightning's accelerator name
    precision: str  # Lightning's precision flag
    all_gpus: bool = False  # "auto"/"gpu"/"cuda" with no index: --jobs may use every GPU

    @property
    def index(self) -> list[int] | int:
        return [torch.device(self.torch_device).index or 0] if self.accelerator == "gpu" else 1

    @property
    def mixed_on_cpu(self) -> bool:
        """Whether trials train in mixed precision on the CPU, where scoring (in fp32, as the
        model handed over runs) is slower against their timed speed
        (:func:`automl_cnn.runners.climb.scoring_seconds`)."""
        return self.accelerator == "cpu" and self.precision != "32-true"

    def autocast(self) -> Any:
        """The autocast context of :attr:`precision` (Lightning's mixed flags, on CUDA or the
        CPU), for code that runs a training step outside Lightning; a no-op context for fp32."""
        if "mixed" not in self.precision or self.accelerator not in ("gpu", "cpu"):
            return nullcontext()
        dtype = torch.bfloat16 if self.precision.startswith("bf16") else torch.float16
        return torch.autocast("cuda" if self.accelerator == "gpu" else "cpu", dtype=dtype)


def resolve_device(name: str = "auto", precision: str = "auto") -> Device:
    """``auto``/``cpu``/``gpu``/``cuda[:N]``/``mps`` and ``auto``/``32``/``bf16`` → a
    :class:`Device` (see :data:`automl_cnn.config.PRECISIONS`).

    Example:
        >>> resolve_device("cpu", "32")
        Device(torch_device='cpu', accelerator='cpu', precision='32-true', all_gpus=False)
        >>> resolve_device("cpu", "bf16").precision
        'bf16-mixed'
    """
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}. Valid: {', '.join(PRECISIONS)} "
                        "(auto: bf16 mixed precision where the device computes bf16 natively).")
    base = name.split(":")[0]
    if base not in DEVICE_CHOICES:
        raise UserError(f"unknown device {name!r}. Valid devices: {', '.join(DEVICE_CHOICES)} "
                        "(cuda:N picks a GPU by index).")
    cuda = torch.cuda.is_available()
    if base == "auto":
        base = "cuda" if cuda else "cpu"
    if base in ("gpu", "cuda"):
        if not cuda:
            raise UserError(f"--device {name} asks for a GPU, but torch sees no CUDA device "
                            "(torch.cuda.is_available() is False). Use --device cpu or auto.")
        index = int(name.split(":")[1]) if ":" in name else 0
        every = ":" not in name
        if index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: there are only {torch.cuda.device_count()} GPUs.")
        bf16 = torch.cuda.is_bf16_supported()
        if precision == "bf16" and not bf16:
            raise UserError(f"--precision bf16: GPU {index} "
                            f"({torch.cuda.get_device_name(index)}) has no bf16. Use "
                            "--precision auto (fp16 mixed precision there) or 32.")
        mixed = "bf16-mixed" if bf16 else "16-mixed"
        return Device(f"cuda:{index}", "gpu", "32-true" if precision == "32" else mixed, every)
    if base == "mps":
        if not torch.backends.mps.is_available():
            raise UserError("--device mps asks for Apple's GPU, which torch cannot see here.")
        if precision == "bf16":
            raise UserError("--precision bf16 is not supported on --device mps here; use "
                            "--precision auto or 32 (fp32).")
        return Device("mps", "mps", "32-true")
    bf16 = precision == "bf16" or (precision == "auto" and cpu_has_bf16())
    return Device("cpu", "cpu", "bf16-mixed" if bf16 else "32-true")
