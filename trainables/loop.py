"""The inner loops: one training epoch, evaluation, and the teachers' outputs a hop distils from."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainables.data import DataBundle, Split, iterate_batches
from trainables.device import autocast_for
from trainables.divergence import DivergenceGuard
from trainables.methods import KDMethod

EVAL_BATCH = 1024


@torch.no_grad()
def predict_logits(model: nn.Module, split: Split, data: DataBundle, precision: str) -> Tensor:
    was_training = model.training
    model.eval()
    device = split.x.device
    chunks = []
    for x, _, _ in iterate_batches(split, EVAL_BATCH, shuffle=False, generator=None, mean=data.mean, std=data.std):
        with autocast_for(device, precision):
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

    def __add__(self, other: Counters) -> Counters:
        return Counters(self.flops + other.flops, self.upper_forward_samples + other.upper_forward_samples,
                        self.kl_terms + other.kl_terms)


class TeacherOutputs:
    """The logits of a hop's teachers. Frozen teachers on unaugmented inputs always give the same logits, so they
    are computed once per split instead of once per epoch; with augmentation they are computed per batch."""

    def __init__(self, teachers: list[nn.Module], flops: list[int], data: DataBundle, per_batch: bool,
                 precision: str) -> None:
        self.teachers, self.flops, self.data = teachers, flops, data
        self.per_batch, self.precision = per_batch, precision
        self.counters = Counters()  # its own until a hop's training gives it the hop's (`report_to`)
        self._cache: dict[Split, Tensor] = {}  # splits hash by identity

    def for_split(self, split: Split) -> Tensor:
        """(K, N, C) logits of every teacher on a whole split."""
        if split not in self._cache:
            self._cache[split] = torch.stack([predict_logits(t, split, self.data, self.precision)
                                              for t in self.teachers])
            self._count(range(len(self.teachers)), len(split))
        return self._cache[split]

    def for_batch(self, x: Tensor, idx: Tensor, active: list[int]) -> Tensor:
        """(A, B, C) logits of the active teachers on one training batch."""
        if not self.per_batch:
            # The batch first: selecting the teachers first copies the whole (K, N, C) cache every step (~30 ms
            # at CIFAR-100 size, bench/teacher_lookup.py), the batch first copies only (K, B, C).
            return self.for_split(self.data.train).index_select(1, idx)[active]
        with torch.no_grad(), autocast_for(x.device, self.precision):
            logits = torch.stack([self.teachers[k](x).float() for k in active])
        self._count(active, len(x))
        return logits

    def report_to(self, counters: Counters) -> None:
        """From now on its teachers' forward passes count in `counters`."""
        self.counters = counters

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


@dataclass
class HopTraining:
    """What every epoch of one hop shares: the model and its optimiser, how it is taught, its random stream — and
    what training it has cost so far, its teachers' forward passes included."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    method: KDMethod
    teachers: TeacherOutputs
    generator: torch.Generator
    model_flops: int  # inference FLOPs per sample
    batch_size: int
    augment: bool
    precision: str
    guard: DivergenceGuard = field(default_factory=DivergenceGuard)
    counters: Counters = field(default_factory=Counters)

    def __post_init__(self) -> None:
        self.teachers.report_to(self.counters)


def fit_teaching(hop: HopTraining, split: Split) -> None:
    """Fits what the hop's method learns from its teachers before training (the learned ensemble's stacking
    weights), once; the teachers' forward passes on `split` count in the hop's cost."""
    hop.method.fit(hop.teachers.for_split(split), split.y)


def validate(hop: HopTraining, data: DataBundle) -> tuple[float, float]:
    """Accuracy and loss on the validation split; its forward pass counts in the hop's cost."""
    logits = predict_logits(hop.model, data.val, data, hop.precision)
    hop.counters.flops += hop.model_flops * len(data.val)
    return accuracy_and_loss(logits, data.val.y)


def train_epoch(hop: HopTraining, data: DataBundle) -> EpochStats:
    """One pass over the training split; raises Diverged (see `trainables.divergence`) when the loss blows up."""
    model, method = hop.model, hop.method
    model.train()
    device = data.train.x.device
    sums: dict[str, Tensor] = defaultdict(lambda: torch.zeros((), device=device))
    seen = 0
    batches = iterate_batches(data.train, hop.batch_size, shuffle=True, generator=hop.generator, mean=data.mean,
                              std=data.std, augment=hop.augment)
    for x, y, idx in batches:
        active = method.active_teachers(hop.generator)
        teacher_logits = hop.teachers.for_batch(x, idx, active) if active else x.new_empty(0)
        with autocast_for(device, hop.precision):
            logits = model(x)
        terms = method.loss(logits, teacher_logits, y)
        loss = sum(terms.values())
        hop.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        hop.optimizer.step()
        # Accumulate on the device: a .item() per step would stall the GPU.
        for name, value in terms.items():
            sums[name] += value.detach() * len(y)
        hop.guard.observe(loss.detach())
        seen += len(y)
        hop.counters.kl_terms += method.kl_terms(len(active))
        hop.counters.flops += 3 * hop.model_flops * len(y)  # forward + backward ≈ 3 forwards
    hop.guard.check()
    return EpochStats({name: (total / seen).item() for name, total in sums.items()})
