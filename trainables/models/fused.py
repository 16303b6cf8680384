"""HFTA-style fused training (Wang et al., MLSys 2021): B plain CNNs of one architecture trained as one model.

On a GPU a small hop (plain2 at batch 128) leaves most of the device idle; fusing the same-architecture hops of B
concurrent trials into one model turns B small kernels into one wider one. The fused model is exactly B independent
models, arranged so that no member's numbers reach another's:
- input: the members' batches concatenated on channels, (N, B·C, H, W) (`stack_inputs`);
- convs: one grouped conv (groups=B), member b owns output channels [b·C', (b+1)·C') and sees only its own inputs;
- BatchNorm2d over B·C channels: statistics are per channel, so each member's stay its own;
- max-pools and ReLUs unchanged (per channel / per element);
- linears: one batched matmul over per-member weights; the output is (B, N, classes).

Every fused tensor is its members' tensors concatenated on dim 0 under the plain model's own state_dict key (a linear's
weight is (B·out, in), viewed as (B, out, in) in the forward), so `fuse` and `split` are one rule each and a split
member loads into a `build_model(...)` model — each hop keeps its own key in the hop store. Only
`num_batches_tracked` is shared: the members step together, so it is the same for all.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from trainables.typed import InputError

from .plain import PlainCNN

_SHARED_SUFFIX = "num_batches_tracked"  # a step counter, equal for members that step together


class MemberFlatten(nn.Module):
    """(N, B·C, H, W) -> (B, N, C·H·W): each member's features flattened as `nn.Flatten` flattens a solo model's."""

    def __init__(self, members: int) -> None:
        super().__init__()
        self.members = members

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], self.members, -1).transpose(0, 1)


class FusedLinear(nn.Module):
    """B linears as one batched matmul: (B, N, in) -> (B, N, out). Weight (B·out, in) and bias (B·out,) are the
    members' own stacked on dim 0, like every other fused tensor."""

    def __init__(self, members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.members, self.in_features, self.out_features = members, in_features, out_features
        self.weight = nn.Parameter(torch.empty(members * out_features, in_features))
        self.bias = nn.Parameter(torch.empty(members * out_features))

    def forward(self, x: Tensor) -> Tensor:
        if self.members == 1:  # F.linear is what a solo model runs: B = 1 stays bit-identical to it
            return F.linear(x, self.weight, self.bias)
        weight = self.weight.view(self.members, self.out_features, self.in_features)
        bias = self.bias.view(self.members, 1, self.out_features)
        return torch.baddbmm(bias, x, weight.transpose(1, 2))


def _fused_layer(layer: nn.Module, members: int) -> nn.Module:
    """The B-member counterpart of one layer of a PlainCNN (weights are loaded afterwards)."""
    if isinstance(layer, nn.Conv2d):
        return nn.Conv2d(members * layer.in_channels, members * layer.out_channels, layer.kernel_size,
                         stride=layer.stride, padding=layer.padding, bias=layer.bias is not None, groups=members)
    if isinstance(layer, nn.BatchNorm2d):
        return nn.BatchNorm2d(members * layer.num_features, eps=layer.eps, momentum=layer.momentum)
    if isinstance(layer, nn.Linear):
        return FusedLinear(members, layer.in_features, layer.out_features)
    if isinstance(layer, nn.Flatten):
        return MemberFlatten(members)
    if isinstance(layer, (nn.ReLU, nn.MaxPool2d)):
        return layer  # stateless and per channel
    raise InputError("models", "plain CNNs (conv, BatchNorm, ReLU, max-pool, linear layers)", type(layer).__name__)


class FusedPlainCNN(nn.Module):
    """B same-architecture PlainCNNs as one model: (N, B·C, H, W) -> (B, N, classes). Build it with `fuse`."""

    def __init__(self, template: PlainCNN, members: int) -> None:
        super().__init__()
        self.members = members
        self.spec = template.spec
        self.features = nn.Sequential(*(_fused_layer(layer, members) for layer in template.features))
        self.classifier = nn.Sequential(*(_fused_layer(layer, members) for layer in template.classifier))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def _check_same_architecture(models: list[nn.Module]) -> None:
    if not models:
        raise InputError("models", "at least one model", models)
    if not all(isinstance(m, PlainCNN) for m in models):
        raise InputError("models", "PlainCNN models", sorted({type(m).__name__ for m in models}))
    shapes = [{k: tuple(v.shape) for k, v in m.state_dict().items()} for m in models]
    if any(s != shapes[0] for s in shapes[1:]) or any(m.spec != models[0].spec for m in models[1:]):
        raise InputError("models", problem="not one architecture: spec, width, init or input shape differ")


def fuse(models: list[nn.Module]) -> FusedPlainCNN:
    """One fused model holding copies of `models`' weights and BatchNorm statistics (the models are not changed)."""
    _check_same_architecture(models)
    template = next(models[0].parameters())
    fused = FusedPlainCNN(models[0], len(models)).to(template.device, template.dtype)
    states = [m.state_dict() for m in models]
    fused.load_state_dict({key: value if key.endswith(_SHARED_SUFFIX) else torch.cat([s[key] for s in states])
                           for key, value in states[0].items()})
    return fused.train(models[0].training)


def split(fused: FusedPlainCNN) -> list[dict[str, Tensor]]:
    """The members' own state_dicts (fresh tensors), in `fuse`'s order; each loads into a `build_model(...)` model."""
    members: list[dict[str, Tensor]] = [{} for _ in range(fused.members)]
    for key, value in fused.state_dict().items():
        parts = [value] * fused.members if key.endswith(_SHARED_SUFFIX) else value.chunk(fused.members)
        for state, part in zip(members, parts):
            state[key] = part.clone()
    return members


def stack_inputs(batches: list[Tensor]) -> Tensor:
    """The members' (N, C, H, W) batches as the fused model's (N, B·C, H, W) input, member b on channels b·C…"""
    return torch.cat(batches, dim=1)


def summed_member_losses(loss: Callable[..., Tensor], logits: Tensor, *per_member: Tensor) -> Tensor:
    """Σ_b loss(logits[b], *(t[b] for t in per_member)): each member's loss on its own (N, classes) slice.

    Summed, not averaged: d(sum)/d(member b's weights) is exactly member b's own gradient, as a solo model would
    get it; a mean would scale every member's gradient by 1/B (and so its effective learning rate)."""
    losses = [loss(logits[b], *(t[b] for t in per_member)) for b in range(logits.shape[0])]
    return losses[0] if len(losses) == 1 else torch.stack(losses).sum()


def fused_sgd(fused: FusedPlainCNN, lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    """An ordinary SGD over the fused parameters: exactly B independent SGDs, one per member.

    Every SGD update is per element — p -= lr·(momentum·buf + grad + weight_decay·p), the momentum buffer one
    element per parameter element — and each element belongs to one member, so no member's update reads another's
    numbers. This holds because the members share lr, momentum and weight decay (one chain config); members with
    different ones, or anything that reduces over a whole tensor (gradient-norm clipping, LARS), would need splitting
    by member first."""
    return torch.optim.SGD(fused.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
