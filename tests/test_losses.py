"""Loss maths against hand-computed values and the DGKD ↔ mean-ensemble identity."""

from __future__ import annotations

import math

import pytest
import torch

from trainables.config import ChainConfig
from trainables.losses import (confidence_weights, distillation_term, ensemble_log_probs, fit_ensemble_weights,
                               kd_loss, soft_log_probs)
from trainables.methods import KDMethod, method_class

STUDENT = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
TEACHER = torch.tensor([[2.0, 0.0, 1.0], [1.0, 1.0, 4.0]])
TARGETS = torch.tensor([1, 2])
# By hand (math.exp / math.log on the numbers above, T = 2):
# CE(q, y) averaged over the 2 samples, and KL(p_T ‖ q_T) summed over classes, averaged over samples.
HAND_CE = 0.26512634393268697
HAND_KL_T2 = 0.10489915160152195


def taught(method: KDMethod, student: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor
           ) -> dict[str, torch.Tensor]:
    """The method's loss terms with every teacher active, as a training step computes them."""
    teachers = method.teacher_targets(teacher_logits, targets)
    return method.loss(student, teachers, targets, torch.ones(method.num_teachers))


@pytest.mark.parametrize("alpha, expected", [(0.0, 0.26512634393268697), (0.5, 0.3423614751693874),
                                             (1.0, 0.4195966064060878)])
def test_kd_loss_matches_hand_computed_values(alpha: float, expected: float) -> None:
    terms = kd_loss(STUDENT, soft_log_probs(TEACHER, 2.0), TARGETS, alpha, 2.0)
    assert terms["ce"].item() == pytest.approx((1 - alpha) * HAND_CE, abs=1e-6)
    assert terms["kd"].item() == pytest.approx(alpha * 4.0 * HAND_KL_T2, abs=1e-6)
    assert sum(terms.values()).item() == pytest.approx(expected, abs=1e-6)


def test_kl_is_batchmean_not_classmean() -> None:
    # The TAKD/DGKD code's reduction="mean" would give a third of this (3 classes).
    term = distillation_term(STUDENT, soft_log_probs(TEACHER, 2.0), 2.0).item()
    assert term == pytest.approx(4.0 * HAND_KL_T2, abs=1e-6)


def test_reference_reduction_divides_the_kl_by_the_class_count() -> None:
    term = distillation_term(STUDENT, soft_log_probs(TEACHER, 2.0), 2.0, reduction="mean").item()
    assert term == pytest.approx(4.0 * HAND_KL_T2 / 3, abs=1e-6)


@pytest.mark.parametrize("method, params", [("kd", {}), ("dgkd", {}), ("ensemble", {"weighting": "learned"})])
def test_every_method_honours_the_chain_kl_reduction(method: str, params: dict) -> None:
    depths = () if method == "kd" else (6,)
    terms = {}
    for reduction in ("batchmean", "mean"):
        cfg = ChainConfig(method=method, ta_depths=depths, kl_reduction=reduction, params=params, fit_size=0.05)
        teaching = method_class(method)(cfg, 1 if method == "kd" else 2)
        teachers = TEACHER.unsqueeze(0).repeat(teaching.num_teachers, 1, 1)
        terms[reduction] = taught(teaching, STUDENT, teachers, TARGETS)["kd"].item()
    assert terms["mean"] == pytest.approx(terms["batchmean"] / 3, rel=1e-5)


def test_kd_term_vanishes_when_student_equals_teacher() -> None:
    assert distillation_term(TEACHER, soft_log_probs(TEACHER, 3.0), 3.0).item() == pytest.approx(0.0, abs=1e-7)


def _probs(logits: list[float], t: float) -> list[float]:
    e = [math.exp(v / t) for v in logits]
    return [v / sum(e) for v in e]


def test_ensemble_prob_and_logit_spaces_by_hand() -> None:
    a, b, t = [2.0, 0.0, 1.0], [0.0, 3.0, 1.0], 2.0
    logits = torch.tensor([[a], [b]])
    weights = torch.tensor([0.25, 0.75])
    prob_mix = [0.25 * p + 0.75 * q for p, q in zip(_probs(a, t), _probs(b, t))]
    logit_mix = _probs([0.25 * x + 0.75 * y for x, y in zip(a, b)], t)
    got_prob = ensemble_log_probs(logits, weights, t, "prob").exp()[0].tolist()
    got_logit = ensemble_log_probs(logits, weights, t, "logit").exp()[0].tolist()
    assert got_prob == pytest.approx(prob_mix, abs=1e-6)
    assert got_logit == pytest.approx(logit_mix, abs=1e-6)


def test_confidence_weights_follow_true_label_probability() -> None:
    logits = torch.tensor([[[5.0, 0.0]], [[0.0, 5.0]]])  # teacher 0 says class 0, teacher 1 says class 1
    weights = confidence_weights(logits, torch.tensor([0]))
    p_right, p_wrong = _probs([5.0, 0.0], 1.0)[0], _probs([0.0, 5.0], 1.0)[0]
    assert weights[0].tolist() == pytest.approx([p_right / (p_right + p_wrong), p_wrong / (p_right + p_wrong)])


def _student_grad(loss_fn, student: torch.Tensor) -> torch.Tensor:
    s = student.clone().requires_grad_(True)
    sum(loss_fn(s).values()).backward()
    return s.grad


@pytest.mark.parametrize("alpha", [0.3, 1.0])
def test_dgkd_without_drop_is_k_times_the_mean_ensemble(alpha: float) -> None:
    """Σ_k KL(p_k‖q) = K·KL(p̄‖q) + const: the DGKD gradient is the mean-ensemble gradient with KD weight ×K."""
    torch.manual_seed(0)
    k, t = 3, 4.0
    teachers, student, targets = torch.randn(k, 16, 10) * 3, torch.randn(16, 10), torch.randint(0, 10, (16,))
    dgkd_cfg = ChainConfig(method="dgkd", ta_depths=(8, 6), params={"alpha": alpha, "temperature": t})
    ens_cfg = ChainConfig(method="ensemble", ta_depths=(8, 6), params={"alpha": alpha, "temperature": t})
    dgkd = method_class("dgkd")(dgkd_cfg, k)
    ensemble = method_class("ensemble")(ens_cfg, k)

    def dgkd_kd(s: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"kd": taught(dgkd, s, teachers, targets)["kd"]}

    def ensemble_kd(s: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"kd": taught(ensemble, s, teachers, targets)["kd"]}

    torch.testing.assert_close(_student_grad(dgkd_kd, student), k * _student_grad(ensemble_kd, student),
                               atol=1e-6, rtol=0)
    ce_grad = _student_grad(lambda s: {"ce": taught(ensemble, s, teachers, targets)["ce"]}, student)
    expected_full = ce_grad + k * _student_grad(ensemble_kd, student)
    torch.testing.assert_close(_student_grad(lambda s: taught(dgkd, s, teachers, targets), student), expected_full,
                               atol=1e-6, rtol=0)


def test_dgkd_drops_exactly_drop_teachers_and_keeps_at_least_one() -> None:
    cfg = ChainConfig(method="dgkd", ta_depths=(8, 6, 4), params={"drop": 2})
    generator = torch.Generator().manual_seed(0)
    student_hop = method_class("dgkd")(cfg, 4)
    seen = {tuple(student_hop.active_teachers(generator)) for _ in range(200)}
    assert all(len(active) == 2 for active in seen) and len(seen) == 6  # every pair of the 4 teachers
    first_ta_hop = method_class("dgkd")(cfg, 2)
    assert all(len(first_ta_hop.active_teachers(generator)) == 1 for _ in range(20))


@pytest.mark.parametrize("space", ["prob", "logit"])
def test_learned_weights_move_to_the_informative_teacher(space: str) -> None:
    torch.manual_seed(0)
    n, c = 400, 10
    targets = torch.randint(0, c, (n,))
    informative = torch.nn.functional.one_hot(targets, c).float() * 4 + torch.randn(n, c) * 0.5
    noise = torch.randn(n, c) * 2
    weights = fit_ensemble_weights(torch.stack([noise, informative]), targets, 2.0, space)
    assert (weights >= 0).all()
    assert weights.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert weights[1] > 0.9


def test_dgkd_leaving_a_teacher_out_is_its_term_times_zero() -> None:
    """The mask the step gets equals training on the kept teachers alone: loss and gradient bit for bit."""
    torch.manual_seed(1)
    cfg = ChainConfig(method="dgkd", ta_depths=(8, 6), params={"drop": 1, "temperature": 4.0, "alpha": 0.6})
    teachers, student, targets = torch.randn(3, 16, 10) * 3, torch.randn(16, 10), torch.randint(0, 10, (16,))
    three, two = method_class("dgkd")(cfg, 3), method_class("dgkd")(cfg, 2)
    masked = lambda s: three.loss(s, three.teacher_targets(teachers, targets), targets, torch.tensor([1.0, 0.0, 1.0]))
    kept = lambda s: two.loss(s, two.teacher_targets(teachers[[0, 2]], targets), targets, torch.ones(2))
    assert torch.equal(sum(masked(student).values()), sum(kept(student).values()))
    assert torch.equal(_student_grad(masked, student), _student_grad(kept, student))
