"""DGKD (Son et al., ICCV 2021, "Densely Guided Knowledge Distillation using Multiple Teacher Assistants")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from trainables.losses import distillation_term, soft_log_probs
from trainables.methods.base import KDMethod, register_method


@register_method("dgkd")
class DGKD(KDMethod):
    """(1-α)·CE + α·T²·Σ_k KL_k over all models above, with `drop` of them left out at random per mini-batch."""

    teachers = "all_above"

    def active_teachers(self, generator: torch.Generator) -> list[int]:
        # Upper hops have fewer teachers than the student; always keep at least one.
        drop = min(self.cfg.drop, self.num_teachers - 1)
        if drop == 0:
            return list(range(self.num_teachers))
        keep = torch.randperm(self.num_teachers, generator=generator)[: self.num_teachers - drop]
        return sorted(keep.tolist())

    def loss(self, student_logits: Tensor, teacher_logits: Tensor, targets: Tensor) -> dict[str, Tensor]:
        t, alpha = self.cfg.temperature, self.cfg.alpha
        kl_sum = sum(distillation_term(student_logits, soft_log_probs(z, t), t) for z in teacher_logits)
        return {"ce": (1 - alpha) * F.cross_entropy(student_logits.float(), targets), "kd": alpha * kl_sum}

    def kl_terms(self, active: int) -> int:
        return active
