"""What a study cost: what it spent in all (failed and killed attempts included) against what its trials would cost
trained from scratch one by one, what caching the teachers' outputs saves against the TAKD/DGKD reference code, and
how long trials waited for hops that other trials were training. `runstore.schema` says what each column counts.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    naive = int(trials["train_flops"].dropna().sum())
    lines = [COST_INTRO, ""]
    trained = read_table(run.location / "results", "trained")  # read once: it grows with every hop training
    spent = spent_by(trained, trials)
    if spent is None:
        lines.append(f"- Trained from scratch one by one, the trials would cost {fmt_sci(naive)} FLOPs (the sum of "
                     "their training FLOPs); this run has no `trained` table to say what it spent.")
    else:
        ratio = fmt_float(spent.flops / naive, 2) if naive else "–"
        diverged = f", {spent.diverged} of them to a blow-up" if spent.diverged else ""
        lines += [
            f"- Spent by the study: {fmt_sci(spent.flops)} FLOPs and {fmt_float(spent.seconds, 1)} s of training in "
            f"{_trainings(spent)}{diverged}, failed and killed attempts included.",
            f"- Trained from scratch one by one, the trials would cost {fmt_sci(naive)} FLOPs (the sum of their "
            f"training FLOPs): the study spent {ratio}× that, as trials reuse each other's hops.",
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
