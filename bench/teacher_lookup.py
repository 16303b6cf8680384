"""The cached teachers' logits of one training batch: picking the teachers from the whole cache, then the batch
(the old lookup), vs the batch, then the teachers (`TeacherOutputs.for_batch`), at CIFAR-100 size on CPU.

Goal: ≤ 1 ms per batch for the new lookup. The old one copied the whole (K, N, C) cache every step.
Run: `make bench` (or `python bench/teacher_lookup.py --reps 200`).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
from torch import Tensor, nn

from trainables.data import DataBundle, Split
from trainables.loop import TeacherOutputs

# CIFAR-100 with the default 10 % hold-out, four upper models (teacher and three TAs), batch 128.
TEACHERS, TRAIN, CLASSES, BATCH = 4, 45_000, 100, 128


def cached_outputs() -> TeacherOutputs:
    """A TeacherOutputs with its train-split cache filled. The teachers are linear maps of one-pixel images: the
    lookup depends only on the cache's shape, and these fill it in a fraction of a second."""
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (TRAIN, 3, 1, 1), dtype=torch.uint8, generator=generator)
    train = Split(x=pixels, y=torch.randint(0, CLASSES, (TRAIN,), generator=generator))
    data = DataBundle("cifar100-sized", train, train, train, train, CLASSES, 3, 1, (0.5,) * 3, (0.25,) * 3)
    torch.manual_seed(0)
    teachers = [nn.Sequential(nn.Flatten(), nn.Linear(3, CLASSES)).eval() for _ in range(TEACHERS)]
    outputs = TeacherOutputs(teachers, [0] * TEACHERS, data, per_batch=False, precision="fp32")
    outputs.for_split(train)
    return outputs


def old_lookup(outputs: TeacherOutputs, idx: Tensor, active: list[int]) -> Tensor:
    return outputs.for_split(outputs.data.train)[active][:, idx]


def new_lookup(outputs: TeacherOutputs, idx: Tensor, active: list[int]) -> Tensor:
    return outputs.for_batch(torch.empty(0), idx, active)


def per_batch_ms(lookup: Callable[[TeacherOutputs, Tensor, list[int]], Tensor], outputs: TeacherOutputs,
                 batches: list[tuple[Tensor, list[int]]]) -> float:
    started = time.perf_counter()
    for idx, active in batches:
        lookup(outputs, idx, active)
    return (time.perf_counter() - started) / len(batches) * 1e3


def draw_batches(reps: int) -> list[tuple[Tensor, list[int]]]:
    """Shuffled batches, half with every teacher and half with one dropped (DGKD's drop = 1)."""
    generator = torch.Generator().manual_seed(1)
    order = torch.randperm(TRAIN, generator=generator)
    return [(order[i * BATCH % (TRAIN - BATCH):][:BATCH], list(range(TEACHERS)) if i % 2 else [0, 1, 3])
            for i in range(reps)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=50, help="batches looked up per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    outputs, batches = cached_outputs(), draw_batches(args.reps)
    for idx, active in batches[:2]:
        assert torch.equal(old_lookup(outputs, idx, active), new_lookup(outputs, idx, active))
    old, new = [], []
    for _ in range(args.rounds):  # interleaved, so drift on a noisy machine hits both sides alike
        old.append(per_batch_ms(old_lookup, outputs, batches))
        new.append(per_batch_ms(new_lookup, outputs, batches))
    old_ms, new_ms = statistics.median(old), statistics.median(new)
    print(f"cache {TEACHERS}×{TRAIN:,}×{CLASSES} fp32, batch {BATCH}, threads={args.threads}, "
          f"{args.reps} batches × {args.rounds} rounds")
    print(f"teacher lookup per batch: old {old_ms:.3f} ms, new {new_ms:.4f} ms (goal ≤ 1 ms); "
          f"old/new = {old_ms / new_ms:.0f}")


if __name__ == "__main__":
    main()
