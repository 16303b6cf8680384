"""A hop's training step, made capturable: a CUDA graph replays it, torch.compile traces it whole.

The models of a KD chain are small, so an eager step on a GPU is bound by its 100–200 kernel launches, not by
arithmetic. A step whose inputs are all tensors of fixed shapes, with no host sync and no data-dependent control flow,
can be captured once in a CUDA graph and replayed per batch for the cost of a few launches. So:
- the batch's images are gathered from the split's images normalised once (`DataBundle.images`);
- the teachers arrive as the rows of `KDMethod.teacher_targets` computed once per hop, and the teachers a stochastic
  method leaves out as a 0/1 mask drawn on the host (`KDMethod.active_teachers`);
- the loss terms are returned as one tensor, summed on the device; the divergence guard syncs outside the step, once
  per window of steps;
- SGD runs as one fused kernel on CUDA and as foreach kernels on the CPU (bit-identical there to the per-parameter
  loop; the fused CPU kernel is not).
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from trainables.device import autocast_for
from trainables.methods import KDMethod


def sgd(parameters: Iterable[nn.Parameter], lr: float, momentum: float, weight_decay: float,
        device: torch.device) -> torch.optim.SGD:
    """A hop's optimiser: fused on CUDA, foreach on the CPU."""
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay, **fast)


class TrainStep:
    """Forward, the method's loss, backward and the optimiser's step on one batch."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, method: KDMethod, precision: str,
                 memory_format: torch.memory_format = torch.contiguous_format) -> None:
        self.model, self.optimizer, self.method = model, optimizer, method
        self.precision, self.memory_format = precision, memory_format

    def losses(self, x: Tensor, y: Tensor, teachers: Tensor, active: Tensor) -> dict[str, Tensor]:
        """The method's named loss terms on the batch: the differentiable part of the step."""
        with autocast_for(x.device, self.precision):
            logits = self.model(x.contiguous(memory_format=self.memory_format))
        return self.method.loss(logits, teachers, y, active)

    def __call__(self, x: Tensor, y: Tensor, teachers: Tensor, active: Tensor) -> tuple[Tensor, Tensor]:
        """Trains on the batch; returns its loss and its loss terms (in the order `losses` names them)."""
        terms = self.losses(x, y, teachers, active)
        if tuple(terms) != self.method.loss_terms:
            raise ValueError(f"{self.method.name}: loss returned the terms {', '.join(terms)}, but loss_terms "
                             f"declares {', '.join(self.method.loss_terms)}")
        loss = sum(terms.values())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), torch.stack([term.detach() for term in terms.values()])


class GraphedStep:
    """A `TrainStep` captured in a CUDA graph and replayed for every full batch.

    Each batch is copied into fixed input buffers before the replay; the outputs are fixed buffers too, overwritten by
    the next replay (callers that keep them copy them). Capturing runs nothing, so the first `WARMUP` full batches
    train eagerly on a side stream, as CUDA graphs require (cuDNN's autotuning, the allocator, the optimiser's momentum
    buffers all settle there). The last, shorter batch of an epoch trains eagerly. The captured SGD kernel holds the lr
    as a constant, so a new lr (a schedule's next epoch) is captured anew.
    """

    WARMUP = 3

    def __init__(self, step: TrainStep, batch_size: int) -> None:
        self.step, self.batch_size = step, batch_size
        self._warm_steps = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self._captured_lrs: list[float] = []
        self._inputs: tuple[Tensor, ...] = ()
        self._outputs: tuple[Tensor, Tensor] | None = None

    def __call__(self, x: Tensor, y: Tensor, teachers: Tensor, active: Tensor) -> tuple[Tensor, Tensor]:
        if len(y) != self.batch_size:
            return self.step(x, y, teachers, active)
        if self._warm_steps < self.WARMUP:
            self._warm_steps += 1
            return self._on_side_stream(x, y, teachers, active)
        if self._graph is None or self._captured_lrs != self._lrs():
            self._capture(x, y, teachers, active)
        for buffer, value in zip(self._inputs, (x, y, teachers, active)):
            buffer.copy_(value, non_blocking=True)
        assert self._graph is not None and self._outputs is not None
        self._graph.replay()
        return self._outputs

    def _lrs(self) -> list[float]:
        return [group["lr"] for group in self.step.optimizer.param_groups]

    def _on_side_stream(self, *batch: Tensor) -> tuple[Tensor, Tensor]:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            outputs = self.step(*batch)
        torch.cuda.current_stream().wait_stream(side)
        return outputs

    def _capture(self, *batch: Tensor) -> None:
        self._graph = None  # the previous graph's memory goes before the new one is captured
        self._inputs = tuple(value.clone() for value in batch)
        self.step.optimizer.zero_grad(set_to_none=True)  # the gradients become the graph's own buffers
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._outputs = self.step(*self._inputs)
        self._graph, self._captured_lrs = graph, self._lrs()
