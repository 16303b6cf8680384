"""A KD method = which upper models teach a hop × how their outputs are combined into one loss."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from trainables.config import ChainConfig

TeacherSelection = Literal["none", "previous", "all_above"]


class KDMethod(ABC):
    """One hop's teaching. Teachers arrive as logits (K, B, C) in the order the hop's teacher list gives."""

    name: ClassVar[str]
    teachers: ClassVar[TeacherSelection]

    def __init__(self, cfg: ChainConfig, num_teachers: int) -> None:
        self.cfg = cfg
        self.num_teachers = num_teachers

    @classmethod
    def teacher_indices(cls, hop: int) -> list[int]:
        """Indices (into the chain, top first) of the models that teach hop `hop`."""
        if cls.teachers == "none" or hop == 0:
            return []
        return [hop - 1] if cls.teachers == "previous" else list(range(hop))

    @property
    def fits_on_validation(self) -> bool:
        """Whether `fit` needs the teachers' outputs on the validation split (a forward pass each)."""
        return False

    def fit(self, teacher_logits: Tensor, targets: Tensor) -> None:
        """Prepares on the validation split before the hop trains; most methods need nothing."""

    def active_teachers(self, generator: torch.Generator) -> list[int]:
        """Which teachers take part in the next mini-batch (all, except for stochastic methods)."""
        return list(range(self.num_teachers))

    @abstractmethod
    def loss(self, student_logits: Tensor, teacher_logits: Tensor, targets: Tensor) -> dict[str, Tensor]:
        """Named loss terms whose sum is minimised; `teacher_logits` holds the active teachers only."""

    def kl_terms(self, active: int) -> int:
        """KL terms one step computes with `active` teachers: one for a single (pseudo-)teacher."""
        return 1

    def learned_weights(self) -> list[float] | None:
        return None


class LabelsOnly(KDMethod):
    """Cross-entropy on the true labels: how the teacher, and the `nokd` student, learn."""

    name = "labels"
    teachers = "none"

    def loss(self, student_logits: Tensor, teacher_logits: Tensor, targets: Tensor) -> dict[str, Tensor]:
        return {"ce": F.cross_entropy(student_logits.float(), targets)}

    def kl_terms(self, active: int) -> int:
        return 0


_METHODS: dict[str, type[KDMethod]] = {}


def register_method(name: str) -> Callable[[type[KDMethod]], type[KDMethod]]:
    def add(cls: type[KDMethod]) -> type[KDMethod]:
        cls.name = name
        _METHODS[name] = cls
        return cls

    return add


def method_class(name: str) -> type[KDMethod]:
    try:
        return _METHODS[name]
    except KeyError:
        raise ValueError(f"method: expected one of {', '.join(sorted(_METHODS))}, got {name!r}") from None


def available_methods() -> list[str]:
    return sorted(_METHODS)
