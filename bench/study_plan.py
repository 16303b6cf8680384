"""A study's planned cost, printed before it spends it: the seed preset grown to 100 trials (CIFAR-100, plain10 →
TAs → plain2, 160 epochs per hop), without and with chain-level successive halving, and how long planning takes.

Goal: the plan prints in well under a second, no data loaded (the CIFAR-100 folder written here holds one image per
class, only so that the spec's check of its data dir passes; the plan counts CIFAR-100's own split sizes).
Run: `python bench/study_plan.py` (a second or two, most of it imports).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' CIFAR writer

from study.plan import StudyPlan, plan_study  # noqa: E402
from study.spec import StudySpec, load_spec  # noqa: E402
from tests.cifar_files import write_cifar100  # noqa: E402
from trainables.plan import ForwardCost  # noqa: E402

GOAL_S = 0.5


def seed_spec(folder: Path, trials: int, scheduler: str) -> StudySpec:
    """The seed preset grown to `trials` trials, its storage and a one-image-a-class CIFAR-100 under `folder`."""
    data = folder / "cifar"
    if not data.exists():
        write_cifar100(data, train_per_class=1, test_per_class=1)
    return load_spec(None, {"trials": trials, "data_dir": str(data), "scheduler": scheduler,
                            "storage": str(folder / "runs")}, preset="seed-cifar100")


def seed_study_plan(trials: int, scheduler: str, forward_cost: ForwardCost | None = None) -> StudyPlan:
    """The plan of the seed preset grown to `trials` trials under `scheduler`, in FLOPs or priced by `forward_cost`
    (bench/gpu_check.py prices it in measured seconds)."""
    with tempfile.TemporaryDirectory() as folder:
        return plan_study(seed_spec(Path(folder), trials, scheduler), forward_cost=forward_cost)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        seconds = []
        for scheduler in ("halving", "none", "halving"):
            spec = seed_spec(Path(folder), args.trials, scheduler)
            started = time.perf_counter()
            line = plan_study(spec).line()
            seconds.append(time.perf_counter() - started)
            print(f"{scheduler}: {line}  [{seconds[-1] * 1e3:.0f} ms]")
    warm = max(seconds[1:])
    print(f"study_plan: the seed preset's {args.trials}-trial plan in {warm * 1e3:.0f} ms (goal < {GOAL_S * 1e3:.0f} "
          f"ms); the first in a process {seconds[0] * 1e3:.0f} ms, as it counts each model's inference FLOPs once "
          "(torch's FLOP counter imports torch._dynamo on its first use)")
    return 0 if warm < GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
