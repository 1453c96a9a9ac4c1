"""Mixed precision: one object that knows the autocast dtype and, for fp16, the grad scaler.

``auto`` picks bf16 where the hardware runs it fast (CUDA with bf16, or a CPU whose oneDNN reports
bf16 support, e.g. AVX-512 BF16 / AMX) and fp32 elsewhere: on CPUs without it bf16 matmuls are
emulated and ~100x slower than fp32 (measured here: 0.3 vs 125 GFLOP/s).

``SSLVIT_AUTO_PRECISION=bf16|fp32`` forces what ``auto`` resolves to, whatever the hardware: the test
suite uses it (``pytest --auto-precision=bf16``) so a machine without bf16 proves the suite passes
where ``auto`` picks bf16, and the other way round. Explicit ``bf16`` / ``fp32`` settings are unaffected.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Optional

import torch

from ssl_vit.errors import SslvitError


def bf16_is_fast(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


AUTO_ENV = "SSLVIT_AUTO_PRECISION"


def auto_precision(device: torch.device) -> str:
    """What ``auto`` means on ``device``: ``$SSLVIT_AUTO_PRECISION`` when set, else bf16 where it is fast."""
    forced = os.environ.get(AUTO_ENV, "").strip().lower()
    if forced:
        if forced not in ("bf16", "fp32"):
            raise SslvitError(f"{AUTO_ENV}={forced!r} is not a precision; set it to bf16 or fp32, or unset it")
        return forced
    return "bf16" if bf16_is_fast(device) else "fp32"


def precision_name(name: str, device: torch.device) -> str:
    """What a ``train.precision`` setting runs as on ``device`` (``auto`` resolved), without validating it."""
    return auto_precision(device) if name == "auto" else name


@dataclass
class Precision:
    name: str  # bf16 | fp16 | fp32
    device: torch.device
    scaler: Optional[torch.amp.GradScaler] = None

    @classmethod
    def resolve(cls, name: str, device: torch.device) -> "Precision":
        name = precision_name(name, device)
        if name == "fp16" and device.type != "cuda":
            raise SslvitError("fp16 needs a CUDA device; use --set train.precision=bf16 or fp32 on CPU")
        if name not in ("bf16", "fp16", "fp32"):
            raise SslvitError(f"unknown precision '{name}'; use auto, bf16, fp16 or fp32")
        scaler = torch.amp.GradScaler("cuda") if name == "fp16" else None
        return cls(name, device, scaler)

    @property
    def dtype(self) -> Optional[torch.dtype]:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)


def autocast(precision: Optional[Precision]):
    """``precision``'s autocast context; None (fp32) runs without one."""
    return contextlib.nullcontext() if precision is None else precision.autocast()


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SslvitError(f"device '{name}' requested but CUDA is not available; use --set train.device=cpu")
    return dev
