"""KD methods by name; importing this package registers every method."""

from __future__ import annotations

from trainables.config import ChainConfig
from trainables.methods import dgkd, ensemble, kd, nokd, takd  # noqa: F401  (registration by import)
from trainables.methods.base import KDMethod, LabelsOnly, available_methods, method_class, register_method

__all__ = ["KDMethod", "LabelsOnly", "available_methods", "method_class", "register_method", "teaching_for"]


def teaching_for(cfg: ChainConfig, num_teachers: int) -> KDMethod:
    """The loss a hop trains with. With one teacher every method reduces to plain KD, so it *is* plain KD:
    such hops are then interchangeable (and shareable through the model store) across methods."""
    if num_teachers == 0:
        return LabelsOnly(cfg, 0)
    if num_teachers == 1:
        return method_class("kd")(cfg, 1)
    return method_class(cfg.method)(cfg, num_teachers)
