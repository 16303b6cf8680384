"""The GPU check: what decides how kdstudy trains on a GPU, in one command (about 8 minutes on an H100/H200), into
one JSON file written again after every stage, so a stage that fails or a run cut short keeps the rest.

1. `tests`: the chain and study tests, run again on CUDA (KDSTUDY_TEST_DEVICE=cuda);
2. `throughput`: img/s of our own training step (`HopTraining` + `train_epoch`, labels only, batch 128, data
   already on the device) for plain2 … plain10: eager vs CUDA-graphed × fp32 vs bf16 × NCHW vs channels_last, each
   cell time-boxed; with the FLOP/s it achieves (3 × inference FLOPs per image) and its share of the GPU's bf16 peak;
3. `curves`: one epoch's worth of steps (352, CIFAR-100's at batch 128) of plain10 in bf16, eager vs graphed, as
   the mean loss of each window of 8 steps; they agree when their largest difference is within bf16 noise (`curves`);
4. `projected_seed_study_gpu_hours`: the best measured img/s per architecture priced into the plan of the seed
   preset grown to 100 trials (`bench/study_plan.py`, planned on the CPU without training): as trained today (every
   trial its whole chain), with the hop store's reuse, and with successive halving;
5. `fused`: the HFTA-style fused model's throughput (`bench/fused_throughput.py`), when that file exists;
6. `packing`: 1, 2, 4 and 8 concurrent trials of a small study on the one GPU through Ray's fractional GPUs, without
   and with MPS (`nvidia-cuda-mps-control -d`, when present): trials per minute and the speed-up over one trial.
   Last, as the stage most likely to run long.

Run: `python bench/gpu_check.py [--out gpu_check.json] [--stages throughput,curves,...]`. Without a GPU it prints
one line and exits 0. `--stages` runs only the stages named (all by default), for a GPU lent for less time than the
whole check takes; the projection needs the throughput stage.
`--device cpu --quick` runs every stage on the CPU at toy sizes (no tests, packing at 1 and 2, no MPS, no graphs),
to check this script itself (tests/test_bench_gpu_check.py).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from fidelity import synthetic_task  # noqa: E402  (the bench folder is not a package)
from study_plan import seed_study_plan  # noqa: E402

from trainables import ChainConfig  # noqa: E402
from trainables.data import DataBundle  # noqa: E402
from trainables.device import configure_backends  # noqa: E402
from trainables.loop import HopTraining, TeacherOutputs, train_epoch  # noqa: E402
from trainables.models import build_model  # noqa: E402
from trainables.plan import model_flops  # noqa: E402
from trainables.step import sgd  # noqa: E402

TESTS = ["tests/test_chain.py", "tests/test_study.py", "tests/test_study_modes.py", "tests/test_device.py",
         "tests/test_step.py"]
CLASSES, CHANNELS, SIZE = 100, 3, 32  # CIFAR-100's shape
BUDGET_S = 8 * 60  # the whole check's, on an H100/H200
TESTS_LIMIT_S = 4 * 60
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense, SXM: the datasheets' figures
SEED_ARCHS = ("plain10", "plain8", "plain6", "plain4", "plain2")  # the seed preset's chain
STAGE_NAMES = ("tests", "throughput", "curves", "projected_seed_study_gpu_hours", "fused", "packing")


@dataclass(frozen=True)
class Sizes:
    """How big each stage runs: the GPU's sizes, or toy ones that check the script on a CPU."""

    depths: tuple[int, ...]
    batch: int
    batches_per_epoch: int  # throughput's training split, in full batches
    cell_seconds: float  # each throughput cell trains epochs until this much time has passed (after its warm-up)
    curve_arch: str
    curve_windows: int
    window_batches: int
    packing_levels: tuple[int, ...]
    packing_waves: int  # trials per level: waves × concurrent
    packing_epochs: int
    packing_train: int
    projected_trials: int


GPU = Sizes(depths=tuple(range(2, 11)), batch=128, batches_per_epoch=16, cell_seconds=0.5, curve_arch="plain10",
            curve_windows=44, window_batches=8, packing_levels=(1, 2, 4, 8), packing_waves=2, packing_epochs=1,
            packing_train=5000, projected_trials=100)
QUICK = Sizes(depths=(2, 4, 6, 8, 10), batch=16, batches_per_epoch=1, cell_seconds=0.0, curve_arch="plain2",
              curve_windows=3, window_batches=2, packing_levels=(1, 2), packing_waves=1, packing_epochs=1,
              packing_train=500, projected_trials=100)


# --- 1. tests -----------------------------------------------------------------------------------------------------

def run_tests(device: str) -> dict[str, Any]:
    started = time.perf_counter()
    # A time limit: tests that hang on a GPU must not take the other stages' minutes (a timeout is reported).
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS], cwd=ROOT,
                          env={**os.environ, "KDSTUDY_TEST_DEVICE": device}, capture_output=True, text=True,
                          timeout=TESTS_LIMIT_S)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr.strip()[-300:]
    return {"exit_code": done.returncode, "summary": summary, "seconds": round(time.perf_counter() - started, 1)}


# --- 2. throughput ------------------------------------------------------------------------------------------------

def labels_only_hop(arch: str, data: DataBundle, precision: str, graphs: bool, channels_last: bool,
                    batch: int) -> HopTraining:
    """A hop as `train_chain` builds one (its optimiser, step and layout), taught by labels only, seeded."""
    device = data.train.x.device
    cfg = ChainConfig(method="nokd", student=arch, batch_size=batch)
    torch.manual_seed(0)
    model = build_model(arch, data.num_classes, data.in_channels, data.image_size).to(device)
    return HopTraining(model, sgd(model.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay, device),
                       cfg.method_class.teaching(cfg, 0), TeacherOutputs([], [], data, per_batch=False,
                                                                        precision=precision),
                       torch.Generator().manual_seed(0), arch_flops(arch), batch, augment=False, precision=precision,
                       graphs=graphs, channels_last=channels_last)


def arch_flops(arch: str) -> int:
    """One CIFAR-100 image's inference FLOPs, as the trainer and the plan count them."""
    return model_flops(arch, 1.0, "reference", CHANNELS, SIZE, CLASSES)


def throughput(device: torch.device, sizes: Sizes) -> list[dict[str, Any]]:
    """One row per architecture × step × precision × layout."""
    data = synthetic_task(train=sizes.batch * sizes.batches_per_epoch, test=sizes.batch).to(device)
    peak = peak_bf16_tflops(device)
    rows = []
    for arch in (f"plain{depth}" for depth in sizes.depths):
        for graphs in (False, True):
            for precision in ("fp32", "bf16"):
                for channels_last in (False, True):
                    row: dict[str, Any] = {"arch": arch, "graphs": graphs, "precision": precision,
                                           "channels_last": channels_last}
                    if graphs and device.type != "cuda":
                        rows.append({**row, "skipped": "CUDA graphs need CUDA"})
                        continue
                    rows.append({**row, **caught(lambda: throughput_cell(arch, data, precision, graphs,
                                                                         channels_last, sizes, peak))})
    return rows


def throughput_cell(arch: str, data: DataBundle, precision: str, graphs: bool, channels_last: bool, sizes: Sizes,
                    peak_tflops: float | None) -> dict[str, Any]:
    hop = labels_only_hop(arch, data, precision, graphs, channels_last, sizes.batch)
    train_epoch(hop, data)  # warm-up: the graph's eager steps and capture, cuDNN's autotuning, the allocator
    epochs, started = 0, time.perf_counter()
    while True:  # train_epoch ends in a host sync (its loss), so the clock reads finished work
        train_epoch(hop, data)
        epochs += 1
        seconds = time.perf_counter() - started
        if seconds >= sizes.cell_seconds:
            break
    img_per_s = epochs * len(data.train) / seconds
    tflops = 3 * arch_flops(arch) * img_per_s / 1e12
    return {"img_per_s": round(img_per_s), "tflops": round(tflops, 3),
            "bf16_peak_share": round(tflops / peak_tflops, 4) if peak_tflops else None}


def peak_bf16_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for model, peak in PEAK_BF16_TFLOPS.items() if model in name), None)


def best_img_per_s(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Per architecture, the fastest bf16 cell (what `auto` trains in on a GPU): graphed, channels_last or not."""
    best: dict[str, int] = {}
    for row in rows:
        if row["precision"] == "bf16" and "img_per_s" in row:
            best[row["arch"]] = max(best.get(row["arch"], 0), row["img_per_s"])
    return best


# --- 3. curves ----------------------------------------------------------------------------------------------------

def curves(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    """Eager vs graphed bf16 loss curves from the same start and the same draws.

    bf16 noise, the tolerance: the same eager run in fp32 and in bf16 differ by bf16's rounding alone, so their
    largest window difference is how far bf16 by itself moves the curve; graphs agree when they move it no further.
    Floored at bf16's unit roundoff (2⁻⁸) of the largest loss, so that a pair that happened to agree closely does
    not make the tolerance zero. On the CPU (no graphs) the second run is eager too, and must equal the first
    exactly."""
    data = synthetic_task(train=sizes.batch * sizes.window_batches, test=sizes.batch).to(device)
    on_cuda = device.type == "cuda"

    def curve(precision: str, graphs: bool) -> list[float]:
        hop = labels_only_hop(sizes.curve_arch, data, precision, graphs, on_cuda, sizes.batch)
        return [train_epoch(hop, data).loss for _ in range(sizes.curve_windows)]

    fp32, eager, graphed = curve("fp32", False), curve("bf16", False), curve("bf16", on_cuda)
    difference = max(abs(a - b) for a, b in zip(eager, graphed))
    noise = max(max(abs(a - b) for a, b in zip(eager, fp32)), 2 ** -8 * max(eager))
    return {"arch": sizes.curve_arch, "steps": sizes.curve_windows * sizes.window_batches,
            "window_steps": sizes.window_batches, "graphed": on_cuda, "eager_bf16": eager, "graphed_bf16": graphed,
            "eager_fp32": fp32, "max_abs_difference": difference, "bf16_noise": noise,
            "within_noise": difference <= noise,
            **({} if on_cuda else {"note": "CUDA graphs need CUDA: eager against eager"})}


# --- 4. the seed study's projected GPU-hours ------------------------------------------------------------------------

def projected_hours(rows: list[dict[str, Any]], trials: int) -> dict[str, Any]:
    """GPU-hours of the seed preset's `trials`-trial study at the measured speeds, one trial on the GPU at a time.

    Priced through the study's own plan (`study.plan.plan_study`, with its reuse and halving rules): the plan counts
    a hop's work as images × one forward of each model it runs (3 per training image, 1 per validation or
    cached-teacher image); priced at a third of the model's measured seconds per trained image instead of its FLOPs,
    its totals are seconds."""
    best = best_img_per_s(rows)
    missing = [arch for arch in SEED_ARCHS if arch not in best]
    if missing:
        return {"error": f"no bf16 throughput measured for {', '.join(missing)}"}

    def seconds_per_forward(arch: str, *shape: Any) -> float:
        return 1 / (3 * best[arch])

    flops = {scheduler: seed_study_plan(trials, scheduler) for scheduler in ("none", "halving")}
    seconds = {scheduler: seed_study_plan(trials, scheduler, seconds_per_forward) for scheduler in ("none", "halving")}
    hours = {"naive": seconds["none"].naive.flops / 3600, "with_reuse": seconds["none"].planned.flops / 3600,
             "with_halving": seconds["halving"].planned.flops / 3600}
    spent = {"naive": flops["none"].naive.flops, "with_reuse": flops["none"].planned.flops,
             "with_halving": flops["halving"].planned.flops}
    return {"trials": trials, "img_per_s": {arch: best[arch] for arch in SEED_ARCHS},
            "hours": {name: round(value, 3) for name, value in hours.items()},
            "pflop": {name: round(value / 1e15, 2) for name, value in spent.items()},
            "mean_tflops": {name: round(spent[name] / (hours[name] * 3600) / 1e12, 4) for name in hours},
            "goal_hours": {"naive": 8.0, "with_halving": 1.0}}


# --- 5. fused -----------------------------------------------------------------------------------------------------

def fused(device: torch.device, quick: bool) -> Any:
    try:
        from fused_throughput import fused_throughput
    except ModuleNotFoundError as error:
        if error.name != "fused_throughput":
            raise
        return {"skipped": "bench/fused_throughput.py is not there"}
    return fused_throughput(device, quick)


# --- 6. packing ---------------------------------------------------------------------------------------------------

def packing(device: torch.device, sizes: Sizes, deadline: float) -> dict[str, Any]:
    """The same small studies without and with MPS; each mode on a Ray instance of its own, started after the MPS
    daemon so that its workers inherit the daemon's pipe directory. With MPS only when the time left until
    `deadline` (a `time.perf_counter()` reading) fits a second run as long as the first."""
    folder = Path(tempfile.mkdtemp(prefix="kdstudy-gpu-check-"))
    try:
        data = synthetic_task(train=sizes.packing_train, test=max(200, sizes.packing_train // 5))
        _write_cifar100(data, folder / "cifar")
        started = time.perf_counter()
        result: dict[str, Any] = {"without_mps": caught(lambda: pack_levels(device, sizes, folder, "plain"))}
        control = shutil.which("nvidia-cuda-mps-control")
        if device.type != "cuda":
            result["with_mps"] = {"skipped": "MPS needs CUDA"}
        elif control is None:
            result["with_mps"] = {"skipped": "nvidia-cuda-mps-control is not on PATH"}
        elif deadline - time.perf_counter() < time.perf_counter() - started:
            result["with_mps"] = {"skipped": f"no time left in the check's {BUDGET_S // 60} minutes"}
        else:
            result["with_mps"] = caught(lambda: _with_mps(control, folder, lambda: pack_levels(device, sizes,
                                                                                               folder, "mps")))
        return result
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def pack_levels(device: torch.device, sizes: Sizes, folder: Path, mode: str) -> list[dict[str, Any]]:
    """A small study per level k: k trials at a time on the one GPU (1/k GPU each), waves × k trials."""
    import ray

    from study.runner import run_study
    from study.spec import StudySpec, validate

    gpus = 1 if device.type == "cuda" else 0
    cpus = os.cpu_count() or 2
    ray.init(address="local", num_cpus=cpus, num_gpus=gpus, include_dashboard=False, configure_logging=False,
             log_to_driver=False, _node_ip_address="127.0.0.1")
    rows: list[dict[str, Any]] = []
    try:
        for k in sizes.packing_levels:
            spec = validate(StudySpec(
                name=f"{mode}{k}", storage=str(folder / "runs"), dataset="cifar100", data_dir=str(folder / "cifar"),
                teacher="plain10", student="plain2", ta_candidates=(6,), methods=("takd", "dgkd", "ensemble"),
                epochs=sizes.packing_epochs, trials=sizes.packing_waves * k, max_concurrent=k,
                cpus_per_trial=max(1.0, cpus // k), gpus_per_trial=gpus / k, max_failures=0, scheduler="none",
                chain={"device": str(device), "lr": 0.01, "val_size": 0.1}))
            started = time.perf_counter()
            outcome = run_study(spec)
            minutes = (time.perf_counter() - started) / 60
            per_minute = outcome.ended / minutes
            rows.append({"concurrent": k, "trials": outcome.ended, "finished": outcome.counts.get("TERMINATED", 0),
                         "minutes": round(minutes, 2), "trials_per_minute": round(per_minute, 2),
                         "speedup": round(per_minute / rows[0]["trials_per_minute"], 2) if rows else 1.0})
    finally:
        ray.shutdown()
    return rows


def _with_mps(control: str, folder: Path, stage: Callable[[], Any]) -> Any:
    """`stage` with an MPS control daemon of its own (pipe and log directories under `folder`), quit after it."""
    env = {"CUDA_MPS_PIPE_DIRECTORY": str(folder / "mps-pipe"), "CUDA_MPS_LOG_DIRECTORY": str(folder / "mps-log")}
    for path in env.values():
        Path(path).mkdir()
    subprocess.run([control, "-d"], env={**os.environ, **env}, check=True, timeout=60)
    try:
        with _environment(env):
            return stage()
    finally:
        subprocess.run([control], input="quit\n", text=True, env={**os.environ, **env}, timeout=60)


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _write_cifar100(data: DataBundle, root: Path) -> None:
    """The synthetic task in CIFAR-100's pickle format, so a study can read it as `cifar100`."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, split in (("train", data.train), ("test", data.test)):
        with open(folder / name, "wb") as handle:
            pickle.dump({b"data": split.x.reshape(len(split), -1).numpy(), b"fine_labels": split.y.tolist()}, handle)


# --- the run ------------------------------------------------------------------------------------------------------

def caught(stage: Callable[[], Any]) -> Any:
    """The stage's result, or what it raised as {"error": …}: one failure must not lose the other stages."""
    try:
        return stage()
    except Exception as error:  # noqa: BLE001  (anything: it is reported, not handled)
        traceback.print_exc()
        return {"error": f"{type(error).__name__}: {error}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="toy sizes (to check this script on a CPU)")
    parser.add_argument("--stages", default=",".join(STAGE_NAMES), help="the stages to run, comma-separated")
    args = parser.parse_args()
    chosen = args.stages.split(",")
    unknown = [name for name in chosen if name not in STAGE_NAMES]
    if unknown:
        print(f"--stages: expected names among {', '.join(STAGE_NAMES)}, got {', '.join(unknown)}", file=sys.stderr)
        sys.exit(2)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no GPU found (torch.cuda.is_available() is False); nothing was run")
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local cluster of its own: no token from ~/.ray
    deadline = time.perf_counter() + BUDGET_S
    device = torch.device(args.device)
    configure_backends(device)  # as train_chain sets it up
    sizes = QUICK if args.quick else GPU
    report: dict[str, Any] = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                              "torch": torch.__version__, "quick": args.quick}
    stages: dict[str, Callable[[], Any]] = {
        "tests": lambda: {"skipped": "--quick"} if args.quick else run_tests(args.device),
        "throughput": lambda: throughput(device, sizes),
        "curves": lambda: curves(device, sizes),
        "projected_seed_study_gpu_hours": lambda: projected_hours(_rows(report), sizes.projected_trials),
        "fused": lambda: fused(device, args.quick),
        "packing": lambda: packing(device, sizes, deadline),
    }
    for name in (name for name in STAGE_NAMES if name in chosen):
        stage = stages[name]
        started = time.perf_counter()
        report[name] = caught(stage)
        report.setdefault("seconds", {})[name] = round(time.perf_counter() - started, 1)
        print(f"{name} ({report['seconds'][name]:.0f} s): {json.dumps(report[name])[:2000]}", flush=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"wrote {args.out}")


def _rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = report.get("throughput")
    if not isinstance(rows, list):
        raise RuntimeError("no throughput measured (its stage failed or was not run): nothing to price the plan with")
    return rows


# --- the table ----------------------------------------------------------------------------------------------------

def print_table(report: dict[str, Any]) -> None:
    print(f"\n{report['device']}, torch {report['torch']}")
    for name in ("throughput", "curves", "projected_seed_study_gpu_hours", "fused", "packing"):
        value = report.get(name)
        if isinstance(value, dict) and ("error" in value or "skipped" in value):
            print(f"{name}: {value.get('error') or 'skipped: ' + value['skipped']}")
        elif value is not None:
            TABLES[name](value)


def _throughput_table(rows: list[dict[str, Any]]) -> None:
    cells = [(graphs, precision, layout) for graphs in (False, True) for precision in ("fp32", "bf16")
             for layout in (False, True)]
    names = [f"{'graph' if g else 'eager'} {p}{' CL' if c else ''}" for g, p, c in cells]
    print("img/s of one training step (CL: channels_last); the last column: the best cell's TFLOP/s (its share of the "
          "bf16 peak)")
    print(f"{'arch':<8}" + "".join(f"{name:>15}" for name in names) + f"{'best TFLOP/s':>16}")
    for arch in dict.fromkeys(row["arch"] for row in rows):
        mine = {(r["graphs"], r["precision"], r["channels_last"]): r for r in rows if r["arch"] == arch}
        line = "".join(f"{_cell(mine.get(cell)):>15}" for cell in cells)
        measured = [r for r in mine.values() if "img_per_s" in r]
        best = max(measured, key=lambda r: r["img_per_s"], default=None)
        print(f"{arch:<8}{line}{_flops_cell(best):>16}")


def _flops_cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "–"
    share = f" ({row['bf16_peak_share']:.1%})" if row.get("bf16_peak_share") is not None else ""
    return f"{row['tflops']:.2f}{share}"


def _cell(row: dict[str, Any] | None) -> str:
    if row is None or "skipped" in row:
        return "–"
    return "error" if "error" in row else f"{row['img_per_s']:,}"


def _curves_table(value: dict[str, Any]) -> None:
    other = "graphed" if value["graphed"] else "eager"
    print(f"loss curves, {value['arch']} bf16, {value['steps']} steps: eager vs {other} differ by at most "
          f"{value['max_abs_difference']:.2e} (bf16 noise {value['bf16_noise']:.2e}): "
          f"{'within' if value['within_noise'] else 'OUTSIDE'} bf16 noise")


def _projection_table(value: dict[str, Any]) -> None:
    hours = value["hours"]
    print(f"seed study, {value['trials']} trials, one trial on the GPU at a time: {hours['naive']:.2f} GPU-hours as "
          f"trained today (goal ≤ {value['goal_hours']['naive']:g}), {hours['with_reuse']:.2f} with the hop store's "
          f"reuse, {hours['with_halving']:.2f} with halving (goal ≤ {value['goal_hours']['with_halving']:g})")


def _fused_table(rows: list[dict[str, Any]]) -> None:
    print("fused vs solo (img/s of B members): " + "; ".join(
        f"{r['arch']} B={r['members']} {r['memory_format']} {r['mode']}: "
        + (f"error {r['error'][:60]}" if "error" in r else f"{r['speedup']:.2f}×") for r in rows))


def _packing_table(value: dict[str, Any]) -> None:
    for mode in ("without_mps", "with_mps"):
        rows = value.get(mode)
        if not isinstance(rows, list):
            print(f"packing {mode.replace('_', ' ')}: {rows.get('error') or 'skipped: ' + rows['skipped']}")
            continue
        cells = ", ".join(f"{r['concurrent']}: {r['trials_per_minute']}/min ({r['speedup']}×)" for r in rows)
        print(f"packing {mode.replace('_', ' ')}, trials at a time: {cells}")


TABLES: dict[str, Callable[[Any], None]] = {"throughput": _throughput_table, "curves": _curves_table,
                                             "projected_seed_study_gpu_hours": _projection_table,
                                             "fused": _fused_table, "packing": _packing_table}


if __name__ == "__main__":
    main()
