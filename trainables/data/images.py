"""Normalisation of uint8 images: one rule for every split and every batch."""

from __future__ import annotations

import torch

_MIN_STD = 1e-6  # a constant channel has std 0; don't turn it into inf/nan


def _channel_tensor(values: tuple[float, ...], channels: int, name: str, device: torch.device) -> torch.Tensor:
    if len(values) != channels:
        raise ValueError(f"{name}: expected one value per channel ({channels}), got {len(values)}")
    return torch.tensor(values, dtype=torch.float32, device=device).view(1, channels, 1, 1)


def normalise(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...],
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(x / 255 − mean) / std per channel, computed in float32 and then cast to `dtype`: bf16 images equal what
    autocast would make of the float32 ones at the first conv, at half the memory."""
    channels = x.shape[1]
    mean_t = _channel_tensor(mean, channels, "mean", x.device)
    std_t = _channel_tensor(std, channels, "std", x.device).clamp_min(_MIN_STD)
    return (x.to(torch.float32).div_(255.0) - mean_t).div_(std_t).to(dtype)
