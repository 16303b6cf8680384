"""The seed paper's preset, end to end on the CPU: a CIFAR-100-format folder written by the test, one epoch."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from cli.main import main
from tests.cifar_files import write_cifar100


def test_the_seed_preset_runs_the_seed_papers_comparison(ray_cluster: str, tmp_path: Path) -> None:
    # an image a class: the preset's full-width chains train on them in seconds (what is checked is the study the
    # preset describes, not what it learns)
    data = write_cifar100(tmp_path / "cifar", train_per_class=1, test_per_class=1)
    # no GPU here: the preset's fractional GPUs become CPUs
    argv = ["run", "--preset", "seed-cifar100", "--data-dir", str(data), "--storage", str(tmp_path), "--epochs", "1",
            "--cpus-per-trial", "1", "--gpus-per-trial", "0", "--max-concurrent", "2", "--no-report"]
    assert main(argv) == 0
    rows = pq.read_table(tmp_path / "seed-cifar100" / "results" / "trials").to_pylist()
    assert len(rows) == 4 and all(r["status"] == "TERMINATED" for r in rows)
    assert sorted(r["group"] for r in rows) == ["dgkd", "ensemble-learned", "ensemble-mean", "takd"]
    for row in rows:
        assert (row["dataset"], row["teacher"], row["ta_depths"], row["student"]) == \
            ("cifar100", "plain10", [8, 6, 4], "plain2")
        assert (row["temperature"], row["alpha"], row["kl_reduction"], row["lr"], row["lr_schedule"]) == \
            (5.0, 1.0, "mean", 0.01, "constant")
        assert (row["batch_size"], row["weight_decay"], row["augment"], row["init"], row["width"]) == \
            (128, 1e-4, False, "reference", 1.0)
        assert row["drop"] == (1 if row["method"] == "dgkd" else None)
        assert row["fit_size"] == 0.05  # every trial holds out the learned ensemble's fit split: one split for all
    hops = pq.read_table(tmp_path / "seed-cifar100" / "results" / "hops").to_pylist()
    assert sum(not h["reused"] for h in hops if h["role"] == "teacher") == 1
