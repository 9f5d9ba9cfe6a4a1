"""Pick the training device: a GPU with bf16 mixed precision when there is one, else the CPU."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from automl_cnn.errors import UserError

DEVICE_CHOICES = ("auto", "cpu", "gpu", "cuda", "mps")


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

    def autocast(self) -> Any:
        """The autocast context of :attr:`precision` (Lightning's mixed flags on CUDA), for code
        that runs a training step outside Lightning; a no-op context elsewhere."""
        if not self.torch_device.startswith("cuda") or "mixed" not in self.precision:
            return nullcontext()
        dtype = torch.bfloat16 if self.precision.startswith("bf16") else torch.float16
        return torch.autocast("cuda", dtype=dtype)


def resolve_device(name: str = "auto") -> Device:
    """``auto``/``cpu``/``gpu``/``cuda[:N]``/``mps`` → a :class:`Device`.

    Example:
        >>> resolve_device("cpu")
        Device(torch_device='cpu', accelerator='cpu', precision='32-true')
    """
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
        return Device(f"cuda:{index}", "gpu", "bf16-mixed" if bf16 else "16-mixed", every)
    if base == "mps":
        if not torch.backends.mps.is_available():
            raise UserError("--device mps asks for Apple's GPU, which torch cannot see here.")
        return Device("mps", "mps", "32-true")
    return Device("cpu", "cpu", "32-true")
