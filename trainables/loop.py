"""The inner loops: one training epoch, evaluation, and the teachers' outputs a hop distils from."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import ContextManager, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainables.data import DataBundle, Split, iterate_batches
from trainables.methods import KDMethod

EVAL_BATCH = 1024


def autocast_for(device: torch.device) -> ContextManager[object]:
    """bf16 autocast on GPUs (no loss scaling needed); full precision on CPU, where it keeps runs bit-exact."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def predict_logits(model: nn.Module, split: Split, data: DataBundle) -> Tensor:
    was_training = model.training
    model.eval()
    device = split.x.device
    chunks = []
    for x, _, _ in iterate_batches(split, EVAL_BATCH, shuffle=False, generator=None, mean=data.mean, std=data.std):
        with autocast_for(device):
            chunks.append(model(x).float())
    model.train(was_training)
    return torch.cat(chunks)


def accuracy_and_loss(logits: Tensor, targets: Tensor) -> tuple[float, float]:
    accuracy = (logits.argmax(1) == targets).float().mean().item()
    return accuracy, F.cross_entropy(logits, targets).item()


@dataclass
class Counters:
    """What a hop computed: FLOPs, upper-model forward passes (in samples) and KL terms."""

    flops: int = 0
    upper_forward_samples: int = 0
    kl_terms: int = 0


class TeacherOutputs:
    """The logits of a hop's teachers. Frozen teachers on unaugmented inputs always give the same logits, so they
    are computed once per split instead of once per epoch; with augmentation they are computed per batch."""

    def __init__(self, teachers: list[nn.Module], flops: list[int], data: DataBundle, counters: Counters,
                 per_batch: bool) -> None:
        self.teachers, self.flops, self.data, self.counters = teachers, flops, data, counters
        self.per_batch = per_batch
        self._cache: dict[Split, Tensor] = {}  # splits hash by identity

    def for_split(self, split: Split) -> Tensor:
        """(K, N, C) logits of every teacher on a whole split."""
        if split not in self._cache:
            self._cache[split] = torch.stack([predict_logits(t, split, self.data) for t in self.teachers])
            self._count(range(len(self.teachers)), len(split))
        return self._cache[split]

    def for_batch(self, x: Tensor, idx: Tensor, active: list[int]) -> Tensor:
        """(A, B, C) logits of the active teachers on one training batch."""
        if not self.per_batch:
            return self.for_split(self.data.train)[active][:, idx]
        with torch.no_grad(), autocast_for(x.device):
            logits = torch.stack([self.teachers[k](x).float() for k in active])
        self._count(active, len(x))
        return logits

    def _count(self, teachers: Iterable[int], samples: int) -> None:
        for k in teachers:
            self.counters.flops += self.flops[k] * samples
            self.counters.upper_forward_samples += samples


@dataclass
class EpochStats:
    terms: dict[str, float] = field(default_factory=dict)

    @property
    def loss(self) -> float:
        return sum(self.terms.values())


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, data: DataBundle, method: KDMethod,
                teachers: TeacherOutputs, *, batch_size: int, augment: bool, generator: torch.Generator,
                model_flops: int, counters: Counters) -> EpochStats:
    model.train()
    device = data.train.x.device
    sums: dict[str, Tensor] = defaultdict(lambda: torch.zeros((), device=device))
    seen = 0
    batches = iterate_batches(data.train, batch_size, shuffle=True, generator=generator, mean=data.mean,
                              std=data.std, augment=augment)
    for x, y, idx in batches:
        active = method.active_teachers(generator)
        teacher_logits = teachers.for_batch(x, idx, active) if active else x.new_empty(0)
        with autocast_for(device):
            logits = model(x)
        terms = method.loss(logits, teacher_logits, y)
        optimizer.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        optimizer.step()
        # Accumulate on the device: a .item() per step would stall the GPU.
        for name, value in terms.items():
            sums[name] += value.detach() * len(y)
        seen += len(y)
        counters.kl_terms += method.kl_terms(len(active))
        counters.flops += 3 * model_flops * len(y)  # forward + backward ≈ 3 forwards
    return EpochStats({name: (total / seen).item() for name, total in sums.items()})
