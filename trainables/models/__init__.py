"""Model zoo for KD chains: TAKD plain CNNs (Mirzadeh et al. 2020) and CIFAR ResNets (He et al. 2016)."""

from __future__ import annotations

from trainables.plugins import import_all

from .cost import count_params, inference_flops
from .families import INITS, arch_name, available_archs, build_model, parse_arch

import_all(__name__, __path__)  # each family module (plain, resnet) registers its architectures

__all__ = [
    "INITS",
    "arch_name",
    "available_archs",
    "build_model",
    "count_params",
    "inference_flops",
    "parse_arch",
]
