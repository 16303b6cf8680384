"""Model zoo for KD chains: TAKD plain CNNs (Mirzadeh et al. 2020) and CIFAR ResNets (He et al. 2016)."""

from __future__ import annotations

# Importing the family modules registers them with the registry.
from . import plain as _plain  # noqa: F401
from . import resnet as _resnet  # noqa: F401
from .cost import count_params, inference_flops
from .registry import INITS, arch_name, available_archs, build_model, parse_arch

__all__ = [
    "INITS",
    "arch_name",
    "available_archs",
    "build_model",
    "count_params",
    "inference_flops",
    "parse_arch",
]
