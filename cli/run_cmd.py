"""`kdstudy run`: a Ray Tune + Optuna study in which every trial trains a whole KD chain."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.errors import signal_exit_code
from cli.flags import add_flags, flag_values
from runstore.storage import Location, is_empty, locate, read_bytes, write_bytes
from study.spec import STUDY_SETTINGS, StudySpec, load_spec, preset_names, preset_summary
from trainables.typed import InputError

if TYPE_CHECKING:
    import pandas as pd

    from study.runner import StudyOutcome

SETTINGS_FILE = "study.json"
# study.json's section of how the last session ran its trials: rewritten by each session, never compared (a rerun
# may change where and how it runs), read by `kdstudy confirm` for its defaults.
RUNTIME = "runtime"


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
    check_storage(spec.storage)
    grown = check_settings(spec)
    check_resources(spec)
    from study.runner import run_study  # Ray's Tune is imported only once the input is known to be good

    write_settings(spec)
    if grown:
        print(f"growing the study from {grown} to {spec.trials} trials")
    return finish(run_study(spec), spec, report=args.report)


def check_storage(storage: str) -> None:
    """Fails before anything is created: a URI pyarrow can use, or a local path whose nearest existing folder is
    writable."""
    try:
        location = locate(storage)
    except ValueError as error:
        raise InputError("storage", problem=str(error)) from None
    if not location.is_local:
        return
    path = Path(location.path)
    while not path.exists():
        path = path.parent
    if not path.is_dir() or not os.access(path, os.W_OK):
        raise InputError("storage", problem=f"{storage} is not writable ({path} is not a writable folder)")


def check_settings(spec: StudySpec) -> int | None:
    """An existing study may only grow (a larger `trials`); returns its old trial count when it grows. Any other
    changed setting is refused, listing the differences."""
    stored = read_settings(spec.run)
    if stored is None:
        if not is_empty(spec.run):
            raise InputError("name", problem=f"{spec.run} holds files but no {SETTINGS_FILE}; use another --name")
        return None
    stored = {name: value for name, value in stored.items() if name != RUNTIME}
    current = spec.settings()
    changed = [name for name in sorted(set(stored) | set(current))
               if name != "trials" and stored.get(name) != current.get(name)]
    if spec.trials < stored["trials"]:
        changed.insert(0, "trials")
    if changed:
        diffs = ", ".join(f"{name} {_show(stored.get(name))} → {_show(current.get(name))}" for name in changed)
        raise InputError("settings", problem=f"{spec.run} was started with other settings ({diffs}); a study can "
                                             "only grow (a larger --trials); use another --name for new settings")
    return stored["trials"] if spec.trials > stored["trials"] else None


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def read_settings(run: Location) -> dict[str, Any] | None:
    data = read_bytes(run / SETTINGS_FILE)
    return None if data is None else json.loads(data)


def write_settings(spec: StudySpec) -> None:
    document = {**spec.settings(), RUNTIME: spec.runtime()}
    write_bytes(spec.run / SETTINGS_FILE, (json.dumps(document, indent=2) + "\n").encode())


def recorded_runtime(run: Location) -> dict[str, Any]:
    """How the study's last session ran its trials; a study whose study.json predates the record, or a folder
    without one, ran with the defaults."""
    recorded = (read_settings(run) or {}).get(RUNTIME, {})
    return {name: recorded.get(name, default) for name, default in StudySpec().runtime().items()}


def check_resources(spec: StudySpec) -> None:
    from study import cluster  # imports Ray

    cluster.check_resources(spec.cpus_per_trial, spec.gpus_per_trial, spec.address)


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
    lost = 0 if outcome.exhausted else outcome.target - outcome.ended
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
