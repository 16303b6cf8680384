"""Model size and inference cost, for comparing TAKD/DGKD chain members (Mirzadeh et al. 2020)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from trainables.typed import InputError


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters (shared tensors counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _probe_tensor_options(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    if tensor is None:
        return torch.device("cpu"), torch.get_default_dtype()
    dtype = tensor.dtype if tensor.is_floating_point() else torch.get_default_dtype()
    return tensor.device, dtype


def inference_flops(model: nn.Module, in_channels: int, image_size: int) -> int:
    """FLOPs of one sample's eval-mode forward pass, as counted by FlopCounterMode."""
    if in_channels < 1 or image_size < 1:
        raise InputError("in_channels/image_size", problem=f"expected >= 1, got {in_channels!r}/{image_size!r}")
    device, dtype = _probe_tensor_options(model)
    x = torch.zeros(1, in_channels, image_size, image_size, device=device, dtype=dtype)
    # Save per-module flags: callers may have frozen some submodules (e.g. BN) in eval mode.
    modes = {module: module.training for module in model.modules()}
    counter = FlopCounterMode(display=False)
    try:
        model.eval()
        with torch.no_grad(), counter:
            model(x)
    finally:
        for module, training in modes.items():
            module.training = training
    return int(counter.get_total_flops())
