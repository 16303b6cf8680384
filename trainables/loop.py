"""The inner loops: one training epoch, evaluation, and the teachers' outputs a hop distils from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainables.data import DataBundle, Split, iterate_batches
from trainables.device import autocast_for, compute_dtype
from trainables.divergence import DivergenceGuard
from trainables.methods import KDMethod
from trainables.step import GraphedStep, TrainStep

EVAL_BATCH = 1024


@torch.no_grad()
def predict_logits(model: nn.Module, split: Split, data: DataBundle, precision: str) -> Tensor:
    was_training = model.training
    model.eval()
    device = split.x.device
    images = data.images(split, compute_dtype(device, precision))
    chunks = []
    for x, _, _ in iterate_batches(images, split.y, EVAL_BATCH, shuffle=False, generator=None):
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
    """The logits of a hop's teachers, counted in the hop's cost. Frozen teachers on unaugmented inputs always give
    the same logits, so a hop forwards them once per split it needs (`for_split`) instead of once per epoch; with
    augmentation they are forwarded per batch (`for_batch`)."""

    def __init__(self, teachers: list[nn.Module], flops: list[int], data: DataBundle, per_batch: bool,
                 precision: str) -> None:
        self.teachers, self.flops, self.data = teachers, flops, data
        self.per_batch, self.precision = per_batch, precision
        self.counters = Counters()  # its own until a hop's training gives it the hop's (`report_to`)

    def for_split(self, split: Split) -> Tensor:
        """(K, N, C) logits of every teacher on a whole split."""
        logits = torch.stack([predict_logits(t, split, self.data, self.precision) for t in self.teachers])
        self._count(range(len(self.teachers)), len(split))
        return logits

    def for_batch(self, x: Tensor, active: list[int]) -> Tensor:
        """(K, B, C) logits of the teachers on one training batch: the active ones forwarded, the others zeros
        (which the loss multiplies by zero)."""
        logits = x.new_zeros((len(self.teachers), len(x), self.data.num_classes), dtype=torch.float32)
        with torch.no_grad(), autocast_for(x.device, self.precision):
            for k in active:
                logits[k] = self.teachers[k](x).float()
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
    what training it has cost so far, its teachers' forward passes included. `graphs`: replay the step in a CUDA
    graph (CUDA only); `channels_last`: the model and its inputs in channels-last layout (faster convs on GPUs)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    method: KDMethod
    teachers: TeacherOutputs
    generator: torch.Generator
    model_flops: int  # inference FLOPs per sample
    batch_size: int
    augment: bool
    precision: str
    graphs: bool = False
    channels_last: bool = False
    guard: DivergenceGuard = field(default_factory=DivergenceGuard)
    counters: Counters = field(default_factory=Counters)
    _teacher_targets: Tensor | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.teachers.report_to(self.counters)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model.to(memory_format=memory_format)
        self.step: TrainStep | GraphedStep = TrainStep(self.model, self.optimizer, self.method, self.precision,
                                                       memory_format)
        if self.graphs:
            self.step = GraphedStep(self.step, self.batch_size)

    def teacher_targets(self, data: DataBundle) -> Tensor:
        """The method's `teacher_targets` on the whole training split, computed at the hop's first step."""
        if self._teacher_targets is None:
            self._teacher_targets = self.method.teacher_targets(self.teachers.for_split(data.train), data.train.y)
        return self._teacher_targets

    def batch_teachers(self, data: DataBundle, x: Tensor, y: Tensor, idx: Tensor, active: list[int]) -> Tensor:
        """The batch's rows of the method's teacher targets: gathered from the hop's, or made from the teachers'
        forward passes on the (augmented) batch."""
        if self.teachers.per_batch:
            return self.method.teacher_targets(self.teachers.for_batch(x, active), y)
        return self.teacher_targets(data).index_select(1, idx)


def fit_teaching(hop: HopTraining, split: Split) -> None:
    """Fits what the hop's method learns from its teachers before training (the learned ensemble's stacking
    weights), once; the teachers' forward passes on `split` count in the hop's cost."""
    hop.method.fit(hop.teachers.for_split(split), split.y)


def validate(hop: HopTraining, data: DataBundle) -> tuple[float, float]:
    """Accuracy and loss on the validation split; its forward pass counts in the hop's cost."""
    logits = predict_logits(hop.model, data.val, data, hop.precision)
    hop.counters.flops += hop.model_flops * len(data.val)
    return accuracy_and_loss(logits, data.val.y)


def draw_teachers(method: KDMethod, generator: torch.Generator) -> list[int]:
    """The teachers the next mini-batch learns from, drawn on the host from the hop's random stream (one place, where
    tests observe every draw)."""
    return method.active_teachers(generator)


def train_epoch(hop: HopTraining, data: DataBundle) -> EpochStats:
    """One pass over the training split; raises Diverged (see `trainables.divergence`) when the loss blows up."""
    method = hop.method
    hop.model.train()
    device = data.train.x.device
    images = data.images(data.train, compute_dtype(device, hop.precision))
    sums = torch.zeros(len(method.loss_terms), device=device)
    seen = 0
    batches = iterate_batches(images, data.train.y, hop.batch_size, shuffle=True, generator=hop.generator,
                              augment=hop.augment)
    for x, y, idx in batches:
        active = draw_teachers(method, hop.generator)
        mask = torch.zeros(method.num_teachers)
        mask[active] = 1.0
        teachers = hop.batch_teachers(data, x, y, idx, active) if method.num_teachers else x.new_empty(0)
        loss, terms = hop.step(x, y, teachers, mask.to(device, non_blocking=True))
        sums += terms * len(y)  # on the device: a .item() per step would stall the GPU
        hop.guard.observe(loss)
        seen += len(y)
        hop.counters.kl_terms += method.kl_terms(len(active))
        hop.counters.flops += 3 * hop.model_flops * len(y)  # forward + backward ≈ 3 forwards
    hop.guard.check()
    totals = (sums / seen).tolist()
    return EpochStats(dict(zip(method.loss_terms, totals)))
