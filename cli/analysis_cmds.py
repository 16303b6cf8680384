"""`kdstudy report` and `kdstudy confirm`: what users read after a study, from any storage the study accepts."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from cli.flags import add_flags
from study.folder import recorded_runtime
from study.spec import RECORDED_RUNTIME, STUDY_SETTINGS, check_runtime
from trainables.methods import Param
from trainables.typed import InputError

# A confirmation's own settings. --top has no default in the parser: --top and --per-group exclude each other, so a
# given --top must be told from the default.
TOP = Param("top", int, 3, "how many of the best configurations", low=1, scope="confirm")
SEEDS = Param("seeds", int, 3, "new seeds per configuration", low=1, scope="confirm")


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    report = subparsers.add_parser("report", help="write <run>/report/: Pareto fronts, method comparison, summary")
    report.add_argument("run", help="the study: <storage>/<name>, a local folder or a URI such as s3://b/studies/x")
    report.set_defaults(handler=run_report)

    confirm = subparsers.add_parser("confirm", help="re-train the top configurations, or each method group's best, "
                                                    "with new seeds (through Ray)")
    confirm.add_argument("run", help="the study: <storage>/<name>, a local folder or a URI such as s3://b/studies/x")
    add_flags(confirm, [TOP])
    confirm.add_argument("--per-group", dest="per_group", action="store_true",
                         help="the best configuration of each method group, all on the same new seeds (paired)")
    add_flags(confirm, [SEEDS])
    # no defaults here: a confirmation runs like its study (confirm_runtime)
    add_flags(confirm, [replace(STUDY_SETTINGS[name], help=f"{STUDY_SETTINGS[name].help} (default: the study's)")
                        for name in RECORDED_RUNTIME], show_default=False)
    add_flags(confirm, [STUDY_SETTINGS["address"]], show_default=False)
    confirm.set_defaults(handler=run_confirm)


def check_run(text: str) -> str:
    """The run's URI, when it holds a study's results (checked before anything starts)."""
    from runstore.storage import is_empty, locate

    try:
        run = locate(text)
    except ValueError as error:
        raise InputError("run", problem=str(error)) from None
    if is_empty(run / "results" / "trials"):
        raise InputError("run", problem=f"no study results in {text} (expected {run / 'results' / 'trials'}/)")
    return run.uri


def run_report(args: argparse.Namespace) -> int:
    from analysis.report import write_report

    run = check_run(args.run)
    try:
        out = write_report(run)
    except ValueError:  # the one ValueError write_report raises: no trial succeeded
        raise InputError("run", "a study with a successful trial", args.run) from None
    print(f"report: {out}/")
    return 0


def run_confirm(args: argparse.Namespace) -> int:
    if args.per_group and args.top is not None:
        raise InputError("top", problem=f"--top and --per-group exclude each other, got --top {args.top} and "
                                        "--per-group")
    top = TOP.default if args.top is None and not args.per_group else args.top
    seeds = SEEDS.default if args.seeds is None else args.seeds
    TOP.check(top)
    SEEDS.check(seeds)
    run = check_run(args.run)
    runtime = confirm_runtime(args, run)
    from study import cluster  # imports Ray
    from study.confirm import planned_jobs, run_confirmation

    jobs = planned_jobs(run, top, seeds, args.per_group)  # bad runs fail here, before Ray starts
    cluster.check_resources(runtime["cpus_per_trial"], runtime["gpus_per_trial"], args.address)
    print(f"resources: {runtime['cpus_per_trial']:g} CPU and {runtime['gpus_per_trial']:g} GPU per trial, "
          f"at most {runtime['max_concurrent']} trials at a time", flush=True)
    outcome = run_confirmation(run, jobs, {"cpu": runtime["cpus_per_trial"], "gpu": runtime["gpus_per_trial"]},
                               runtime["max_concurrent"], args.address)
    print_confirmation(run)
    return 0 if not outcome.errors or outcome.jobs > len(outcome.errors) else 1


def confirm_runtime(args: argparse.Namespace, run: str) -> dict[str, Any]:
    """A confirmation runs its trials like its study did (CPUs and GPUs per trial, how many at a time), but for
    what a flag says."""
    from runstore.storage import locate

    recorded = recorded_runtime(locate(run))
    runtime = {name: recorded[name] if getattr(args, name) is None else getattr(args, name) for name in recorded}
    check_runtime(runtime)
    return runtime


def print_confirmation(run: str) -> None:
    from analysis.load import read_table
    from analysis.paired import difference_sentence, paired_differences
    from analysis.ranking import confirmation_summary
    from runstore.storage import locate

    results = locate(run) / "results"
    confirm = read_table(results, "confirm", optional=True)
    print(f"\nconfirmation: {results / 'confirm'}/")
    print(confirmation_summary(confirm).to_string(index=False))
    differences = paired_differences(confirm)
    if not differences.empty:
        print("\npaired differences of test accuracy (analysis/paired.py; kdstudy report writes them too):")
        print("\n".join(f"  {difference_sentence(row)}" for row in differences.to_dict("records")))
