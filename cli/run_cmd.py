"""`kdstudy run`: a Ray Tune + Optuna study in which every trial trains a whole KD chain."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cli.errors import signal_exit_code
from cli.flags import add_flags, flag_values
from runstore.storage import Location
from study.folder import start
from study.spec import STUDY_SETTINGS, StudySpec, load_spec, preset_names, preset_summary

if TYPE_CHECKING:
    import pandas as pd

    from study.runner import StudyOutcome


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run, resume or grow a study; with no flags, the default study")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--spec", type=Path, help="study spec (TOML); flags override it")
    source.add_argument("--preset", help="a study spec shipped with kdstudy (see --list-presets); flags override it")
    parser.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    add_flags(parser, STUDY_SETTINGS.values())
    parser.add_argument("--no-report", dest="report", action="store_false", help="skip the report at the end")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.list_presets:
        for name in preset_names():
            print(f"{name}: {preset_summary(name)}")
        return 0
    spec = load_spec(args.spec, flag_values(args, STUDY_SETTINGS.values()), preset=args.preset)
    grown = start(spec)
    from study.runner import run_study  # Ray's Tune is imported only once the input is known to be good

    if grown:
        print(f"growing the study from {grown} to {spec.trials} trials")
    return finish(run_study(spec), spec, report=args.report)


def finish(outcome: StudyOutcome, spec: StudySpec, report: bool) -> int:
    """Prints where the results are and the best configuration; non-zero when interrupted, when nothing
    succeeded, or when trials are missing."""
    print(f"\nresults: {spec.run / 'results'}/{{trials,hops,epochs,predictions}}/")
    if outcome.signal is not None:
        print(f"interrupted: {outcome.ended} of {outcome.target} trials finished; run the same command to resume",
              file=sys.stderr)
        return signal_exit_code(outcome.signal)
    if outcome.exhausted:
        print(f"the study has {outcome.ended} of the {outcome.target} trials asked for: {outcome.exhausted}")
    counts = ", ".join(f"{n} {status}" for status, n in outcome.counts.items())
    print(f"trials: {counts}")
    print_cost(outcome.trials, spec.run)
    # Tune can end a trial without telling a callback (an actor it failed to reuse): the journal still has it
    # running, and the next session resumes it.
    lost = outcome.missing
    if lost > 0:
        failed = f" ({outcome.failed} failed)" if outcome.failed else ""
        print(f"kdstudy run: the study has {outcome.ended} of {outcome.target} trials: {lost} without a result"
              f"{failed}; run the same command to retry them", file=sys.stderr)
    from analysis.ranking import rank_configurations

    trials = outcome.trials
    ranked = rank_configurations(trials)
    if ranked.empty:
        # This session's errors were shown as they happened (each distinct one once): don't repeat them.
        detail = "the errors are shown above" if outcome.errors else f"first error: {first_error(trials)}"
        print(f"kdstudy run: no trial finished its chain ({counts}); {detail}", file=sys.stderr)
        return 1
    best = ranked.iloc[0]
    print(f"best configuration (student val acc {best['student_val_acc']:.4f}, "
          f"test acc {best['student_test_acc']:.4f}): {best['config_label']}")
    if report:
        from analysis.report import write_report

        print(f"report: {write_report(spec.run.uri)}/")
    return 1 if lost > 0 else 0


def print_cost(trials: pd.DataFrame, run: Location) -> None:
    """What the study trained against its trials trained naively (the report's Cost section says the same)."""
    from analysis.costs import against_naive
    from analysis.load import read_table

    cost = against_naive(trials, read_table(run / "results", "trained"))
    if cost is not None:
        print(f"cost: {cost.line()}")


def first_error(trials: pd.DataFrame) -> str:
    errors = trials.sort_values("trial_id")["error"].dropna()
    return str(errors.iloc[0]) if len(errors) else "none recorded"
