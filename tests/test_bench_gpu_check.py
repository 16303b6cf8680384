"""bench/gpu_check.py at its toy size on the CPU (`--device cpu --quick`), as a subprocess: every stage in the JSON,
with values that hold together (the GPU run itself can only happen on a GPU machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from trainables.plan import model_flops

ROOT = Path(__file__).parent.parent
STAGES = ("tests", "throughput", "curves", "projected_seed_study_gpu_hours", "fused", "packing")
SEED_ARCHS = ("plain10", "plain8", "plain6", "plain4", "plain2")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("gpu_check") / "gpu_check.json"
    done = subprocess.run([sys.executable, "bench/gpu_check.py", "--device", "cpu", "--quick", "--out", str(out)],
                          cwd=ROOT, env={**os.environ, "RAY_AUTH_MODE": "disabled"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "wrote" in done.stdout.splitlines()[-1]
    return json.loads(out.read_text())


def test_every_stage_is_reported_and_none_failed(report: dict[str, Any]) -> None:
    assert report["device"] == "cpu" and report["quick"] is True
    assert set(STAGES) <= set(report) and set(STAGES) == set(report["seconds"])
    assert report["tests"] == {"skipped": "--quick"}
    assert not list(errors(report)), list(errors(report))


def errors(value: Any) -> Any:
    """Every {"error": …} a stage or a cell caught, however deep."""
    if isinstance(value, dict):
        if "error" in value:
            yield value["error"]
        for item in value.values():
            yield from errors(item)
    elif isinstance(value, list):
        for item in value:
            yield from errors(item)


def test_throughput_measures_every_eager_cell_and_skips_graphs_on_the_cpu(report: dict[str, Any]) -> None:
    rows = report["throughput"]
    assert len(rows) == len(SEED_ARCHS) * 8
    for row in rows:
        if row["graphs"]:
            assert row["skipped"] == "CUDA graphs need CUDA"
        else:
            assert row["img_per_s"] > 0 and row["bf16_peak_share"] is None
            expected = 3 * model_flops(row["arch"], 1.0, "reference", 3, 32, 100) * row["img_per_s"] / 1e12
            assert row["tflops"] == pytest.approx(expected, abs=1e-3)


def test_curves_on_the_cpu_are_two_equal_eager_runs_within_bf16_noise(report: dict[str, Any]) -> None:
    curves = report["curves"]
    assert curves["graphed"] is False
    assert len(curves["eager_bf16"]) == len(curves["eager_fp32"]) == curves["steps"] // curves["window_steps"]
    assert curves["eager_bf16"] == curves["graphed_bf16"] and curves["max_abs_difference"] == 0.0
    assert curves["eager_bf16"] != curves["eager_fp32"]  # bf16 rounds: the noise it sets is measured, not zero
    assert curves["bf16_noise"] > 0 and curves["within_noise"] is True


def test_projected_hours_price_each_flop_at_its_architectures_measured_rate(report: dict[str, Any]) -> None:
    projected = report["projected_seed_study_gpu_hours"]
    hours, pflop = projected["hours"], projected["pflop"]
    assert projected["trials"] == 100
    assert hours["naive"] > hours["with_reuse"] > hours["with_halving"] > 0
    assert pflop["naive"] > pflop["with_reuse"] > pflop["with_halving"] > 0
    # Each model's FLOPs cost 1 / its measured FLOP/s, so the study's mean FLOP/s lies between the slowest and the
    # fastest architecture's (a pricing off by any factor falls outside).
    rates = [3 * model_flops(arch, 1.0, "reference", 3, 32, 100) * projected["img_per_s"][arch] / 1e12
             for arch in SEED_ARCHS]
    for name, mean in projected["mean_tflops"].items():
        assert min(rates) - 1e-4 <= mean <= max(rates) + 1e-4, (name, mean, rates)


def test_fused_is_measured_when_its_bench_is_there(report: dict[str, Any]) -> None:
    fused = report["fused"]
    if (ROOT / "bench" / "fused_throughput.py").exists():
        assert fused and all(row["speedup"] > 0 for row in fused)
    else:
        assert fused == {"skipped": "bench/fused_throughput.py is not there"}


def test_packing_runs_one_and_two_trials_at_a_time_without_mps(report: dict[str, Any]) -> None:
    packing = report["packing"]
    assert packing["with_mps"] == {"skipped": "MPS needs CUDA"}
    rows = packing["without_mps"]
    assert [row["concurrent"] for row in rows] == [1, 2]
    assert all(row["finished"] == row["trials"] == row["concurrent"] for row in rows)
    assert rows[0]["speedup"] == 1.0
    assert rows[1]["speedup"] == pytest.approx(rows[1]["trials_per_minute"] / rows[0]["trials_per_minute"], rel=0.01)


def test_stages_run_as_chosen_and_an_unknown_one_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    command = [sys.executable, "bench/gpu_check.py", "--device", "cpu", "--quick", "--out", str(out), "--stages"]
    done = subprocess.run([*command, "tests,curves"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert set(json.loads(out.read_text())["seconds"]) == {"tests", "curves"}
    out.unlink()
    done = subprocess.run([*command, "curves,speed"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and not out.exists()
    assert done.stderr.strip() == f"--stages: expected names among {', '.join(STAGES)}, got speed"
