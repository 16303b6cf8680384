"""The predictions table of a 100-trial CIFAR-100 study: ours — one file per trial, one row per hop with list
columns — vs one long file with a row per trial × hop × sample. Prints sizes and read-time ratios from one run."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from runstore.schema import PREDICTIONS


def synthetic(trials: int, hops: int, samples: int, classes: int, seed: int = 0) -> pa.Table:
    """Predictions shaped like a real study's: ~60 % right, wrong answers spread over the classes."""
    rng = np.random.default_rng(seed)
    target = rng.integers(0, classes, samples).astype(np.int16)
    rows = {name: [] for name in PREDICTIONS.names}
    for t in range(trials):
        for h in range(hops):
            right = rng.random(samples) < 0.6
            predicted = np.where(right, target, rng.integers(0, classes, samples)).astype(np.int16)
            true_prob = np.where(right, rng.uniform(0.3, 1, samples), rng.uniform(0, 0.3, samples)).astype(np.float16)
            for name, value in (("trial_id", f"{t:08x}"), ("hop", h), ("arch", f"plain{10 - 2 * h}"),
                                ("role", "ta"), ("predicted", predicted), ("true_prob", true_prob),
                                ("target", target)):
                rows[name].append(value)
    return pa.table(rows, schema=PREDICTIONS)


def long_format(table: pa.Table) -> pa.Table:
    lengths = pc.list_value_length(table.column("predicted"))
    repeat = lambda column: pa.array(np.repeat(table.column(column).to_numpy(zero_copy_only=False),  # noqa: E731
                                               lengths.to_numpy()))
    return pa.table({"trial_id": repeat("trial_id"), "hop": repeat("hop"),
                     "sample": pa.array(np.concatenate([np.arange(n) for n in lengths.to_numpy()])),
                     "predicted": pc.list_flatten(table.column("predicted")),
                     "true_prob": pc.list_flatten(table.column("true_prob")),
                     "target": pc.list_flatten(table.column("target"))})


def timed_read(path: Path, one_trial: dict, reps: int) -> tuple[float, float]:
    """Median seconds to read everything, and one trial (`one_trial`: pq.read_table arguments)."""
    whole, one = [], []
    for _ in range(reps):
        started = time.perf_counter()
        pq.read_table(path)
        whole.append(time.perf_counter() - started)
        started = time.perf_counter()
        pq.read_table(**one_trial)
        one.append(time.perf_counter() - started)
    return statistics.median(whole), statistics.median(one)


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*.parquet")) if path.is_dir() else path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--hops", type=int, default=5)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    ours = synthetic(args.trials, args.hops, args.samples, classes=100)
    folder = Path(tempfile.mkdtemp(prefix="kdstudy-pred-"))
    (folder / "predictions").mkdir()
    for trial in range(args.trials):  # as the trials write them: a file each
        rows = ours.slice(trial * args.hops, args.hops)
        pq.write_table(rows, folder / "predictions" / f"{trial:08x}.parquet")
    pq.write_table(long_format(ours), folder / "long.parquet")
    size_lists, size_long = size_of(folder / "predictions"), size_of(folder / "long.parquet")
    whole_lists, one_lists = timed_read(folder / "predictions",
                                        {"source": folder / "predictions" / "00000007.parquet"}, args.reps)
    whole_long, one_long = timed_read(folder / "long.parquet", {"source": folder / "long.parquet",
                                                                "filters": [("trial_id", "=", "00000007")]},
                                      args.reps)
    print(f"{args.trials} trials × {args.hops} hops × {args.samples} test images, 100 classes")
    print(f"list columns, a file per trial (ours): {size_lists / 2**20:.1f} MiB in {ours.num_rows} rows; "
          f"long format: {size_long / 2**20:.1f} MiB in {args.trials * args.hops * args.samples:,} rows")
    print(f"size long/ours = {size_long / size_lists:.2f}")
    print(f"read all: long/ours time = {whole_long / whole_lists:.2f}; "
          f"read one trial: long/ours time = {one_long / one_lists:.2f}")


if __name__ == "__main__":
    main()
