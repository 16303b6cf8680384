"""Chain-level successive halving: the fidelity is the epochs per hop of every hop below the teacher.

A trial trains its chain at the lowest rung, reports, and goes on to the next rung only when its student is among
the best 1/factor of the chains that reached that rung so far (asynchronous successive halving, as ASHA decides:
at arrival, against what the rung has seen; a decision is never revisited). A chain promoted from e₁ to e₂ epochs
resumes the first hop below the teacher from its e₁-epoch state (its teachers did not change) and retrains the
hops below it; the teacher is trained in full, once, and shared by every chain through the hop store. The study's
warm starts skip the rungs (`study.runner.warm_starts`): the report needs them whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from study.spec import StudySpec
from study.trainable import OUTCOME, RUNG


def rung_epochs(epochs: int, min_share: float, factor: int) -> list[int]:
    """The rungs' epochs per hop, lowest first, the last one `epochs`: ⌈epochs · min_share · factorᵏ⌉ below it
    (160 epochs, 1/16, 4: 10, 40, 160)."""
    rungs: list[int] = []
    k = 0
    while (rung := math.ceil(epochs * min_share * factor**k - 1e-9)) < epochs:
        if not rungs or rung > rungs[-1]:
            rungs.append(max(1, rung))
        k += 1
    return [*rungs, epochs]


def study_rungs(spec: StudySpec) -> list[int]:
    """A study's rungs (epochs per hop below the teacher, lowest first); empty unless it halves, or when it has no
    rung below the top (one epoch per hop)."""
    if spec.early_stopping != "halving":
        return []
    rungs = rung_epochs(spec.epochs, spec.halving_min, spec.halving_factor)
    return rungs if len(rungs) > 1 else []


def reaching_share(rungs: list[int], factor: int) -> list[float]:
    """The share of a study's chains that reaches each rung, as successive halving plans it: 1/factorᵏ."""
    return [factor ** -k for k in range(len(rungs))]


@dataclass
class HalvingRule:
    """The promotion rule, kept apart from Tune so that a benchmark replays it as a study runs it. `mode`: "max" or
    "min" of the metric."""

    rungs: list[int]
    factor: int
    mode: str = "max"
    seen: dict[int, dict[str, float]] = field(default_factory=dict)  # rung epochs → trial id → its metric there

    def promotes(self, trial_id: str, rung: int, value: float) -> bool:
        """Whether the trial that reached `rung` with `value` goes on to the next rung: it is recorded, then compared
        with the cutoff of the best 1/factor of the values the rung has seen. The top rung promotes nobody; a trial
        already recorded at the rung (a resumed trial) is not recorded twice."""
        if rung >= self.rungs[-1]:
            return False
        values = self.seen.setdefault(rung, {})
        values.setdefault(trial_id, value)
        signed = [v if self.mode == "max" else -v for v in values.values()]
        cutoff = float(np.nanpercentile(signed, (1 - 1 / self.factor) * 100))
        mine = values[trial_id] if self.mode == "max" else -values[trial_id]
        return bool(mine >= cutoff)

    def record(self, trial_id: str, rung: int, value: float) -> None:
        """A value seen in an earlier session (from the trials' rows), so that the cutoffs go on from it."""
        self.seen.setdefault(rung, {}).setdefault(trial_id, value)

    def record_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        """Every rung value the trials' rows hold (`rung_accs`, lowest rung first)."""
        for row in rows:
            for rung, value in zip(self.rungs, row.get("rung_accs") or []):
                self.record(row["trial_id"], rung, value)


class ChainHalving(FIFOScheduler):
    """Tune's side of the rule: a halving trial reports at the end of each rung below the top (`RUNG`), and goes on
    or stops there; its other reports (its final outcome) pass."""

    def __init__(self, rule: HalvingRule, objective: str) -> None:
        super().__init__()
        self.rule, self.objective = rule, objective

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        if RUNG not in result or OUTCOME in result:
            return TrialScheduler.CONTINUE
        promoted = self.rule.promotes(trial.config["trial_id"], int(result[RUNG]), float(result[self.objective]))
        return TrialScheduler.CONTINUE if promoted else TrialScheduler.STOP
