"""KD (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network"): one teacher, one student."""

from __future__ import annotations

from torch import Tensor

from trainables.losses import kd_loss, soft_log_probs
from trainables.methods.base import KDMethod, register_method


@register_method("kd")
class KD(KDMethod):
    teachers = "previous"

    def loss(self, student_logits: Tensor, teacher_logits: Tensor, targets: Tensor) -> dict[str, Tensor]:
        t = self.cfg.temperature
        return kd_loss(student_logits, soft_log_probs(teacher_logits[0], t), targets, self.cfg.alpha, t)
