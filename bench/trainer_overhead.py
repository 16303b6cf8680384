"""Our trainer's epochs vs a bare hand-written PyTorch loop, same model, data and batches: printed as ratios.

Goal: ≤ 1.10 for a labels-only hop. For a KD hop the bare loop runs the teacher on every batch, as the TAKD/DGKD
code does, while ours reuses the teacher's cached logits, so that ratio shows the saving.

And what distilling from cached teachers costs our own loop (issue 18): a DGKD student epoch taught by four cached
teachers (plain10, 8, 6, 4; drop 1, the seed preset's) against a labels-only epoch of the same plain2 student, on
CIFAR-100-shaped data (5,000 synthetic 32×32×3 uint8 images, 100 classes, batch 128). The teachers' one-off forward
over the split is not timed, nor is each hop's first epoch (whatever a hop computes once); goal ≤ 1.10.
Run: `make bench` (or `python bench/trainer_overhead.py --reps 5`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from trainables.config import ChainConfig
from trainables.data import DataBundle, load_chain_data
from trainables.loop import HopTraining, TeacherOutputs, train_epoch
from trainables.models import build_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fidelity import synthetic_task  # noqa: E402  (the bench folder is not a package)

DGKD_TEACHERS = ("plain10", "plain8", "plain6", "plain4")
DGKD_GOAL = 1.10


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


def student_hop(cfg: ChainConfig, outputs: TeacherOutputs, data: DataBundle) -> HopTraining:
    """A fresh plain2 hop taught by `outputs`, its first epoch trained (untimed: what a hop computes once)."""
    method = cfg.method_class.teaching(cfg, len(outputs.teachers))
    model = _model(cfg.student, data, 0)
    hop = HopTraining(model, _sgd(model), method, outputs, torch.Generator().manual_seed(0), 0, cfg.batch_size,
                      augment=False, precision="fp32")
    train_epoch(hop, data)
    return hop


def dgkd_ratio(epochs: int) -> tuple[float, float, float, float]:
    """DGKD epoch / labels-only epoch of a plain2 student with four cached teachers: (ratio of the fastest epochs,
    ratio of the medians, the fastest epochs' seconds). Epochs alternate, so load from elsewhere hits both alike;
    on a shared machine the fastest epoch is the one least disturbed (others' load only ever adds time)."""
    data = synthetic_task(train=5000, test=500)
    cfg = ChainConfig(dataset="cifar100", method="dgkd", teacher=DGKD_TEACHERS[0],
                      ta_depths=tuple(int(a.removeprefix("plain")) for a in DGKD_TEACHERS[1:]), student="plain2",
                      params={"drop": 1})
    teachers = [_model(arch, data, 1).eval() for arch in DGKD_TEACHERS]
    cached = TeacherOutputs(teachers, [0] * len(teachers), data, per_batch=False, precision="fp32")
    cached.for_split(data.train)  # the one-off forward: never timed
    plain_hop = student_hop(cfg, TeacherOutputs([], [], data, per_batch=False, precision="fp32"), data)
    dgkd_hop = student_hop(cfg, cached, data)
    plain, dgkd = [], []
    for _ in range(epochs):
        plain.append(timed(train_epoch, plain_hop, data))
        dgkd.append(timed(train_epoch, dgkd_hop, data))
    return (min(dgkd) / min(plain), statistics.median(dgkd) / statistics.median(plain), min(dgkd), min(plain))


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
    fastest, median, dgkd_s, plain_s = dgkd_ratio(2 * args.reps)
    print(f"DGKD plain2 epoch, 4 cached teachers (drop 1) / labels-only plain2 epoch, synthetic CIFAR-100 "
          f"(5,000 images): {fastest:.3f} fastest epochs ({dgkd_s:.2f} s / {plain_s:.2f} s), {median:.3f} medians "
          f"(goal ≤ {DGKD_GOAL:.2f})")


if __name__ == "__main__":
    main()
