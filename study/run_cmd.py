"""`kdstudy run`: a Ray Tune + Optuna study in which every trial trains a whole KD chain."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.fs as pafs

from study.errors import UsageError
from study.results import ranked_trials, read_rows
from study.spec import StudySpec, load_spec

if TYPE_CHECKING:
    from study.runner import StudyOutcome

# flag dest → spec field, where they differ only in spelling
FLAGS = ("name", "storage", "dataset", "data_dir", "teacher", "student", "ta_candidates", "methods", "trials",
         "epochs", "seed", "objectives", "cpus_per_trial", "gpus_per_trial", "max_concurrent", "max_failures",
         "address", "scheduler")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run (or resume) a study; with no flags, the default study")
    parser.add_argument("--spec", type=Path, help="study spec (TOML); flags override it")
    parser.add_argument("--name", help="study name: results go to <storage>/<name>/ (default: default)")
    parser.add_argument("--storage", help="local folder or pyarrow URI, e.g. s3://bucket/studies (default: runs)")
    parser.add_argument("--dataset")
    parser.add_argument("--data-dir", dest="data_dir")
    parser.add_argument("--teacher")
    parser.add_argument("--student")
    parser.add_argument("--ta-candidates", dest="ta_candidates", help="candidate TA depths, e.g. 8,6,4")
    parser.add_argument("--methods", help="methods to consider, e.g. takd,dgkd,ensemble")
    parser.add_argument("--trials", type=int)
    parser.add_argument("--epochs", type=int, help="epochs per hop")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--objectives", help="student_val_acc, or student_val_acc,train_flops (multi-objective)")
    parser.add_argument("--cpus-per-trial", dest="cpus_per_trial", type=float)
    parser.add_argument("--gpus-per-trial", dest="gpus_per_trial", type=float, help="fractions share a GPU")
    parser.add_argument("--max-concurrent", dest="max_concurrent", type=int)
    parser.add_argument("--max-failures", dest="max_failures", type=int, help="retries of a failed trial")
    parser.add_argument("--address", help="Ray cluster address; 'auto' joins a running cluster")
    parser.add_argument("--scheduler", help="none or asha (early stopping on the student's epochs)")
    parser.add_argument("--no-report", dest="report", action="store_false", help="skip the report at the end")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    check_storage(spec)
    from study.runner import run_study  # Ray is imported only once the input is known to be good

    return finish(run_study(spec), spec, report=args.report)


def finish(outcome: StudyOutcome, spec: StudySpec, report: bool) -> int:
    """Prints where the results are and the best configuration; non-zero when no trial succeeded."""
    if outcome.resumed:
        print(f"\nresumed the study in {outcome.run_path}: it keeps the settings it was started with "
              f"(use another --name for new ones)")
    print(f"\nresults: {outcome.results_path}/{{trials,hops,epochs,predictions}}.parquet")
    best = best_trial(outcome.results_path)
    if best is None:
        first = outcome.errors[0].strip().splitlines()[-1] if outcome.errors else "no trial finished"
        print(f"kdstudy run: every trial failed; first error: {first}", file=sys.stderr)
        return 1
    print(f"best configuration (student val acc {best['student_val_acc']:.4f}, "
          f"test acc {best['student_test_acc']:.4f}): {describe(best)}")
    if report and spec.is_local:
        from analysis.report import write_report

        print(f"report: {write_report(outcome.run_path)}/")
    return 0


def spec_from_args(args: argparse.Namespace) -> StudySpec:
    overrides: dict[str, Any] = {name: getattr(args, name) for name in FLAGS}
    return load_spec(args.spec, overrides)


def check_storage(spec: StudySpec) -> None:
    """Fails before anything is created: the nearest existing folder on the way must be writable."""
    if not spec.is_local:
        try:
            pafs.FileSystem.from_uri(spec.storage_uri)
        except (pafs.ArrowInvalid, OSError, ValueError) as error:
            raise UsageError(f"storage: cannot use {spec.storage} ({error})") from None
        return
    path = Path(spec.run_path)
    while not path.exists():
        path = path.parent
    if not path.is_dir() or not os.access(path, os.W_OK):
        raise UsageError(f"storage: {spec.storage} is not writable ({path} is not a writable folder)")


def best_trial(results_path: str) -> dict[str, Any] | None:
    ranked = ranked_trials(read_rows(f"{results_path}/trials.parquet") or [])
    return ranked[0] if ranked else None


def describe(row: dict[str, Any]) -> str:
    if row["method"] == "nokd":
        return f"nokd {row['student']} (from labels alone)"
    chain = "→".join([row["teacher"], *(str(d) for d in row["ta_depths"] or []), row["student"]])
    parts = [row["method"], chain, f"T={row['temperature']:.2f}", f"α={row['alpha']:.2f}"]
    if row["method"] == "ensemble":
        parts.append(f"{row['weighting']}/{row['space']}")
    if row["method"] == "dgkd":
        parts.append(f"drop={row['drop']}")
    return " ".join(parts)
