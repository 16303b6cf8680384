"""Ray's overhead: one chain through a one-trial study vs `train_chain` directly, as ratios from one run.

Goal: ≤ 1.05 for a chain of a minute or more (cluster start excluded; printed separately).
Run: `python bench/ray_overhead.py [--epochs 8]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import ray
import torch

from study.runner import run_study
from study.space import warm_start_points
from study.spec import StudySpec, validate
from trainables import ChainConfig, train_chain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    spec = validate(StudySpec(name="bench", storage=tempfile.mkdtemp(prefix="kdstudy-bench-"), methods=("takd",),
                              trials=1, epochs=args.epochs, cpus_per_trial=args.cpus, max_concurrent=1))
    # The one trial is the TAKD warm start: train the very same chain directly.
    point = warm_start_points(spec)[0]
    cfg = ChainConfig.from_flat({**spec.base_config(), **point, "ta_depths": [int(d) for d in
                                                                               point["ta_depths"].split("-")]})

    torch.set_num_threads(args.cpus)
    started = time.perf_counter()
    direct = train_chain(cfg)
    direct_seconds = time.perf_counter() - started

    started = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, configure_logging=False, log_to_driver=False)
    init_seconds = time.perf_counter() - started
    started = time.perf_counter()
    outcome = run_study(spec)
    study_seconds = time.perf_counter() - started
    assert not outcome.errors, outcome.errors

    print(f"chain {' → '.join(cfg.archs)}, {args.epochs} epochs/hop, {args.cpus} CPUs: "
          f"direct train_chain {direct_seconds:.1f} s (student test acc {direct.student.test_acc:.4f})")
    print(f"one-trial study / direct = {study_seconds / direct_seconds:.3f}   (cluster already running)")
    print(f"(ray.init + study) / direct = {(init_seconds + study_seconds) / direct_seconds:.3f}")


if __name__ == "__main__":
    main()
