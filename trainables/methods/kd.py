"""KD (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network"): one teacher, one student."""

from __future__ import annotations

from torch import Tensor

from trainables.losses import kd_loss
from trainables.methods.base import KDMethod, register_method
from trainables.methods.params import KD_PARAMS


@register_method
class KD(KDMethod):
    name = "kd"
    order = 1
    teachers = "previous"
    params = KD_PARAMS

    def loss(self, student_logits: Tensor, teachers: Tensor, targets: Tensor, active: Tensor) -> dict[str, Tensor]:
        t, alpha = self.cfg.param("temperature"), self.cfg.param("alpha")
        return kd_loss(student_logits, teachers[0], targets, alpha, t, self.cfg.kl_reduction)
