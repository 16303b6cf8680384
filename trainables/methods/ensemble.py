"""Ensemble KD: the upper models form one pseudo-teacher (mean, learned or confidence weights), one KL per step."""

from __future__ import annotations

from torch import Tensor

from trainables.config import ChainConfig
from trainables.losses import confidence_weights, ensemble_log_probs, fit_ensemble_weights, kd_loss, uniform_weights
from trainables.methods.base import KDMethod, register_method


@register_method("ensemble")
class EnsembleKD(KDMethod):
    teachers = "all_above"

    def __init__(self, cfg: ChainConfig, num_teachers: int) -> None:
        super().__init__(cfg, num_teachers)
        self._weights = uniform_weights(num_teachers)

    @property
    def fits_on_validation(self) -> bool:
        return self.cfg.weighting == "learned"

    def fit(self, teacher_logits: Tensor, targets: Tensor) -> None:
        self._weights = fit_ensemble_weights(teacher_logits, targets, self.cfg.temperature, self.cfg.space)

    def loss(self, student_logits: Tensor, teacher_logits: Tensor, targets: Tensor) -> dict[str, Tensor]:
        t = self.cfg.temperature
        weights = self._weights
        if self.cfg.weighting == "confidence":
            weights = confidence_weights(teacher_logits, targets)
        teacher = ensemble_log_probs(teacher_logits, weights.to(teacher_logits.device), t, self.cfg.space)
        return kd_loss(student_logits, teacher, targets, self.cfg.alpha, t)

    def learned_weights(self) -> list[float] | None:
        if self.cfg.weighting != "learned":
            return None
        return [float(w) for w in self._weights.cpu()]
