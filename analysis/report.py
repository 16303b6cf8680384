"""The study report: `<run>/report/` with the Pareto, method and avalanche figures, `summary.md` and
`best_config.json`, written beside the run on the run's own storage (a local folder or an object store).

`summary.md` is assembled from (heading, markdown) sections; a section builder gets the loaded run and the
folder the figures go to, and returns None to skip itself for this run (no confirmation, no predictions).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path

from analysis.avalanche_report import avalanche_section
from analysis.costs import cost_section
from analysis.load import Run, is_missing, load_run, ordered_groups, successful
from analysis.paired import confirmed_per_group, difference_sentence, paired_differences
from analysis.pareto import DEFAULT_FRONTS, pareto_front
from analysis.plots import method_comparison_plot, pareto_plot
from analysis.ranking import best_config, best_per_method, confirmation_summary, rank_configurations, ranked
from analysis.seed_paper import SOURCE as SEED_SOURCE
from analysis.seed_paper import seed_comparison
from analysis.tables import MISSING, Column, fmt_code, fmt_float, fmt_int, fmt_pct, fmt_sci, markdown_table
from runstore import schema
from runstore.storage import Location, write_bytes

Section = tuple[str, str]

# File name of each default front's figure, in DEFAULT_FRONTS order.
FRONT_FIGURES: tuple[str, ...] = ("pareto.png", "pareto_reference.png", "pareto_seconds.png", "pareto_params.png")

# How every table of the report shows a trial column; sections pick the columns they need.
TRIAL_COLUMNS: dict[str, Column] = {
    "config_label": ("configuration", str),
    "group": ("group", str),
    "student_val_acc": ("val acc", fmt_pct),
    "student_test_acc": ("test acc", fmt_pct),
    "train_flops": ("training FLOPs", fmt_sci),
    "reference_flops": ("reference FLOPs", fmt_sci),
    "train_seconds": ("training seconds", lambda v: fmt_float(v, 1)),
    "trial_id": ("trial", fmt_code),
}


def write_report(run: str | Path) -> Location:
    """Writes `<run>/report/` on the run's storage and returns where; raises ValueError when no trial succeeded."""
    loaded = load_run(run)
    if successful(loaded.trials).empty:
        raise ValueError(f"trials: no successful trial in {loaded.location}")
    target = loaded.location / "report"
    with tempfile.TemporaryDirectory(prefix="kdstudy-report-") as folder:
        out = Path(folder)
        _write_figures(loaded, out)
        (out / "best_config.json").write_text(json.dumps(best_config(loaded.trials), indent=2) + "\n")
        sections = build_sections(loaded, out)
        (out / "summary.md").write_text(render_summary(f"Study report: {loaded.location.name}", sections))
        for file in sorted(out.iterdir()):
            write_bytes(target / file.name, file.read_bytes())
    return target


def build_sections(run: Run, out: Path) -> list[Section]:
    """The sections that have something to say about this run, in report order."""
    sections = [
        best_section(run),
        front_section(run, "train_flops"),
        front_section(run, "reference_flops"),
        cost_section(run),
        methods_section(run),
        confirmation_section(run),
        differences_section(run, out),
        seed_paper_section(run),
        avalanche_section(run, out),
        status_section(run),
        figures_section(),
    ]
    return [section for section in sections if section is not None]


def render_summary(title: str, sections: list[Section]) -> str:
    parts = [f"# {title}\n"]
    parts.extend(f"## {heading}\n\n{body.strip()}\n" for heading, body in sections)
    return "\n".join(parts)


def best_section(run: Run) -> Section:
    best = ranked(run.trials).iloc[0]
    lines = [
        f"**{best['config_label']}** (trial `{best['trial_id']}`)",
        "",
        f"- validation accuracy: {fmt_pct(best['student_val_acc'])}",
        f"- test accuracy: {fmt_pct(best['student_test_acc'])}",
        f"- chain training FLOPs from scratch: {fmt_sci(best['train_flops'])} with the teachers' outputs cached, "
        f"{fmt_sci(best['reference_flops'])} as the reference code trains (every upper model on every batch)",
        f"- chain training time from scratch: {fmt_float(best['train_seconds'], 1)} s (the sum of its hops' "
        "training, whichever trial trained them)",
        f"- waited for hops other trials were training: {fmt_float(best['wait_seconds'], 1)} s (not a cost of "
        "the configuration)",
        f"- student parameters: {fmt_int(best['student_params'])}",
        "",
        "Full configuration: `best_config.json` (accepted by `ChainConfig.from_flat`).",
    ]
    return "Best configuration", "\n".join(lines)


# The FLOPs fronts of summary.md: (heading, what the FLOPs count), by cost column.
FLOPS_FRONTS: dict[str, tuple[str, str]] = {
    "train_flops": ("training FLOPs", "training FLOPs (each hop's teachers' outputs computed once and cached, as "
                                      "kdstudy trains)"),
    "reference_flops": ("reference FLOPs", "reference FLOPs (every upper model forwarded on every training batch "
                                           "of every epoch, as the TAKD and DGKD reference code trains)"),
}


def front_section(run: Run, x: str) -> Section | None:
    """The Pareto front of chains on `x` (a FLOPS_FRONTS cost) and validation accuracy; None when no trial has `x`
    (a run written before the column existed)."""
    y = "student_val_acc"
    trials = rank_configurations(run.trials)
    front = trials[pareto_front(trials, x, y)].sort_values([x, y])
    if front.empty:
        return None
    other = "reference_flops" if x == "train_flops" else "train_flops"
    table = markdown_table(front, trial_columns(
        "config_label", x, other, "student_val_acc", "student_test_acc", "train_seconds", "trial_id"))
    heading, counted = FLOPS_FRONTS[x]
    intro = f"Chains that no other chain beats on both {counted} and validation accuracy, cheapest first."
    return f"Pareto front: {heading} vs validation accuracy", f"{intro}\n\n{table}"


def methods_section(run: Run) -> Section:
    best = best_per_method(run.trials)
    best = best.assign(finished_trials=best["group"].map(successful(run.trials)["group"].value_counts()))
    columns = {**trial_columns("group"), "finished_trials": ("finished trials", fmt_int),
               **trial_columns("config_label", "student_val_acc", "student_test_acc", "train_flops", "trial_id",
                               headers={"config_label": "best configuration"})}
    intro = ("Best trial per method group, selected on validation accuracy, one seed each. A group's best is the "
             "maximum over its finished trials, so a group with more trials had more draws: read it with their "
             "number, and with the paired differences of a `kdstudy confirm RUN --per-group` where there are some.")
    return "Method comparison", f"{intro}\n\n{markdown_table(best, columns)}"


def confirmation_section(run: Run) -> Section | None:
    summary = confirmation_summary(run.confirm)
    if summary.empty:
        return None
    table = markdown_table(summary, {
        "config_label": ("configuration", str),
        "group": ("group", str),
        "n_seeds": ("seeds", fmt_int),
        "test_acc_mean": ("mean test acc", fmt_pct),
        "test_acc_std": ("std", fmt_pct),
        "test_acc_ci95": ("95 % CI ±", fmt_pct),
        "val_acc_mean": ("mean val acc", fmt_pct),
        "source_trial_id": ("source trial", fmt_code),
    })
    note = ("Each configuration retrained with new seeds, the same ones for every configuration; the CI is "
            "Student-t over the seeds that finished (none below 2 seeds).")
    return "Seed confirmation", f"{note}\n\n{table}"


DIFFERENCES_INTRO = """\
Each method group is represented by its confirmed configuration (of the group's confirmed configurations, the one
with the best mean validation accuracy) and compared with takd and with the best group (by that mean validation
accuracy). Every configuration is retrained on the same new seeds, and a seed fixes the split and the teacher, so
each difference `a − b` of test accuracy, in points, is taken per seed over the seeds both finished (paired), with a
two-sided 95 % Student-t interval. The p-values are in `differences.csv`."""

CONFIRM_EACH_GROUP = "kdstudy confirm RUN --per-group --seeds 5"


def differences_section(run: Run, out: Path) -> Section | None:
    """("Paired differences between method groups", …), writing `out/differences.csv` on the way; None when the
    run has no confirmation."""
    confirmed = confirmed_per_group(run.confirm)
    if confirmed.empty:
        return None
    differences = paired_differences(run.confirm)
    differences.to_csv(out / "differences.csv", index=False)
    parts = [DIFFERENCES_INTRO]
    if differences.empty:
        parts.append(f"Only one method group is confirmed: nothing to compare yet (`{CONFIRM_EACH_GROUP}` "
                     "confirms the best configuration of each).")
    else:
        parts.append("\n".join(f"- {difference_sentence(row)}" for row in differences.to_dict("records")))
    missing = [g for g in ordered_groups(successful(run.trials)["group"]) if g not in set(confirmed["group"])]
    if missing:
        parts.append(f"Not confirmed, so in no difference: {', '.join(missing)} (`{CONFIRM_EACH_GROUP}`).")
    parts.append(markdown_table(confirmed, {"group": ("group", str),
                                            "config_label": ("confirmed configuration", str),
                                            "n_seeds": ("seeds", fmt_int),
                                            "val_acc_mean": ("mean val acc", fmt_pct),
                                            "source_trial_id": ("source trial", fmt_code)}))
    return "Paired differences between method groups", "\n\n".join(parts)


def seed_paper_section(run: Run) -> Section | None:
    """The seed paper's published accuracies beside the confirmed ones; None unless the study repeats its setup."""
    table = seed_comparison(run.trials, run.confirm)
    if table is None:
        return None
    not_confirmed = f"not confirmed yet: run {CONFIRM_EACH_GROUP}"
    shown = table.assign(
        config_label=table["config_label"].fillna(not_confirmed),
        interval=[_interval(low, high, n) for low, high, n in zip(table["ci_low"], table["ci_high"],
                                                                   table["n_seeds"])])
    body = markdown_table(shown, {"method": ("method", str),
                                  "published": ("published test acc", lambda v: f"≈ {100 * v:.0f} %"),
                                  "group": ("group", str),
                                  "config_label": ("confirmed configuration", str),
                                  "n_seeds": ("seeds", fmt_int),
                                  "test_acc_mean": ("mean test acc", fmt_pct),
                                  "interval": ("95 % CI", str)})
    intro = (f"Published student test accuracies, plain CNN 10 layers → 2 layers on CIFAR-100 ({SEED_SOURCE}), "
             "beside this study's confirmed configuration of each group (mean over the confirmation seeds). The "
             "reference code picks checkpoints on the test set; this study picks them on a validation split.")
    return "The seed paper's table beside ours", f"{intro}\n\n{body}"


def _interval(low: float, high: float, n_seeds: object) -> str:
    if is_missing(n_seeds):
        return MISSING
    if is_missing(low):
        return f"no interval ({int(n_seeds)} seed)"
    return f"[{fmt_pct(low)}, {fmt_pct(high)}]"


def status_section(run: Run) -> Section:
    counts = run.trials["status"].value_counts().rename_axis("status").reset_index(name="trials")
    body = markdown_table(counts, {"status": ("status", str), "trials": ("trials", fmt_int)})
    diverged = run.trials[run.trials["status"] == schema.DIVERGED].sort_values("trial_id")
    if not diverged.empty:
        table = markdown_table(diverged, {"config_label": ("configuration", str), "error": ("where", str),
                                          "trial_id": ("trial", fmt_code)})
        body += (f"\n\n{len(diverged)} trial{'s' if len(diverged) != 1 else ''} diverged (a hop's training loss "
                 f"blew up; Optuna was told they failed):\n\n{table}")
    return "Trials by status", body


def figures_section() -> Section:
    lines = [f"![{name}]({name})" for name in (*FRONT_FIGURES, "methods.png")]
    return "Figures", "\n\n".join(lines)


def trial_columns(*names: str, headers: Mapping[str, str] | None = None) -> dict[str, Column]:
    """The TRIAL_COLUMNS `names`, in that order; `headers` renames some for one table."""
    renamed = headers or {}
    return {name: (renamed.get(name, TRIAL_COLUMNS[name][0]), TRIAL_COLUMNS[name][1]) for name in names}


def _write_figures(run: Run, out: Path) -> None:
    for (x, x_dir, y, y_dir), name in zip(DEFAULT_FRONTS, FRONT_FIGURES):
        pareto_plot(run.trials, x, y, x_dir, y_dir, out / name)
    method_comparison_plot(run.trials, run.confirm, out / "methods.png")

