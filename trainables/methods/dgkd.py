"""DGKD (Son et al., ICCV 2021, "Densely Guided Knowledge Distillation using Multiple Teacher Assistants")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from trainables.losses import distillation_term
from trainables.methods.base import KDMethod, register_method
from trainables.methods.params import KD_PARAMS, Param
from trainables.typed import InputError

if TYPE_CHECKING:
    from trainables.config import ChainConfig

DROP = Param("drop", int, 0, "teachers left out at random per mini-batch (DGKD's stochastic teaching)",
             low=0, search=(0, 1), label="drop={}")


@register_method
class DGKD(KDMethod):
    """(1-α)·CE + α·T²·Σ_k KL_k over all models above, with `drop` of them left out at random per mini-batch."""

    name = "dgkd"
    order = 3
    teachers = "all_above"
    uses_tas = True
    params = (*KD_PARAMS, DROP)

    @classmethod
    def check(cls, cfg: ChainConfig) -> InputError | None:
        teachers = len(cfg.archs) - 1
        if cfg.param("drop") >= teachers:
            return InputError("drop", f"fewer than the student's {teachers} teacher(s)", cfg.param("drop"))
        return None

    @property
    def drop(self) -> int:
        # Upper hops have fewer teachers than the student; always keep at least one.
        return min(self.cfg.param("drop"), self.num_teachers - 1)

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "drop": self.drop}

    def active_teachers(self, generator: torch.Generator) -> list[int]:
        if self.drop == 0:
            return list(range(self.num_teachers))
        keep = torch.randperm(self.num_teachers, generator=generator)[: self.num_teachers - self.drop]
        return sorted(keep.tolist())

    def mean_active_teachers(self) -> float:
        return float(self.num_teachers - self.drop)

    def loss(self, student_logits: Tensor, teachers: Tensor, targets: Tensor, active: Tensor) -> dict[str, Tensor]:
        t, alpha = self.cfg.param("temperature"), self.cfg.param("alpha")
        reduction = self.cfg.kl_reduction
        # Every teacher's term, times 0 where it is left out: the sum is the kept terms' sum exactly (x + 0 = x),
        # and the step the same whichever teachers were drawn.
        kl_sum = sum(on * distillation_term(student_logits, log_probs, t, reduction)
                     for on, log_probs in zip(active, teachers))
        return {"ce": (1 - alpha) * F.cross_entropy(student_logits.float(), targets), "kd": alpha * kl_sum}

    def kl_terms(self, active: int) -> int:
        return active
