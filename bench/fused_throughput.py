"""Does fused training pay? img/s of B solo plain CNNs trained one after the other vs one fused model of B members.

Issue 18 item 5: same-architecture hops of concurrent trials may be trained as one HFTA-style fused model
(`trainables/models/fused.py`) — worth it only if it beats B solo models by a clear margin on the GPU, after CUDA
graphs have taken the launch overhead away. Per row: arch, members B, memory format, eager or CUDA-graphed, img/s
summed over the members for both, and `speedup` = fused / solo. Batch 128 per member, CIFAR-100-shaped data already on
the device, SGD with momentum, bf16 autocast on CUDA and fp32 on the CPU (as a hop is trained).

Run: `python bench/fused_throughput.py [--device cpu] [--quick] [--archs plain2,plain4]`; `bench/gpu_check.py` runs
`fused_throughput(device, quick)` as one of its stages.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F

from trainables.device import autocast_for, configure_backends, resolve_device
from trainables.models import build_model
from trainables.models.fused import fuse, fused_sgd, stack_inputs, summed_member_losses

BATCH, CLASSES, CHANNELS, SIZE = 128, 100, 3, 32
SGD = {"lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4}
FORMAT_NAMES = {torch.contiguous_format: "nchw", torch.channels_last: "channels_last"}

Step = Callable[[], None]


def _batch(device: torch.device, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, CHANNELS, SIZE, SIZE, generator=gen)
    return x.to(device), torch.randint(0, CLASSES, (BATCH,), generator=gen).to(device)


def _solo_steps(arch: str, members: int, device: torch.device, memory_format: torch.memory_format) -> list[Step]:
    """One training step per solo model: B models, B optimizers, B batches."""
    steps = []
    for seed in range(members):
        torch.manual_seed(seed)
        model = build_model(arch, CLASSES, CHANNELS, SIZE).to(device, memory_format=memory_format).train()
        optimizer = torch.optim.SGD(model.parameters(), **SGD)
        x, y = _batch(device, seed)
        x = x.contiguous(memory_format=memory_format)

        def step(model: torch.nn.Module = model, optimizer: torch.optim.Optimizer = optimizer,
                 x: torch.Tensor = x, y: torch.Tensor = y) -> None:
            with autocast_for(device):
                loss = F.cross_entropy(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        steps.append(step)
    return steps


def _fused_step(arch: str, members: int, device: torch.device, memory_format: torch.memory_format) -> Step:
    """One training step of the fused model of B members, each on its own batch."""
    solos = []
    for seed in range(members):
        torch.manual_seed(seed)
        solos.append(build_model(arch, CLASSES, CHANNELS, SIZE).to(device))
    fused = fuse(solos).to(memory_format=memory_format).train()
    optimizer = fused_sgd(fused, **SGD)
    batches = [_batch(device, seed) for seed in range(members)]
    x = stack_inputs([x for x, _ in batches]).contiguous(memory_format=memory_format)
    y = torch.stack([y for _, y in batches])

    def step() -> None:
        with autocast_for(device):
            loss = summed_member_losses(F.cross_entropy, fused(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _graphed(step: Step, device: torch.device) -> Step:
    """`step` captured as one CUDA graph (PyTorch's whole-network recipe): warm-up on a side stream, which also
    creates the momentum buffers, then capture; a replay reruns the step on the same static tensors."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _img_per_s(steps: list[Step], device: torch.device, repeats: int) -> float:
    """Images per second over all members: each repeat runs every step in `steps` once."""
    for _ in range(max(1, repeats // 5)):  # warm-up: cuDNN autotuning, the allocator, momentum buffers
        for step in steps:
            step()
    _sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        for step in steps:
            step()
    _sync(device)
    return repeats * len(steps) * BATCH / (time.perf_counter() - started)


def _row(arch: str, members: int, device: torch.device, memory_format: torch.memory_format, mode: str,
         repeats: int) -> dict[str, Any]:
    solo = _solo_steps(arch, members, device, memory_format)
    fused = [_fused_step(arch, members, device, memory_format)]
    if mode == "graphed":
        solo, fused = [_graphed(s, device) for s in solo], [_graphed(s, device) for s in fused]
    solo_rate = _img_per_s(solo, device, repeats)
    fused_rate = _img_per_s(fused, device, repeats)
    return {"arch": arch, "members": members, "memory_format": FORMAT_NAMES[memory_format],
            "mode": mode, "solo_img_per_s": round(solo_rate), "fused_img_per_s": round(fused_rate),
            "speedup": round(fused_rate / solo_rate, 3)}


def fused_throughput(device: torch.device, quick: bool, archs: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Solo vs fused img/s per arch and member count B, one row each (on CUDA also channels_last and graphed)."""
    configure_backends(device)
    archs = archs or (("plain2", "plain4") if quick else ("plain2", "plain4", "plain10"))
    member_counts = (1, 2) if quick else (1, 4, 8)
    repeats = 2 if quick else (30 if device.type == "cuda" else 5)
    cuda = device.type == "cuda"
    formats = (torch.contiguous_format, torch.channels_last) if cuda else (torch.contiguous_format,)
    modes = ("eager", "graphed") if cuda else ("eager",)
    rows = []
    for arch in archs:
        for members in member_counts:
            for memory_format in formats:
                for mode in modes:
                    try:
                        rows.append(_row(arch, members, device, memory_format, mode, repeats))
                    except RuntimeError as error:  # one failed variant (a capture, memory) leaves the others
                        rows.append({"arch": arch, "members": members, "mode": mode,
                                     "memory_format": FORMAT_NAMES[memory_format],
                                     "error": str(error).splitlines()[0][:300]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help='"auto" (the GPU when there is one), "cpu", "cuda:0"')
    parser.add_argument("--quick", action="store_true", help="B in (1, 2), plain2 and plain4, two steps")
    parser.add_argument("--archs", default=None, help="comma-separated, e.g. plain2 (default: plain2,plain4,plain10)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    device = resolve_device(args.device)
    rows = fused_throughput(device, args.quick, tuple(args.archs.split(",")) if args.archs else None)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"fused vs solo training, batch {BATCH} per member, on {device}")
    print(f"{'arch':<8} {'B':>2} {'format':<13} {'mode':<8} {'solo img/s':>11} {'fused img/s':>12} {'fused/solo':>10}")
    for row in rows:
        head = f"{row['arch']:<8} {row['members']:>2} {row['memory_format']:<13} {row['mode']:<8}"
        if "error" in row:
            print(f"{head} error: {row['error']}")
        else:
            print(f"{head} {row['solo_img_per_s']:>11,} {row['fused_img_per_s']:>12,} {row['speedup']:>10.2f}")


if __name__ == "__main__":
    main()
