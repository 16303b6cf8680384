"""The driver's cost as a study grows: ≥ 500 fast trials whose records are CIFAR-100-sized (5 hops × 10,000 test
predictions), run through the real study machinery (searcher, reconcile, Tune, the trial-side writer), with a
stand-in trainable that skips training.

Prints, from one run: Tune's experiment-state bytes per trial, the driver's peak-RSS growth from trial 50 to the
last trial, and the driver's time per trial at the end (trials N-50..N) ÷ at trials 50..100.
Goals: ≤ 10 KB per trial, ≤ 100 MB growth, ratio ≤ 1.2.
Run: `python bench/driver_scale.py [--trials 500]` (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import ray
import torch
from ray import tune

from study.runner import run_study
from study.space import chain_config
from study.search import StudySearch
from study.spec import StudySpec, validate
from study.trainable import FINISHED, OUTCOME, TrialContext, TrialReporter
from trainables import ChainResult, HopResult
from trainables.results import TestPredictions

HOPS, SAMPLES, CLASSES, EPOCHS = 5, 10_000, 100, 3


def standin_trainable(config: dict[str, Any], context: TrialContext) -> None:
    """A trial as the driver sees it — epoch reports, per-hop epoch files, the final rows and result — without
    training: 5 hops with CIFAR-100-sized test predictions."""
    trial_id = config["trial_id"]
    cfg = chain_config(context.base, config)
    results = context.results()
    reporter = TrialReporter(cfg, trial_id, results, context)
    reporter.student_hop = HOPS - 1
    hops = [_hop(index, trial_id) for index in range(HOPS)]
    for hop in hops:
        for epoch in range(1, EPOCHS + 1):
            reporter({"event": "epoch", "hop": hop.index, "key": hop.key, "role": hop.role, "arch": hop.arch,
                      "epoch": epoch, "global_epoch": hop.index * EPOCHS + epoch, "lr": 0.01, "train_loss": 1.0,
                      "loss_ce": 0.5, "loss_kd": 0.5, "val_acc": 0.5, "val_loss": 1.0, "seconds": 0.01})
        reporter({"event": "hop", **hop.to_dict()})
    targets = torch.randint(0, CLASSES, (SAMPLES,))
    results.write_finished(trial_id, cfg, ChainResult(cfg, hops, test_targets=targets))
    tune.report({**reporter.metrics(hops[-1].val_acc, EPOCHS, reporter.train_flops), OUTCOME: FINISHED})


def _hop(index: int, trial_id: str) -> HopResult:
    role = "teacher" if index == 0 else "student" if index == HOPS - 1 else "ta"
    predictions = TestPredictions(torch.randint(0, CLASSES, (SAMPLES,), dtype=torch.int16),
                                  torch.rand(SAMPLES).to(torch.float16))
    return HopResult(index=index, arch=f"plain{10 - 2 * index}", role=role, key=f"{trial_id}{index:016d}",
                     teachers=list(range(index)), best_epoch=EPOCHS, val_acc=0.5 + 0.001 * index, test_acc=0.5,
                     params=1000, flops=10**6, train_flops=10**9, reference_flops=10**9, train_seconds=1.0,
                     spent_flops=10**9, spent_seconds=1.0, wait_seconds=0.0, upper_forward_samples=0, kl_terms=0,
                     reused=False, predictions=predictions)


class DriverClock(tune.Callback):
    """When each trial ended, the driver's resident memory (bytes) then, its CPU seconds (user + system, all its
    threads) so far, and how many of those its searcher spent proposing trials (Optuna's TPE)."""

    def __init__(self) -> None:
        self.ended: list[tuple[float, int]] = []
        self.cpu: list[float] = []
        self.sampling: list[float] = []

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        process = psutil.Process()
        self.ended.append((time.perf_counter(), process.memory_info().rss))
        self.cpu.append(sum(process.cpu_times()[:2]))
        self.sampling.append(SAMPLING[0])


SAMPLING = [0.0]  # CPU seconds in StudySearch.suggest, counted by the wrapper below


def _count_sampling() -> None:
    """TPE's cost per proposal grows with the trials it learns from; the clock counts it apart from the rest."""
    suggest = StudySearch.suggest

    def counted(self: StudySearch, trial_id: str) -> Any:
        started = time.process_time()
        try:
            return suggest(self, trial_id)
        finally:
            SAMPLING[0] += time.process_time() - started

    StudySearch.suggest = counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    assert args.trials >= 150, "the ratio compares trials 50..100 with the last 50"
    storage = tempfile.mkdtemp(prefix="kdstudy-scale-")
    spec = validate(StudySpec(name="scale", storage=storage, methods=("takd", "dgkd", "ensemble"),
                              trials=args.trials, epochs=EPOCHS, max_concurrent=args.cpus, max_failures=0,
                              chain={"width": 0.25, "train_size": 300, "val_size": 100}))
    ray.init(num_cpus=args.cpus, include_dashboard=False, configure_logging=False, log_to_driver=False)
    clock = DriverClock()
    _count_sampling()
    started = time.perf_counter()
    outcome = run_study(spec, trainable=standin_trainable, callbacks=[clock])
    seconds = time.perf_counter() - started
    assert outcome.counts.get("TERMINATED") == args.trials, outcome
    report(spec, clock, args.trials, seconds)


def report(spec: StudySpec, clock: DriverClock, trials: int, seconds: float) -> None:
    ended = clock.ended
    session = next((Path(spec.run.path) / "tune").iterdir())
    state = max(session.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    per_trial = state.stat().st_size / trials
    times = [t for t, _ in ended]
    early = (times[99] - times[49]) / 50
    late = (times[trials - 1] - times[trials - 51]) / 50
    growth_mib = (max(rss for _, rss in ended[49:]) - ended[49][1]) / 2**20  # the peak after trial 50, over it
    tune_bytes = sum(p.stat().st_size for p in (Path(spec.run.path) / "tune").rglob("*") if p.is_file())
    print(f"{trials} trials, {HOPS} hops × {SAMPLES:,} test predictions each, {seconds:.0f} s")
    print(f"experiment state: {per_trial / 1024:.1f} KiB per trial ({state.stat().st_size / 2**20:.1f} MiB)   "
          f"goal ≤ 10 KB")
    print(f"driver peak RSS growth, trial 50 → {trials}: {growth_mib:.0f} MiB   goal ≤ 100 MB")
    print(f"driver time per trial, trials {trials - 50}-{trials} ÷ trials 50-100: {late / early:.2f} "
          f"({late * 1000:.0f} ms / {early * 1000:.0f} ms of wall time)   goal ≤ 1.2")
    cpu, sampling = clock.cpu, clock.sampling
    cpu_early, cpu_late = (cpu[99] - cpu[49]) / 50, (cpu[trials - 1] - cpu[trials - 51]) / 50
    tpe_early = (sampling[99] - sampling[49]) / 50
    tpe_late = (sampling[trials - 1] - sampling[trials - 51]) / 50
    print(f"  the same in the driver's CPU time: {cpu_late / cpu_early:.2f} ({cpu_late * 1000:.0f} ms / "
          f"{cpu_early * 1000:.0f} ms); of which Optuna's proposals {tpe_late * 1000:.0f} ms / "
          f"{tpe_early * 1000:.0f} ms; the rest {(cpu_late - tpe_late) / (cpu_early - tpe_early):.2f}")
    print(f"Tune's folder: {tune_bytes / trials / 1024:.1f} KiB per trial")


if __name__ == "__main__":
    main()
