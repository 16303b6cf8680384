"""Everything that differs between CPU and CUDA, in one place, so CPU tests can reach every branch of it."""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch


def resolve_device(name: str) -> torch.device:
    """"auto" is the first GPU when there is one; anything else is taken as written ("cpu", "cuda:1")."""
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)


def configure_backends(device: torch.device) -> None:
    """Fixed input shapes: on CUDA let cuDNN pick the fastest kernels (bit-exactness is promised on CPU only)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def resolve_precision(device: torch.device, precision: str) -> str:
    """"fp32" or "bf16" as computed on `device`. "auto": bf16 on GPUs (no loss scaling needed), fp32 on CPU, where
    it keeps runs bit-exact on one machine."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def uses_bf16(device: torch.device, precision: str) -> bool:
    return resolve_precision(device, precision) == "bf16"


def autocast_for(device: torch.device, precision: str = "auto") -> ContextManager[object]:
    if uses_bf16(device, precision):
        # No cast cache: a CUDA graph cannot capture one, and each forward uses each weight once anyway.
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext()


def compute_dtype(device: torch.device, precision: str) -> torch.dtype:
    """The dtype the first layer computes in: what a split's normalised images are stored in."""
    return torch.bfloat16 if uses_bf16(device, precision) else torch.float32
