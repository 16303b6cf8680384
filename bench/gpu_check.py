"""The GPU check: one command, about 8 minutes on one GPU, everything written to one JSON file.

1. the chain and study tests, run again on CUDA (KDSTUDY_TEST_DEVICE=cuda);
2. training throughput (img/s) of plain2 … plain10 at batch 128, data already on the GPU, fp32 and bf16 autocast;
3. a short 3-hop chain (plain10 → plain6 → plain2, TAKD) trained in fp32 and in bf16: both students' accuracies;
4. 1, 2, 4 and 8 concurrent trials of a small study on the one GPU through Ray's fractional GPUs: aggregate
   trials per minute, to know how many trials to pack on a GPU.

Run: `python bench/gpu_check.py [--out gpu_check.json]`. Without a GPU it prints one line and exits 0.
(`--device cpu --quick` runs the same code on the CPU at toy sizes, to check the script itself.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from fidelity import synthetic_task  # noqa: E402  (the bench folder is not a package)

from trainables import ChainConfig, train_chain  # noqa: E402
from trainables.data import DataBundle  # noqa: E402
from trainables.device import autocast_for  # noqa: E402
from trainables.models import build_model  # noqa: E402

TESTS = ["tests/test_chain.py", "tests/test_study.py", "tests/test_study_modes.py", "tests/test_device.py"]


def run_tests(device: str) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS], cwd=ROOT,
                          env={**os.environ, "KDSTUDY_TEST_DEVICE": device}, capture_output=True, text=True)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr.strip()[-300:]
    return {"exit_code": done.returncode, "summary": summary, "seconds": round(time.perf_counter() - started, 1)}


def throughput(device: torch.device, steps: int, depths: tuple[int, ...]) -> list[dict[str, Any]]:
    """Train steps per second × batch, on random CIFAR-100-shaped batches already on the device."""
    rows = []
    for depth in depths:
        row: dict[str, Any] = {"arch": f"plain{depth}"}
        for precision in ("fp32", "bf16"):
            model = build_model(f"plain{depth}", 100, 3, 32).to(device).train()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            x, y = torch.randn(128, 3, 32, 32, device=device), torch.randint(0, 100, (128,), device=device)

            def step() -> None:
                with autocast_for(device, precision):
                    loss = F.cross_entropy(model(x).float(), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

            for _ in range(max(3, steps // 10)):  # warm-up: cuDNN autotuning, allocator
                step()
            _sync(device)
            started = time.perf_counter()
            for _ in range(steps):
                step()
            _sync(device)
            row[f"{precision}_img_per_s"] = round(steps * 128 / (time.perf_counter() - started))
        rows.append(row)
    return rows


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def precisions(data: DataBundle, device: str, epochs: int) -> dict[str, Any]:
    result = {}
    for precision in ("fp32", "bf16"):
        cfg = ChainConfig.from_flat({"method": "takd", "teacher": "plain10", "ta_depths": [6], "student": "plain2",
                                     "epochs": epochs, "lr": 0.01, "device": device, "precision": precision,
                                     "temperature": 4.0, "alpha": 0.5})
        started = time.perf_counter()
        chain = train_chain(cfg, data=data)
        result[precision] = {"student_test_acc": round(chain.student.test_acc, 4),
                             "teacher_test_acc": round(chain.hops[0].test_acc, 4),
                             "seconds": round(time.perf_counter() - started, 1)}
    return result


def packing(data: DataBundle, device: str, levels: tuple[int, ...], epochs: int) -> list[dict[str, Any]]:
    """A small study per level k: k trials at a time on the one GPU (1/k GPU each), 2k trials."""
    import ray

    from study.runner import run_study
    from study.spec import StudySpec, validate

    folder = Path(tempfile.mkdtemp(prefix="kdstudy-gpu-check-"))
    _write_cifar100(data, folder / "cifar")
    gpus = 1 if device.startswith("cuda") else 0
    cpus = os.cpu_count() or 2
    ray.init(num_cpus=cpus, num_gpus=gpus, include_dashboard=False, configure_logging=False, log_to_driver=False)
    rows = []
    for k in levels:
        spec = validate(StudySpec(
            name=f"pack{k}", storage=str(folder / "runs"), dataset="cifar100", data_dir=str(folder / "cifar"),
            teacher="plain10", student="plain2", ta_candidates=(6,), methods=("takd", "dgkd", "ensemble"),
            epochs=epochs, trials=2 * k, max_concurrent=k, cpus_per_trial=max(1.0, cpus // k),
            gpus_per_trial=gpus / k, max_failures=0, chain={"device": device, "lr": 0.01, "val_size": 0.1}))
        started = time.perf_counter()
        outcome = run_study(spec)
        minutes = (time.perf_counter() - started) / 60
        rows.append({"concurrent": k, "trials": outcome.ended, "finished": outcome.counts.get("TERMINATED", 0),
                     "minutes": round(minutes, 2), "trials_per_minute": round(outcome.ended / minutes, 2)})
    ray.shutdown()
    return rows


def _write_cifar100(data: DataBundle, root: Path) -> None:
    """The synthetic task in CIFAR-100's pickle format, so a study can read it as `cifar100`."""
    import pickle

    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, split in (("train", data.train), ("test", data.test)):
        with open(folder / name, "wb") as handle:
            pickle.dump({b"data": split.x.reshape(len(split), -1).numpy(), b"fine_labels": split.y.tolist()}, handle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="toy sizes (to check this script on a CPU)")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no GPU found (torch.cuda.is_available() is False); nothing was run")
        return
    device = torch.device(args.device)
    quick = args.quick
    report: dict[str, Any] = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                              "torch": torch.__version__}
    data = synthetic_task(train=500 if quick else 5000, test=200 if quick else 2000)
    stages = [
        ("tests", lambda: run_tests(args.device)),
        ("throughput", lambda: throughput(device, 5 if quick else 100, (2, 4) if quick else tuple(range(2, 11)))),
        ("precision", lambda: precisions(data, args.device, 1 if quick else 5)),
        ("packing", lambda: packing(data, args.device, (1, 2) if quick else (1, 2, 4, 8), 1 if quick else 2)),
    ]
    for name, stage in stages:
        if quick and name == "tests":
            continue
        started = time.perf_counter()
        report[name] = stage()
        print(f"{name} ({time.perf_counter() - started:.0f} s): {json.dumps(report[name])}", flush=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")  # after every stage: a timeout keeps the rest
    print_table(report)
    print(f"wrote {args.out}")


def print_table(report: dict[str, Any]) -> None:
    print(f"\n{report['device']}, torch {report['torch']}")
    print(f"{'arch':<8} {'fp32 img/s':>11} {'bf16 img/s':>11}")
    for row in report["throughput"]:
        print(f"{row['arch']:<8} {row['fp32_img_per_s']:>11,} {row['bf16_img_per_s']:>11,}")
    for precision, values in report["precision"].items():
        print(f"3-hop chain in {precision}: student test acc {values['student_test_acc']:.4f}")
    for row in report["packing"]:
        print(f"{row['concurrent']} concurrent trial(s): {row['trials_per_minute']} trials/min")


if __name__ == "__main__":
    main()
