"""Ensemble KD: the upper models form one pseudo-teacher (mean, learned or confidence weights), one KL per step."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from torch import Tensor

from trainables.losses import confidence_weights, ensemble_log_probs, fit_ensemble_weights, kd_loss, uniform_weights
from trainables.methods.base import KDMethod, register_method
from trainables.methods.params import KD_PARAMS, Param

if TYPE_CHECKING:
    from trainables.config import ChainConfig

WEIGHTING = Param("weighting", str, "mean", "how teachers are weighted: mean, learned (stacking on the fit hold-out, "
                  "see fit_size) or confidence (per sample, from each teacher's loss on the true label)",
                  choices=("mean", "learned", "confidence"), distillation_only=True)
SPACE = Param("space", str, "prob", "average teachers' probabilities (prob) or logits (logit)",
              choices=("prob", "logit"), distillation_only=True)


@register_method
class EnsembleKD(KDMethod):
    name = "ensemble"
    order = 4
    teachers = "all_above"
    uses_tas = True
    params = (*KD_PARAMS, WEIGHTING, SPACE)

    def __init__(self, cfg: ChainConfig, num_teachers: int) -> None:
        super().__init__(cfg, num_teachers)
        self.weighting, self.space = cfg.param("weighting"), cfg.param("space")
        self._weights = uniform_weights(num_teachers)

    @classmethod
    def fits_on_fit_split(cls, params: Mapping[str, Any]) -> bool:
        # Stacking weights fitted on the validation split would favour `learned` on the very numbers that select
        # its epochs and rank it against `mean`; fitted on the training split, on images every upper model trained
        # on. So they are fitted on the fit hold-out, which neither trains nor selects.
        return params.get("weighting") == "learned"

    def fit(self, teacher_logits: Tensor, targets: Tensor) -> None:
        self._weights = fit_ensemble_weights(teacher_logits, targets, self.cfg.param("temperature"), self.space)

    def teacher_targets(self, teacher_logits: Tensor, targets: Tensor) -> Tensor:
        """One row: the pseudo-teacher's log-probabilities at T (its weights are fixed before the hop trains, and
        confidence weights depend on each sample's own label)."""
        weights = self._weights
        if self.weighting == "confidence":
            weights = confidence_weights(teacher_logits, targets)
        t = self.cfg.param("temperature")
        return ensemble_log_probs(teacher_logits, weights.to(teacher_logits.device), t, self.space).unsqueeze(0)

    def loss(self, student_logits: Tensor, teachers: Tensor, targets: Tensor, active: Tensor) -> dict[str, Tensor]:
        t, alpha = self.cfg.param("temperature"), self.cfg.param("alpha")
        return kd_loss(student_logits, teachers[0], targets, alpha, t, self.cfg.kl_reduction)

    def learned_weights(self) -> list[float] | None:
        if self.weighting != "learned":
            return None
        return [float(w) for w in self._weights.cpu()]

    @classmethod
    def title(cls, cfg: ChainConfig) -> str:
        return f"ensemble[{cfg.param('weighting')}/{cfg.param('space')}]"

    @classmethod
    def group(cls, cfg: ChainConfig) -> str:
        # The seed paper compares ensembles by how they weight the teachers: each weighting is its own group.
        return f"ensemble-{cfg.param('weighting')}"
