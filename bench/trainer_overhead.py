"""Our trainer's epochs vs a bare hand-written PyTorch loop, same model, data and batches: printed as ratios.

Goal: ≤ 1.10 for a labels-only hop. For a KD hop the bare loop runs the teacher on every batch, as the TAKD/DGKD
code does, while ours reuses the teacher's cached logits, so that ratio shows the saving.
Run: `make bench` (or `python bench/trainer_overhead.py --reps 5`).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from trainables.config import ChainConfig
from trainables.data import DataBundle, load_chain_data
from trainables.loop import HopTraining, TeacherOutputs, train_epoch
from trainables.models import build_model


def _model(arch: str, data: DataBundle, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(arch, data.num_classes, data.in_channels, data.image_size, 1.0)


def _sgd(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)


def bare_epochs(model: torch.nn.Module, data: DataBundle, teacher: torch.nn.Module | None, cfg: ChainConfig,
                epochs: int) -> None:
    optimizer = _sgd(model)
    model.train()
    for _ in range(epochs):
        _bare_epoch(model, optimizer, data, teacher, cfg)


def _bare_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, data: DataBundle,
                teacher: torch.nn.Module | None, cfg: ChainConfig) -> None:
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))
    t, alpha = cfg.param("temperature"), cfg.param("alpha")
    for start in range(0, len(order), cfg.batch_size):
        idx = order[start:start + cfg.batch_size]
        x = (data.train.x[idx].float() / 255 - mean) / std
        y = data.train.y[idx]
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        if teacher is not None:
            with torch.no_grad():
                soft = F.softmax(teacher(x) / t, 1)
            kl = F.kl_div(F.log_softmax(logits / t, 1), soft, reduction="batchmean")
            loss = (1 - alpha) * loss + alpha * t * t * kl
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def our_epochs(model: torch.nn.Module, data: DataBundle, teacher: torch.nn.Module | None, cfg: ChainConfig,
               epochs: int) -> None:
    teachers = [teacher] if teacher is not None else []
    outputs = TeacherOutputs(teachers, [0] * len(teachers), data, per_batch=False, precision="fp32")
    method = cfg.method_class.teaching(cfg, len(teachers))
    hop = HopTraining(model, _sgd(model), method, outputs, torch.Generator().manual_seed(0), 0, cfg.batch_size,
                      augment=False, precision="fp32")
    for _ in range(epochs):
        train_epoch(hop, data)


def timed(fn, *args) -> float:  # noqa: ANN001, ANN002
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def ratio(student: str, teacher_arch: str | None, data: DataBundle, cfg: ChainConfig, reps: int,
          epochs: int) -> float:
    teacher = _model(teacher_arch, data, 1).eval() if teacher_arch else None
    ours, bare = [], []
    for rep in range(reps):  # interleaved, so drift on a noisy machine hits both sides alike
        bare.append(timed(bare_epochs, _model(student, data, rep), data, teacher, cfg, epochs))
        ours.append(timed(our_epochs, _model(student, data, rep), data, teacher, cfg, epochs))
    return statistics.median(ours) / statistics.median(bare)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = ChainConfig(method="kd", teacher="plain10", student="plain4")
    data = load_chain_data(cfg)
    print(f"mnist5k train={len(data.train)} batch={cfg.batch_size} threads={args.threads} reps={args.reps}")
    print(f"labels-only hop (plain6), 1 epoch: ours/bare = {ratio('plain6', None, data, cfg, args.reps, 1):.3f}")
    for epochs in (1, 5):
        kd = ratio("plain4", "plain10", data, cfg, args.reps, epochs)
        print(f"KD hop plain10→plain4, {epochs} epoch(s), caching included: ours/bare = {kd:.3f}")


if __name__ == "__main__":
    main()
