"""`kdstudy report` and `kdstudy confirm`: what users read after a study."""

from __future__ import annotations

import argparse
from pathlib import Path

from study.errors import UsageError


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    report = subparsers.add_parser("report", help="write <run>/report/: Pareto fronts, method comparison, summary")
    report.add_argument("run", help="the study folder, <storage>/<name>")
    report.set_defaults(handler=run_report)

    confirm = subparsers.add_parser("confirm", help="re-train the top configurations with new seeds (through Ray)")
    confirm.add_argument("run", help="the study folder, <storage>/<name>")
    confirm.add_argument("--top", type=int, default=3, help="how many of the best configurations (default 3)")
    confirm.add_argument("--seeds", type=int, default=3, help="new seeds per configuration (default 3)")
    confirm.add_argument("--cpus-per-trial", dest="cpus_per_trial", type=float, default=1.0)
    confirm.add_argument("--gpus-per-trial", dest="gpus_per_trial", type=float, default=0.0)
    confirm.add_argument("--max-concurrent", dest="max_concurrent", type=int, default=2)
    confirm.add_argument("--address", help="Ray cluster address; 'auto' joins a running cluster")
    confirm.set_defaults(handler=run_confirm)


def _run_path(text: str) -> str:
    if "://" in text:
        return text
    path = Path(text).expanduser().resolve()
    if not (path / "results" / "trials.parquet").is_file():
        raise UsageError(f"run: no study results in {text} (expected {text}/results/trials.parquet)")
    return str(path)


def run_report(args: argparse.Namespace) -> int:
    from analysis.report import write_report

    run = _run_path(args.run)
    try:
        out = write_report(run)
    except ValueError as error:
        raise UsageError(str(error)) from None
    print(f"report: {out}/")
    return 0


def run_confirm(args: argparse.Namespace) -> int:
    for name in ("top", "seeds", "max_concurrent"):
        if getattr(args, name) < 1:
            raise UsageError(f"{name}: expected >= 1, got {getattr(args, name)}")
    if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0:
        raise UsageError("cpus_per_trial: expected > 0 CPUs and >= 0 GPUs per trial")
    run = _run_path(args.run)
    from study.confirm import confirmation_jobs, read_trials, run_confirmation

    confirmation_jobs(read_trials(run), args.top, args.seeds)  # bad runs fail here, before Ray starts
    outcome = run_confirmation(run, args.top, args.seeds, {"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial},
                               args.max_concurrent, args.address)
    print_confirmation(run)
    return 0 if outcome.errors == [] or outcome.num_trials > len(outcome.errors) else 1


def print_confirmation(run: str) -> None:
    from analysis.load import load_run
    from analysis.ranking import confirmation_summary

    summary = confirmation_summary(load_run(run).confirm)
    print(f"\nconfirmation: {run}/results/confirm.parquet")
    print(summary.to_string(index=False))
