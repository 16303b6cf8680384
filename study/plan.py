"""A study's planned cost, before it spends it: what its remaining trials will train, in hop-epochs and FLOPs,
against naive (every trial's chain trained from scratch at full fidelity, each hop `epochs` epochs).

The plan follows the study's own rules, without training or loading data: a trial trains the chains
`study.trainable.fidelities` gives it (one per rung under successive halving), a hop is trained again only when its
key changes from one rung to the next, and resumes (only the epochs it lacks) when its resume key stays (its
teachers did not change and the lr is constant); the teacher, the same hop in every chain, is trained once per
study, or not at all when the run's store holds it. Each hop's FLOPs are `trainables.plan.planned_hops`'.

The warm starts (`study.space.warm_start_points`), drawn first, are planned as they are, in full (halving trains
them so, without rungs); the other trials are expected over the space as the sampler's prior sees it: its methods
uniformly, a TA method's TA subsets uniformly, and a categorical setting's searched choices uniformly; numbers at
their defaults (T and α do not change what a hop costs). Under halving such a trial reaches rung k with the share
successive halving plans (1/factorᵏ). Not predicted: TA hops that repeat across trials on a grid (the store shares
them), ASHA's stops, patience.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import Any, Callable, Iterator

import torch

from runstore.storage import Location, exists
from study.halving import reaching_share, study_rungs
from study.space import TA_PARAM, chain_config, size, ta_subsets, warm_start_chains
from study.spec import StudySpec
from study.trainable import fidelities
from trainables import ChainConfig
from trainables.device import resolve_device
from trainables.hops import HopPlan, plan_chain
from trainables.methods import method_class
from trainables.plan import ForwardCost, PlannedHop, planned_hops

StoredKeys = Callable[[str], bool]  # whether the run's store holds the hop with this key
SI_PREFIXES = ("", "k", "M", "G", "T", "P", "E", "Z")


@dataclass(frozen=True)
class Cost:
    hop_epochs: float
    flops: float

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.hop_epochs + other.hop_epochs, self.flops + other.flops)

    def __mul__(self, factor: float) -> Cost:
        return Cost(self.hop_epochs * factor, self.flops * factor)


NOTHING = Cost(0.0, 0.0)


@dataclass(frozen=True)
class StudyPlan:
    """`hops`: a trial's chain length, expected over the space; `rungs`: halving's epochs per hop below the teacher
    (empty without halving); `teacher_stored`: whether the run's store already holds the teacher (None: no chain of
    the space has one)."""

    trials: int
    hops: float
    naive: Cost
    planned: Cost
    scheduler: str
    rungs: tuple[int, ...]
    teacher_stored: bool | None

    def line(self) -> str:
        """`plan: 100 trials × 3.8 hops; naive 60,251 hop-epochs (616 PFLOP); planned 10,657 hop-epochs (0.18×),
        78.3 PFLOP (0.13×) with halving at 10, 40, 160 epochs and the teacher trained once (before TA hops shared
        on a grid)` (the seed preset grown to 100 trials)"""
        if not self.trials:
            return "plan: no trial left to train"
        how = f"halving at {', '.join(map(str, self.rungs))} epochs" if self.rungs else "every chain in full"
        teacher = "" if self.teacher_stored is None else \
            " and the teacher already stored" if self.teacher_stored else " and the teacher trained once"
        before = "ASHA's stops and TA hops shared on a grid" if self.scheduler == "asha" else \
            "TA hops shared on a grid"
        hops = f"{self.hops:.1f}".removesuffix(".0")
        trials = f"{self.trials} trial{'s' if self.trials != 1 else ''}"
        return (f"plan: {trials} × {hops} hops; naive {self.naive.hop_epochs:,.0f} hop-epochs "
                f"({si_flops(self.naive.flops)}); planned {self.planned.hop_epochs:,.0f} hop-epochs "
                f"({_ratio(self.planned.hop_epochs, self.naive.hop_epochs)}), {si_flops(self.planned.flops)} "
                f"({_ratio(self.planned.flops, self.naive.flops)}) with {how}{teacher} (before {before})")


def plan_study(spec: StudySpec, ended: int = 0, stored: StoredKeys | None = None,
               forward_cost: ForwardCost | None = None) -> StudyPlan:
    """The plan of the trials `spec` still asks for once `ended` configurations have their outcome (no more than
    the space holds). `stored`: the run's store by default (`<run>/models/<key>.pt`); `forward_cost`: what one
    image's forward through a model costs, FLOPs by default (the plan's `flops` are then in its unit).

    The warm starts come first (the searcher draws them before any other), each in full; the other trials are
    expected over the space."""
    stored = stored if stored is not None else stored_in(spec.run)
    trials = max(0, int(min(spec.trials, size(spec))) - ended)
    rungs = study_rungs(spec)
    shares = reaching_share(rungs, spec.halving_factor) if rungs else [1.0]
    warm = warm_start_chains(spec)[ended:][:trials]
    drawn = trials - len(warm)
    draws = [(1.0, cfg, (), [1.0]) for cfg in warm] + \
        [(drawn * weight, cfg, tuple(rungs), shares) for weight, cfg in (space_chains(spec) if drawn else [])]
    device = _trial_device(spec)
    hops, naive, planned = 0.0, NOTHING, NOTHING
    teachers: dict[str, Cost] = {}
    for count, cfg, cfg_rungs, reaching in draws:
        chains = [(plan_chain(c, device), planned_hops(c, forward_cost)) for _, c in fidelities(cfg, cfg_rungs)]
        full_plans, full_hops = chains[-1]
        hops += count * len(full_hops)
        naive += _cost(full_hops) * count
        planned += _trial_cost(chains, reaching, cfg.lr_schedule == "constant") * count
        teachers.update({p.key: Cost(h.epochs, h.flops) for p, h in zip(full_plans, full_hops) if _is_teacher(p)})
    unstored = [cost for key, cost in teachers.items() if not stored(key)]
    planned += sum(unstored, NOTHING)
    return StudyPlan(trials, hops / trials if trials else 0.0, naive, planned, spec.early_stopping, tuple(rungs),
                     teacher_stored=not unstored if teachers else None)


def stored_in(run: Location) -> StoredKeys:
    """Whether the run's store holds a hop: one existence check, no download."""
    return lambda key: exists(run / "models" / f"{key}.pt")


def space_chains(spec: StudySpec) -> Iterator[tuple[float, ChainConfig]]:
    """Every chain the plan expects over, with its prior probability (they sum to 1)."""
    base = spec.base_config()
    for name in spec.methods:
        method = method_class(name)
        subsets = ta_subsets(spec.ta_candidates) if method.uses_tas else [""]
        choices = [[(p.name, v) for v in spec.searched(p).choices] for p in method.params if p.categorical]
        drawn = [dict(values) for values in product(*choices)]
        for subset, values in product(subsets, drawn):
            params: dict[str, Any] = {"method": name, **values, **({TA_PARAM: subset} if subset else {})}
            yield 1 / (len(spec.methods) * len(subsets) * len(drawn)), chain_config(base, params)


def _trial_cost(chains: list[tuple[list[HopPlan], list[PlannedHop]]], shares: list[float], resumable: bool) -> Cost:
    """What one trial trains below the teacher, rung by rung, weighted by the share of trials reaching each rung:
    a hop whose key did not change is reused; one whose resume key did not change trains only the epochs it lacks
    (at a constant lr), plus what it computes once per training (its teachers' cached outputs); any other is
    trained from scratch."""
    total = NOTHING
    previous: list[HopPlan] | None = None
    for share, (plans, hops) in zip(shares, chains):
        rung = NOTHING
        for index, (plan, hop) in enumerate(zip(plans, hops)):
            if _is_teacher(plan):
                continue
            before = previous[index] if previous is not None else None
            if before is not None and before.key == plan.key:
                continue
            if before is not None and resumable and before.resume_key == plan.resume_key:
                lacking = hop.epochs - before.epochs
                rung += Cost(lacking, lacking * hop.epoch_flops + hop.once_flops)
            else:
                rung += Cost(hop.epochs, hop.flops)
        total += rung * share
        previous = plans
    return total


def _cost(hops: list[PlannedHop]) -> Cost:
    return Cost(sum(h.epochs for h in hops), sum(h.flops for h in hops))


def _is_teacher(plan: HopPlan) -> bool:
    return plan.role == "teacher"


def _trial_device(spec: StudySpec) -> torch.device:
    """Where the trials run, which decides the precision `auto` trains in (and so the teacher's key): a GPU when
    they are given one."""
    name = str(spec.trial_chain().get("device", "auto"))
    if name != "auto":
        return resolve_device(name)
    return torch.device("cuda" if spec.gpus_per_trial > 0 else "cpu")


def _ratio(part: float, whole: float) -> str:
    return f"{part / whole:.2f}×" if whole else "–"


def si_flops(flops: float) -> str:
    """833e15 → `833 PFLOP`."""
    power = 0
    while abs(flops) >= 999.5 and power < len(SI_PREFIXES) - 1:
        flops /= 1000
        power += 1
    return f"{flops:.3g} {SI_PREFIXES[power]}FLOP"
