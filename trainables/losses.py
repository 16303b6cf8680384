"""Pure loss functions of knowledge distillation (Hinton et al. 2015) and of teacher ensembles.

Teachers are passed around as *log*-probabilities at temperature T: averaging in probability space then stays
a stable logsumexp, and `F.kl_div(..., log_target=True)` never takes the log of a zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def soft_log_probs(logits: Tensor, temperature: float) -> Tensor:
    return F.log_softmax(logits.float() / temperature, dim=-1)


def distillation_term(student_logits: Tensor, teacher_log_probs: Tensor, temperature: float,
                      reduction: str = "batchmean") -> Tensor:
    """T²·KL(p_T ‖ q_T), averaged over the batch.

    `batchmean` (our default) is the true KL per sample. The TAKD/DGKD reference code used `nn.KLDivLoss()`,
    whose default "mean" also divides by the class count, shrinking the KD term by 1/C; `reduction="mean"`
    reproduces it. T² keeps gradient sizes comparable across T.
    """
    student = soft_log_probs(student_logits, temperature)
    kl = F.kl_div(student, teacher_log_probs, reduction="batchmean", log_target=True)
    if reduction == "mean":  # written out: PyTorch has announced that its own "mean" will become "batchmean"
        kl = kl / student.shape[-1]
    return temperature**2 * kl


def kd_loss(student_logits: Tensor, teacher_log_probs: Tensor, targets: Tensor,
            alpha: float, temperature: float, reduction: str = "batchmean") -> dict[str, Tensor]:
    """(1-α)·CE(q, y) + α·T²·KL(p_T ‖ q_T), as named terms whose sum is the loss."""
    return {
        "ce": (1 - alpha) * F.cross_entropy(student_logits.float(), targets),
        "kd": alpha * distillation_term(student_logits, teacher_log_probs, temperature, reduction),
    }


def ensemble_log_probs(teacher_logits: Tensor, weights: Tensor, temperature: float, space: str) -> Tensor:
    """The pseudo-teacher's log-probabilities at temperature T.

    teacher_logits: (K, B, C). weights: (K,) shared by every sample, or (B, K) per sample; rows sum to 1.
    space="prob" mixes softened probabilities, Σ_k w_k·softmax(z_k/T); space="logit" softens the mixed logits,
    softmax(Σ_k w_k·z_k / T) — a sharper, geometric-mean-like teacher.
    """
    per_sample = weights if weights.dim() == 2 else weights.unsqueeze(0).expand(teacher_logits.shape[1], -1)
    mix = per_sample.t().unsqueeze(-1).to(teacher_logits.dtype)  # (K, B, 1)
    if space == "logit":
        return soft_log_probs((mix * teacher_logits).sum(0), temperature)
    if space == "prob":
        log_weights = torch.log(mix.float().clamp_min(torch.finfo(torch.float32).tiny))
        return torch.logsumexp(log_weights + soft_log_probs(teacher_logits, temperature), dim=0)
    raise ValueError(f"space: expected prob or logit, got {space!r}")


def confidence_weights(teacher_logits: Tensor, targets: Tensor) -> Tensor:
    """Per-sample weights (B, K) = softmax_k(−CE_k): a teacher counts more where it is right (CA-MKD, Zhang 2022)."""
    k, b, c = teacher_logits.shape
    ce = F.cross_entropy(teacher_logits.float().reshape(k * b, c), targets.repeat(k), reduction="none")
    return torch.softmax(-ce.reshape(k, b).t(), dim=1)


def ensemble_nll(teacher_logits: Tensor, weights: Tensor, targets: Tensor, temperature: float, space: str) -> Tensor:
    log_probs = ensemble_log_probs(teacher_logits, weights, temperature, space)
    return F.nll_loss(log_probs, targets)


def fit_ensemble_weights(teacher_logits: Tensor, targets: Tensor, temperature: float, space: str,
                         steps: int = 200) -> Tensor:
    """Stacking: softmax-parametrised weights over K teachers minimising the ensemble's NLL on held-out data.

    Fitted before the student trains, because weights trained jointly with the student collapse onto whichever
    teacher the student already imitates; on the fit hold-out (`ChainConfig.fit_size`), because the validation split
    selects epochs and ranks configurations and every upper model trained on the training split.
    """
    logits = teacher_logits.detach().float()
    raw = torch.zeros(logits.shape[0], device=logits.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([raw], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = ensemble_nll(logits, torch.softmax(raw, 0), targets, temperature, space)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    weights = torch.softmax(raw.detach(), 0)
    if not torch.isfinite(weights).all():
        return torch.full_like(weights, 1 / len(weights))
    return weights


def uniform_weights(count: int, device: torch.device | str = "cpu") -> Tensor:
    return torch.full((count,), 1.0 / count, device=device)
