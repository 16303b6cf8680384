"""The report's "Error avalanche" section: the teacher→student table with bootstrap intervals, the nokd control,
sentences that claim only what the intervals support, and the figure.

The numbers come from `analysis.avalanche.student_pairs`; this module only words and formats them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from analysis.avalanche import (CONTROL_METHOD, INTERVAL_METRICS, LEVEL, RESAMPLES, TEACHER_KEY_CHARS, claim,
                                control_candidates, run_student_pairs, run_summary)
from analysis.load import Run, is_missing
from analysis.plots import avalanche_plot
from analysis.tables import MISSING, Column, Formatter, fmt_code, fmt_float, fmt_int, fmt_pct, markdown_table

Section = tuple[str, str]

LEVEL_TEXT = f"{100 * LEVEL:.0f} %"

CONTROL_LABEL = f"{CONTROL_METHOD} (control)"

AVALANCHE_INTRO = f"""\
Each row compares a student with its teacher on the test split: the best successful trial (by student validation
accuracy) of each method group and, as the control, a `{CONTROL_METHOD}` student (trained on the labels only, with
the same seed, architecture, data and recipe) compared with the same teacher (*teacher*: the teacher hop's key).
*P(s wrong | t wrong)* is the share of the teacher's errors the student repeats (inheritance); *P(s wrong | t right)*
is the student's error rate where the teacher is right (the baseline); *lift* is their ratio (1 = the student's
errors are independent of the teacher's); *same-class share* is the share of the student's errors where it predicts
the teacher's exact wrong class. Independently trained models fail on the same hard images and even agree on some
wrong classes, so the control's values are what training alone gives: a method inherits the teacher's errors only as
far as it exceeds its control, and a TAKD avalanche shows as a larger excess than DGKD's or an ensemble's. Brackets
hold {LEVEL_TEXT} bootstrap intervals over the test images ({RESAMPLES:,} resamples, percentile); each difference
from the control is computed on the same resamples (paired) and called higher or lower only when its interval
excludes 0."""

# The metrics the text compares with the control: (name in the text, unit of a difference; "" for a ratio).
# The baseline is not among them: it is the student's own error, not something it inherits.
_FINDINGS: dict[str, tuple[str, str]] = {
    "teacher_error_carried": ("inheritance", "points"),
    "same_class_share": ("same-class share", "points"),
    "lift": ("lift", ""),
}


def _share(value: float) -> str:
    return fmt_pct(value, 1)


def _with_interval(formatter: Formatter) -> Formatter:
    """A cell of a (value, low, high) triple: "34.1 % [30.2, 38.0]"; the bare value when there is no interval."""
    def cell(triple: tuple[Any, Any, Any]) -> str:
        value, low, high = triple
        if is_missing(value):
            return MISSING
        if is_missing(low) or is_missing(high):
            return formatter(value)
        return f"{formatter(value)} [{formatter(low).removesuffix(' %')}, {formatter(high).removesuffix(' %')}]"
    return cell


def _teacher_cell(key: Any) -> str:
    return MISSING if is_missing(key) else fmt_code(str(key)[:TEACHER_KEY_CHARS])


# columns of `_table_frame` → (header, formatter); every column from TAs on is numeric
STUDENT_PAIR_COLUMNS: dict[str, Column] = {
    "label": ("group", str),
    "trial_id": ("trial", fmt_code),
    "teacher_key": ("teacher", _teacher_cell),
    "num_tas": ("TAs", fmt_int),
    "student_val_acc": ("student val acc", fmt_pct),
    "error_rate": ("student error", _share),
    "teacher_error_carried": ("P(s wrong | t wrong)", _with_interval(_share)),
    "baseline": ("P(s wrong | t right)", _with_interval(_share)),
    "lift": ("lift", _with_interval(fmt_float)),
    "same_class_share": ("same-class share", _with_interval(_share)),
    "n": ("test images", fmt_int),
    "teacher_errors": ("teacher errors", fmt_int),
    "student_errors": ("student errors", fmt_int),
}


def _table_frame(pairs: pd.DataFrame) -> pd.DataFrame:
    """`pairs` with the table's display columns: the row label, TAs (none for a control) and interval triples."""
    control = pairs["is_control"].astype(bool)
    frame = pairs.assign(label=pairs["group"].where(~control, CONTROL_LABEL),
                         num_tas=(pairs["num_hops"].astype(int) - 2).clip(lower=0).astype(float).where(~control))
    for metric in INTERVAL_METRICS:
        frame[metric] = list(zip(pairs[metric], pairs[f"{metric}_low"], pairs[f"{metric}_high"]))
    return frame


def student_pair_markdown(pairs: pd.DataFrame) -> str:
    """The markdown table of `student_pairs`, numbers right-aligned."""
    return markdown_table(_table_frame(pairs), STUDENT_PAIR_COLUMNS, right=list(STUDENT_PAIR_COLUMNS)[3:])


def _signed(value: float, unit: str) -> str:
    return f"{100 * value:+.1f}" if unit == "points" else f"{value:+.2f}"


def finding(row: pd.Series, metric: str) -> str:
    """One metric of a KD row against its control, worded by what the difference's interval supports."""
    name, unit = _FINDINGS[metric]
    diff, low, high = (row[f"{metric}_diff{suffix}"] for suffix in ("", "_low", "_high"))
    if is_missing(low) or is_missing(high):
        return f"{name} cannot be compared with the control's (undefined on too many resamples)"
    amount = f"{_signed(diff, unit)}{' ' + unit if unit else ''}, {LEVEL_TEXT} CI [{_signed(low, unit)}, " \
             f"{_signed(high, unit)}]"
    verdict = {1: "is higher than", -1: "is lower than", 0: "cannot be told apart from"}[claim(low, high)]
    return f"{name} {verdict} the control's: {amount}"


def control_findings(pairs: pd.DataFrame) -> list[str]:
    """A bullet per KD row that has a control: its inheritance, same-class share and lift against the control."""
    bullets = []
    for _, row in pairs[~pairs["is_control"].astype(bool) & pairs["control_trial_id"].notna()].iterrows():
        findings = "; ".join(finding(row, metric) for metric in _FINDINGS)
        bullets.append(f"- **{row['group']}** (`{row['trial_id']}`) against its `{CONTROL_METHOD}` control "
                       f"(`{row['control_trial_id']}`): {findings}.")
    return bullets


def missing_control_note(pairs: pd.DataFrame, has_candidates: bool) -> str | None:
    """What to do where a KD row has no control; None when every row has one."""
    uncontrolled = pairs[~pairs["is_control"].astype(bool) & pairs["control_trial_id"].isna()]
    if uncontrolled.empty:
        return None
    groups = ", ".join(uncontrolled["group"])
    how = (f"include `{CONTROL_METHOD}` in the study's methods (`methods` in the spec, or `kdstudy run --methods "
           f"…,{CONTROL_METHOD}`), with the same seed and training settings as the chains it controls")
    if not has_candidates:
        return (f"**No control.** The study has no finished `{CONTROL_METHOD}` trial with test predictions, so these "
                f"numbers cannot be told apart from the agreement independently trained models reach anyway. To get "
                f"one, {how}.")
    return (f"**No control for {groups}:** no finished `{CONTROL_METHOD}` trial has the seed, student "
            f"architecture, data and recipe of these chains (on the same test images), so their numbers cannot be "
            f"told apart from the agreement independently trained models reach anyway. To get one, {how}.")


def avalanche_section(run: Run, out: Path) -> Section | None:
    """("Error avalanche", markdown) for the run's report, writing `out/avalanche.png` on the way.

    None when the run has no predictions (or no trial with a teacher), so the report skips the section.
    """
    pairs = run_student_pairs(run)
    if pairs.empty:
        return None
    avalanche_plot(run_summary(run), Path(out) / "avalanche.png", pairs)
    parts = [AVALANCHE_INTRO, student_pair_markdown(pairs), control_text(run, pairs),
             "![Error avalanche](avalanche.png)"]
    return "Error avalanche", "\n\n".join(part for part in parts if part)


def control_text(run: Run, pairs: pd.DataFrame) -> str | None:
    """What the run's `student_pairs` say against the control: a bullet per controlled row, then what to do
    where a row has no control; None when there is nothing to say (no rows)."""
    if pairs.empty:
        return None
    findings = control_findings(pairs)
    note = missing_control_note(pairs, not control_candidates(run.trials, run.predictions).empty)
    parts = ["\n".join(findings) if findings else None, note]
    return "\n\n".join(part for part in parts if part) or None
