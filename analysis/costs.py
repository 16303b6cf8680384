"""What a study cost: what it spent in all (failed and killed attempts included) against what its trials would cost
trained from scratch one by one at full fidelity (naive), what caching the teachers' outputs saves against the
TAKD/DGKD reference code, and how long trials waited for hops that other trials were training. `runstore.schema`
says what each column counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.load import Run, ordered_groups, read_table, successful
from analysis.tables import fmt_float, fmt_int, fmt_pct, fmt_sci

COST_INTRO = (
    "Every cost counts training only: each hop's steps, its validation after every epoch, its teachers' forward "
    "passes and a learned ensemble's fitting; test evaluation is in none. A trial's *training FLOPs* and *seconds* "
    "are its chain's from scratch (a hop another trial trained counts at what it cost that trial), so they do not "
    "depend on the order trials ran in; the time a trial waited for such a hop is reported apart.")


@dataclass(frozen=True)
class Spent:
    """What the study's trials trained, every attempt counted once per hop training (`results/trained/`)."""

    flops: int
    seconds: float
    trainings: int
    diverged: int


@dataclass(frozen=True)
class AgainstNaive:
    """What a study spent against naive: every trial's chain trained from scratch, one by one, at full fidelity."""

    spent: Spent
    naive_flops: int
    naive_seconds: float

    @property
    def flops_ratio(self) -> float | None:
        return self.spent.flops / self.naive_flops if self.naive_flops else None

    @property
    def seconds_ratio(self) -> float | None:
        return self.spent.seconds / self.naive_seconds if self.naive_seconds else None

    def line(self) -> str:
        """`spent 4.5e+09 FLOPs (0.75× naive 6e+09), 5.5 s (0.46× naive 12.0 s)`"""
        if not self.naive_flops:
            return (f"spent {fmt_sci(self.spent.flops)} FLOPs, {fmt_float(self.spent.seconds, 1)} s (no trial has a "
                    "cost to compare with yet)")
        return (f"spent {fmt_sci(self.spent.flops)} FLOPs ({_times(self.flops_ratio)} naive "
                f"{fmt_sci(self.naive_flops)}), {fmt_float(self.spent.seconds, 1)} s ({_times(self.seconds_ratio)} "
                f"naive {fmt_float(self.naive_seconds, 1)} s)")


def against_naive(trials: pd.DataFrame, trained: pd.DataFrame) -> AgainstNaive | None:
    """What the study's `trained` rows add up to against its trials' naive cost; None without any trained row."""
    spent = spent_by(trained, trials)
    if spent is None:
        return None
    return AgainstNaive(spent, *naive_cost(trials))


def naive_cost(trials: pd.DataFrame) -> tuple[int, float]:
    """The trials' FLOPs and seconds trained from scratch one by one at full fidelity. A trial's naive FLOPs are its
    `naive_flops` (a chain a scheduler stopped below full fidelity: its planned full-fidelity cost), else its
    `train_flops` (a chain trained in full, or a row written before `naive_flops`); its naive seconds are its
    `train_seconds` scaled by the same naive_flops / train_flops."""
    train_flops, naive_flops = _floats(trials["train_flops"]), _floats(trials["naive_flops"])
    naive_flops = np.where(np.isnan(naive_flops), train_flops, naive_flops)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(train_flops > 0, naive_flops / train_flops, 1.0)
    return int(np.nansum(naive_flops)), float(np.nansum(_floats(trials["train_seconds"]) * scale))


def _floats(column: pd.Series) -> np.ndarray:
    return column.astype("Float64").to_numpy(dtype=float, na_value=np.nan)


def _times(ratio: float | None) -> str:
    return f"{fmt_float(ratio, 2)}×" if ratio is not None else "–"


def spent_by(trained: pd.DataFrame, trials: pd.DataFrame | None) -> Spent | None:
    """What the `trained` rows of `trials` (the search's, or the seed confirmation's) add up to; None without any."""
    if trials is None:
        return None
    return _spent(trained[trained["trial_id"].isin(set(trials["trial_id"]))])


def _trainings(spent: Spent) -> str:
    return f"{fmt_int(spent.trainings)} hop training{'s' if spent.trainings != 1 else ''}"


def _spent(trained: pd.DataFrame) -> Spent | None:
    if trained.empty:
        return None
    return Spent(int(trained["train_flops"].sum()), float(trained["train_seconds"].sum()), len(trained),
                 int(trained["diverged"].fillna(False).astype(bool).sum()))


def caching_savings(trials: pd.DataFrame) -> pd.DataFrame:
    """Per method group, over its finished trials: 1 − train_flops / reference_flops (median, min, max, n)."""
    ok = successful(trials).dropna(subset=["train_flops", "reference_flops"])
    saving = 1 - ok["train_flops"].astype(float) / ok["reference_flops"].astype(float)
    stats = saving.groupby(ok["group"]).agg(["median", "min", "max", "count"])
    return stats.reindex(ordered_groups(stats.index)).rename_axis("group").reset_index()


def caching_sentence(row: pd.Series) -> str:
    n = f"{int(row['count'])} finished trial{'s' if row['count'] != 1 else ''}"
    if row["max"] <= 0:
        return f"- **{row['group']}**: nothing to cache: its chains train no hop from an upper model's outputs ({n})."
    low, high = fmt_pct(row["min"], 0), fmt_pct(row["max"], 0)
    spread = "" if low == high else f" (from {low} to {high})"
    return (f"- **{row['group']}**: caching the upper models' outputs saves a median {fmt_pct(row['median'], 0)} of "
            f"the reference code's training FLOPs{spread}, over {n}.")


def cost_section(run: Run) -> tuple[str, str]:
    trials = run.trials
    lines = [COST_INTRO, ""]
    trained = read_table(run.location / "results", "trained")  # read once: it grows with every hop training
    cost = against_naive(trials, trained)
    if cost is None:
        lines.append(f"- Trained from scratch one by one, the trials would cost {fmt_sci(naive_cost(trials)[0])} "
                     "FLOPs (the sum of their training FLOPs); this run has no `trained` table to say what it spent.")
    else:
        spent = cost.spent
        diverged = f", {spent.diverged} of them to a blow-up" if spent.diverged else ""
        seconds = f" ({_times(cost.seconds_ratio)} the seconds, {fmt_float(cost.naive_seconds, 1)} s)" \
            if cost.seconds_ratio is not None else ""
        lines += [
            f"- Spent by the study: {fmt_sci(spent.flops)} FLOPs and {fmt_float(spent.seconds, 1)} s of training in "
            f"{_trainings(spent)}{diverged}, failed and killed attempts included.",
            f"- Trained from scratch one by one at full fidelity, the trials would cost {fmt_sci(cost.naive_flops)} "
            f"FLOPs (each trial's training FLOPs; one a scheduler stopped early at its full-fidelity cost): the study "
            f"spent {_times(cost.flops_ratio)} that{seconds}, as trials reuse each other's hops and stopped chains "
            "train less.",
        ]
    confirming = spent_by(trained, run.confirm)
    if confirming is not None:
        lines.append(f"- Seed confirmation spent {fmt_sci(confirming.flops)} FLOPs and "
                     f"{fmt_float(confirming.seconds, 1)} s more in {_trainings(confirming)}.")
    waits = trials["wait_seconds"].dropna()
    if len(waits):
        longest = trials.loc[waits.idxmax()]
        lines.append(f"- Trials waited {fmt_float(waits.sum(), 1)} s in all for hops other trials were training "
                     f"(at most {fmt_float(longest['wait_seconds'], 1)} s, trial `{longest['trial_id']}`): not part "
                     "of any cost above.")
    savings = caching_savings(trials)
    if not savings.empty:
        lines += ["", "What caching the teachers' outputs saves (median over each group's finished trials of "
                  "1 − training FLOPs / reference FLOPs; the reference code forwards every upper model on every "
                  "training batch of every epoch):", ""]
        lines += [caching_sentence(row) for _, row in savings.iterrows()]
    return "Cost", "\n".join(lines)
