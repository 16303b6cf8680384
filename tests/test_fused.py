"""Fused training of same-architecture plain CNNs (HFTA, Wang et al. 2021) is B independent models: one member is the
plain model bit for bit; four members follow four solo models; split members load into ordinary models."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainables.losses import kd_loss, soft_log_probs
from trainables.models import build_model
from trainables.models.fused import fuse, fused_sgd, split, stack_inputs, summed_member_losses
from trainables.typed import InputError

CLASSES, BATCH, STEPS = 10, 8, 20
SGD = {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4}
# Four members against four solo models: the largest absolute difference of any weight, BatchNorm statistic, logit
# or loss. Over 20 steps the comparison runs in float64 (measured: ≤ 1e-14). In fp32 the grouped convs and batched
# matmuls sum in another order than the solo kernels (≈ 1e-6 apart), which flips max-pool near-ties; a flipped
# window routes its gradient elsewhere (≈ 3e-3 on a conv's weight gradient, measured), so any two fp32 kernels,
# fused or not, part beyond 1e-5 within a few steps. In fp32, 1e-5 holds the forward pass (continuous in the weights).
ABS_TOLERANCE = 1e-5

# (arch, in_channels, image_size): plain2 on MNIST-sized inputs; plain7 has a hidden FC layer and four pools (16 -> 1).
SHAPES = [("plain2", 1, 28), ("plain7", 3, 16)]


def _model(arch: str, in_channels: int, image_size: int, init: str, seed: int,
           dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(arch, CLASSES, in_channels, image_size, 0.25, init).to(dtype)


def _labels_loss(logits: Tensor, targets: Tensor, teacher_log_probs: Tensor) -> Tensor:
    return F.cross_entropy(logits, targets)


def _kd_loss(logits: Tensor, targets: Tensor, teacher_log_probs: Tensor) -> Tensor:
    return sum(kd_loss(logits, teacher_log_probs, targets, alpha=0.7, temperature=4.0).values())


LOSSES = {"labels": _labels_loss, "kd": _kd_loss}


def _batches(member: int, in_channels: int, image_size: int,
             dtype: torch.dtype = torch.float32) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Member `member`'s own STEPS batches: images, labels and a teacher's log-probs at T = 4."""
    gen = torch.Generator().manual_seed(100 + member)
    return [(torch.randn(BATCH, in_channels, image_size, image_size, generator=gen, dtype=dtype),
             torch.randint(0, CLASSES, (BATCH,), generator=gen),
             soft_log_probs(3 * torch.randn(BATCH, CLASSES, generator=gen, dtype=dtype), 4.0).to(dtype))
            for _ in range(STEPS)]


def _train_solo(model: nn.Module, batches: list[tuple[Tensor, Tensor, Tensor]],
                loss: Callable[..., Tensor]) -> list[Tensor]:
    optimizer = torch.optim.SGD(model.parameters(), **SGD)
    losses = []
    for x, y, teacher in batches:
        value = loss(model(x), y, teacher)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        losses.append(value.detach())
    return losses


def _train_fused(models: list[nn.Module], member_batches: list[list[tuple[Tensor, Tensor, Tensor]]],
                 loss: Callable[..., Tensor]) -> tuple[list[dict[str, Tensor]], Tensor]:
    """Train the fused `models` on each member's own batches; the members' states and (steps, B) member losses."""
    fused = fuse(models)
    optimizer = fused_sgd(fused, **SGD)
    losses = []
    for step in zip(*member_batches):
        xs, ys, teachers = (list(parts) for parts in zip(*step))
        logits = fused(stack_inputs(xs))
        member_losses = torch.stack([loss(logits[b], ys[b], teachers[b]) for b in range(len(models))])
        total = summed_member_losses(loss, logits, torch.stack(ys), torch.stack(teachers))
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(member_losses.detach())
    return split(fused), torch.stack(losses)


@pytest.mark.parametrize("init", ["reference", "he"])
@pytest.mark.parametrize(("arch", "in_channels", "image_size"), SHAPES)
@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_one_member_is_the_plain_model_bit_for_bit(arch: str, in_channels: int, image_size: int, init: str,
                                                   loss_name: str) -> None:
    loss = LOSSES[loss_name]
    batches = _batches(0, in_channels, image_size)
    solo = _model(arch, in_channels, image_size, init, seed=0)
    with torch.no_grad():
        assert torch.equal(fuse([solo])(batches[0][0])[0], solo(batches[0][0]))
    (member,), fused_losses = _train_fused([solo], [batches], loss)  # fuse copies: `solo` is still untrained
    solo_losses = _train_solo(solo, batches, loss)
    assert torch.equal(fused_losses[:, 0], torch.stack(solo_losses))
    assert member.keys() == solo.state_dict().keys()
    for key, value in solo.state_dict().items():
        assert torch.equal(member[key], value), key


@pytest.mark.parametrize(("arch", "in_channels", "image_size", "init", "loss_name"),
                         [("plain2", 1, 28, "reference", "labels"), ("plain7", 3, 16, "he", "kd")])
def test_four_members_follow_four_solo_models(arch: str, in_channels: int, image_size: int, init: str,
                                              loss_name: str) -> None:
    loss, seeds = LOSSES[loss_name], range(4)
    member_batches = [_batches(seed, in_channels, image_size, torch.float64) for seed in seeds]
    solos = [_model(arch, in_channels, image_size, init, seed, torch.float64) for seed in seeds]
    members, fused_losses = _train_fused(solos, member_batches, loss)
    for b, (solo, batches) in enumerate(zip(solos, member_batches)):
        solo_losses = torch.stack(_train_solo(solo, batches, loss))
        torch.testing.assert_close(fused_losses[:, b], solo_losses, rtol=0, atol=ABS_TOLERANCE)
        for key, value in solo.state_dict().items():
            torch.testing.assert_close(members[b][key], value, rtol=0, atol=ABS_TOLERANCE, msg=key)
    # the members stayed apart: four seeds, four different models
    assert not torch.allclose(members[0]["features.0.weight"], members[1]["features.0.weight"])


@pytest.mark.parametrize("init", ["reference", "he"])
@pytest.mark.parametrize(("arch", "in_channels", "image_size"), SHAPES)
def test_four_members_forward_as_four_solo_models_in_fp32(arch: str, in_channels: int, image_size: int,
                                                          init: str) -> None:
    solos = [_model(arch, in_channels, image_size, init, seed) for seed in range(4)]
    xs = [_batches(seed, in_channels, image_size)[0][0] for seed in range(4)]
    fused = fuse(solos)
    with torch.no_grad():
        logits = fused(stack_inputs(xs))  # training mode: BatchNorm uses, and updates, each member's own statistics
        for b, (solo, x) in enumerate(zip(solos, xs)):
            torch.testing.assert_close(logits[b], solo(x), rtol=0, atol=ABS_TOLERANCE)
    for b, (solo, member) in enumerate(zip(solos, split(fused))):
        for key, value in solo.state_dict().items():
            torch.testing.assert_close(member[key], value, rtol=0, atol=ABS_TOLERANCE, msg=key)


@pytest.mark.parametrize("init", ["reference", "he"])
def test_split_members_load_into_ordinary_models(init: str) -> None:
    originals = [_model("plain4", 3, 32, init, seed) for seed in range(3)]
    for model in originals:  # BatchNorm statistics that are not the fresh ones, to see them carried
        model(torch.randn(BATCH, 3, 32, 32))
    x = torch.randn(BATCH, 3, 32, 32)
    fused = fuse(originals).eval()
    loaded = []
    for state in split(fused):
        model = build_model("plain4", CLASSES, 3, 32, 0.25, init)
        model.load_state_dict(state)  # strict: the same keys and shapes as an ordinary model
        loaded.append(model.eval())
    with torch.no_grad():
        fused_logits = fused(stack_inputs([x] * 3))
        for b, (original, model) in enumerate(zip(originals, loaded)):
            expected = original.eval()(x)
            assert torch.equal(model(x), expected)
            torch.testing.assert_close(fused_logits[b], expected, rtol=0, atol=ABS_TOLERANCE)
            for key, value in original.state_dict().items():
                assert torch.equal(model.state_dict()[key], value), key


def test_fusing_different_architectures_is_refused() -> None:
    with pytest.raises(InputError, match=r"^models: not one architecture"):
        fuse([_model("plain2", 3, 32, "reference", 0), _model("plain3", 3, 32, "reference", 0)])
    with pytest.raises(InputError, match=r"^models: not one architecture"):
        fuse([_model("plain2", 3, 32, "reference", 0), _model("plain2", 3, 32, "he", 0)])
    with pytest.raises(InputError, match=r"^models: expected PlainCNN models"):
        fuse([build_model("resnet8", CLASSES, 3, 32, 0.25)])
