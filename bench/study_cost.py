"""What a study's search policy costs, and what it finds: the benchmark that chooses the default policy (issue 17).

1. The table. A small exhaustive space — plain6 → TAs from {4, 3} → plain2 by nokd, kd, TAKD, DGKD (drop 1) and
   the mean ensemble, T ∈ {2, 10}, α on the grid {0.3, 0.7} — written as a study spec with a grid `[search]`, so
   the study's own space draws from it. Every configuration is trained with the real `train_chain` at every rung
   of successive halving (epochs per hop below the teacher: 1, 4, 16), rung by rung as the study's trainable
   promotes a chain (`study.trainable.fidelities`), and at full fidelity with patience, on ≥ 3 seeds, through ONE
   `MemoryStore` per seed: hops shared between configurations and resumed between rungs are exactly those a
   study shares. Per (configuration, seed, fidelity) it keeps the student's validation and test accuracy and, per
   hop, its key, its resume key, its FLOPs from scratch and what training it actually spent there. It is cached
   on disk (`--cache`, one JSON file per seed): a rerun trains nothing.

2. The replays. Each is a fresh in-memory Optuna study with the study's own TPE sampler (`runner._load_study`),
   seeded by the replay's index, and its own searcher (`StudySearch`, reconciled as a session starts), driven one
   trial at a time without Ray: `suggest`, then `on_trial_complete` with what the trainable would report. It sees
   the values of one seed (replay index mod seeds). Replay i of every policy has the same sampler seed and seed of
   values, so the policies compare paired (naive and grid draw the very same trials: they differ in cost alone).
   Policies, at the same number of trials:

   - naive: full fidelity; only the teacher is shared (today's continuous T and α: no TA hop ever repeats);
   - grid: full fidelity; every hop the study's store already holds is reused;
   - halving: successive halving as the study runs it (`HalvingRule`, asynchronous: decided when a chain
     reaches a rung; the warm starts in full, without rungs), each trial's hops its own (a promoted chain
     resumes its first hop below the teacher);
   - halving+grid: both; sync-halving+grid: synchronous successive halving instead (brackets of factor^k
     trials drawn at once, the best 1/factor of each rung promoted when the whole rung is in);
   - patience, patience+grid: full fidelity, every hop ended by `patience` epochs without a better val acc.

   Spent = the FLOPs a replay trains, replaying a model store: a hop the store holds costs 0, a hop resumed from a
   shorter training of it only its missing epochs (and its teachers' outputs, computed again), any other hop its
   FLOPs from scratch (`trainables.plan`, as the study plans them). Naive = the sum of every trial's FLOPs from
   scratch at full fidelity. The replays' costing is checked against what the table's own trainings spent.

   P = the share of replays whose selected configuration (the best finished trial by the values the replay saw)
   has a mean TEST accuracy over the seeds, at full fidelity without patience, within one seed-SD (pooled over the
   space's configurations) of the space's best mean: the test split is what none of the searches selected on.

The last line names the recommended policy: the cheapest with P ≥ naive's P − 0.05 at ≤ 0.2× naive's FLOPs,
`study_cost: halving+grid P=0.93 (naive 0.90) spent/naive=0.17 over 20 replays`.
Run: `python bench/study_cost.py` (the table ≈ 20 minutes on one core once, then seconds); `--quick` is the toy
size the tests run.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import math
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
import torch

from runstore.storage import locate
from study import space
from study.halving import HalvingRule, study_rungs
from study.reconcile import reconcile
from study.results_folder import ResultsFolder
from study.runner import _load_study, warm_starts  # _load_study: the study's sampler, as a session creates it
from study.search import StudySearch
from study.spec import StudySpec, load_spec
from study.trainable import FINISHED, OUTCOME, RUNG, fidelities
from trainables import ChainConfig, train_chain
from trainables.data import load_chain_data
from trainables.hops import TRAINING_CODE_VERSION, plan_chain
from trainables.plan import planned_hops
from trainables.store import MemoryStore

SPEC = """
name = "study-cost"
dataset = "mnist5k"
teacher = "plain6"
student = "plain2"
ta_candidates = [4, 3]
methods = ["nokd", "kd", "takd", "dgkd", "ensemble"]
epochs = 16
scheduler = "halving"
halving_min = 0.0625
halving_factor = 4

[search]
temperature = {choices = [2.0, 10.0]}
alpha = {low = 0.3, high = 0.7, step = 0.4}
drop = {choices = [1]}
weighting = ["mean"]
space = ["prob"]

[chain]
width = 0.25
train_size = 600
val_size = 300
lr = 0.01
lr_schedule = "constant"
"""
# Two configurations, one rung below the top: what the tests run in seconds.
QUICK_SPEC = """
name = "study-cost-quick"
dataset = "mnist5k"
teacher = "plain3"
student = "plain2"
ta_candidates = []
methods = ["kd"]
epochs = 4
scheduler = "halving"
halving_min = 0.25
halving_factor = 4

[search]
temperature = {choices = [2.0]}
alpha = {low = 0.3, high = 0.7, step = 0.4}

[chain]
width = 0.25
train_size = 200
val_size = 100
lr = 0.01
lr_schedule = "constant"
"""
PATIENCE, QUICK_PATIENCE = 3, 2
# Of the space's configurations, the trials of every replay. At 0.4 (16 trials) the four warm starts, trained in
# full by every policy, are 0.25 of a replay's naive FLOPs, a floor no policy can go under; at 0.6 they are 0.17
# (in a 100-trial study, 0.04).
TRIAL_SHARE = 0.6
P_SLACK, FLOPS_GOAL = 0.05, 0.2  # the goal: P no worse than naive's − 0.05, at ≤ 0.2× naive FLOPs
DEFAULT_CACHE = Path(__file__).parent / ".cache" / "study_cost"
METRIC = "student_val_acc"


# --- the table ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Hop:
    """One hop of a trained chain, as a replay's store needs it."""

    key: str
    resume_key: str
    role: str
    epochs: int
    epoch_flops: int  # planned: per epoch
    once_flops: int  # planned: once per training (its teachers' outputs), again on a resume
    train_flops: int  # from scratch, as its record holds it (a resumed hop's includes what it resumed)
    spent_flops: int  # what training it in the table's run spent: 0 when the store held it
    resumed_from: int  # the epochs of the training that run resumed; 0 = none
    patience: int

    @property
    def scratch_flops(self) -> int:
        """Training it from scratch in one go: as planned, or as trained when patience may have ended it early (the
        table trains patience's hops only at full fidelity, in one go)."""
        return self.train_flops if self.patience else self.epochs * self.epoch_flops + self.once_flops

    def resumed_flops(self, epochs_done: int) -> int:
        """Resuming a training of `epochs_done` epochs: the missing epochs, and its teachers' outputs again."""
        return (self.epochs - epochs_done) * self.epoch_flops + self.once_flops


@dataclass(frozen=True)
class Entry:
    """One configuration at one fidelity on one seed: its student's accuracies and its hops."""

    val: float
    test: float
    hops: tuple[Hop, ...]

    @property
    def scratch_flops(self) -> int:
        return sum(hop.scratch_flops for hop in self.hops)


@dataclass(frozen=True)
class Fidelity:
    epochs: int  # of every hop below the teacher
    patience: int = 0

    @property
    def name(self) -> str:
        return f"{self.epochs}" + (f"p{self.patience}" if self.patience else "")


@dataclass
class Table:
    """Every configuration × fidelity × seed, and what building it took per seed: seconds of wall clock and of
    CPU (the process's: on a shared machine, what it would take alone with one thread), hop-epochs trained."""

    entries: dict[tuple[int, str, str], Entry] = field(default_factory=dict)  # (seed, fidelity, config) → entry
    seconds: dict[int, float] = field(default_factory=dict)
    cpu_seconds: dict[int, float] = field(default_factory=dict)
    hop_epochs: dict[int, int] = field(default_factory=dict)
    built: list[int] = field(default_factory=list)  # seeds trained by this run, not read from the cache

    def get(self, seed: int, fidelity: Fidelity, config: str) -> Entry:
        return self.entries[(seed, fidelity.name, config)]


def config_key(config: dict[str, Any]) -> str:
    """A suggestion (Optuna params, derived values, perhaps its trial id) as one string: equal chains, equal keys."""
    return json.dumps(space.flat_from_params(config), sort_keys=True)


def space_configs(spec: StudySpec) -> list[dict[str, Any]]:
    """Every configuration the study's space can draw, as the searcher hands them out (Optuna's brute force over
    the define-by-run space)."""
    configs: list[dict[str, Any]] = []

    def draw(trial: optuna.Trial) -> float:
        derived = space.suggest(trial, spec)
        configs.append({**trial.params, **derived})
        return 0.0

    with warnings.catch_warnings():  # experimental since Optuna 3.1, and what enumerating a define-by-run space needs
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.BruteForceSampler(seed=0)
    optuna.create_study(sampler=sampler).optimize(draw)
    if len(configs) != space.size(spec):
        raise RuntimeError(f"enumerated {len(configs)} configurations, the space holds {space.size(spec)}")
    return configs


def fidelity_chains(spec: StudySpec, params: dict[str, Any], seed: int, patience: int
                    ) -> Iterator[tuple[Fidelity, ChainConfig]]:
    """A configuration's chains on `seed`, as the table trains them: rung by rung as the trainable promotes a chain,
    then at full fidelity with patience."""
    cfg = space.chain_config(spec.base_config(), params).replace(seed=seed)
    for rung, rung_cfg in fidelities(cfg, tuple(study_rungs(spec))):
        yield Fidelity(rung), rung_cfg
    yield Fidelity(cfg.epochs, patience), cfg.replace(patience=patience)


def build_seed(spec: StudySpec, configs: list[dict[str, Any]], seed: int, patience: int) -> dict[str, Any]:
    """Trains every configuration at every fidelity on one seed, through one store; returns the seed's part of the
    table as JSON. Lower fidelities first, as a study reaches them: their hops' states are what higher ones resume."""
    store = MemoryStore()
    data = load_chain_data(space.chain_config(spec.base_config(), configs[0]).replace(seed=seed))
    epochs = 0

    def count_epochs(event: dict[str, Any]) -> None:
        nonlocal epochs
        epochs += event["event"] == "epoch"

    chains = [[(config_key(params), fidelity, cfg) for fidelity, cfg in fidelity_chains(spec, params, seed, patience)]
              for params in configs]
    by_stage = [chain for stage in zip(*chains) for chain in stage]
    entries: dict[str, Any] = {}
    started, cpu_started = time.perf_counter(), time.process_time()
    for key, fidelity, cfg in by_stage:
        result = train_chain(cfg, report=count_epochs, store=store, data=data)
        hops = [dataclasses.asdict(Hop(hop.key, plan.resume_key, hop.role, plan.epochs, planned.epoch_flops,
                                       planned.once_flops, hop.train_flops, hop.spent_flops, hop.resumed_from,
                                       cfg.patience))
                for hop, plan, planned in zip(result.hops, plan_chain(cfg, torch.device("cpu")), planned_hops(cfg))]
        entries[f"{fidelity.name}|{key}"] = {"val": result.student.val_acc, "test": result.student.test_acc,
                                             "hops": hops}
    return {"seed": seed, "seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu_started,
            "hop_epochs": epochs, "entries": entries}


def setup_hash(spec_text: str, patience: int) -> str:
    """What the table's numbers depend on besides the seed: the spec, patience and the training code."""
    identity = {"spec": spec_text, "patience": patience, "training_code": TRAINING_CODE_VERSION}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def load_table(spec: StudySpec, spec_text: str, configs: list[dict[str, Any]], seeds: int, patience: int,
               cache: Path) -> Table:
    """The table, each seed's part read from the cache or trained (and cached at once: an interrupted build keeps
    its finished seeds)."""
    folder = cache / setup_hash(spec_text, patience)
    folder.mkdir(parents=True, exist_ok=True)
    table = Table()
    for seed in range(seeds):
        path = folder / f"seed-{seed}.json"
        if path.exists():
            part = json.loads(path.read_text())
        else:
            part = build_seed(spec, configs, seed, patience)
            path.write_text(json.dumps(part))
            print(f"table: seed {seed} trained: {part['hop_epochs']} hop-epochs, {part['cpu_seconds']:.0f} s of CPU "
                  f"({part['seconds']:.0f} s wall)", flush=True)
            table.built.append(seed)
        table.seconds[seed], table.cpu_seconds[seed] = part["seconds"], part["cpu_seconds"]
        table.hop_epochs[seed] = part["hop_epochs"]
        for name, entry in part["entries"].items():
            fidelity, key = name.split("|", 1)
            hops = tuple(Hop(**hop) for hop in entry["hops"])
            table.entries[(seed, fidelity, key)] = Entry(entry["val"], entry["test"], hops)
    return table


def check_costing(table: Table) -> int:
    """The replays' costing, held to what the table's own trainings spent: a hop trained from scratch spends its
    planned FLOPs (patience's: what it trained, in one go), a resumed one its missing epochs. Returns the trainings
    checked; raises on a disagreement."""
    checked = 0
    for (seed, fidelity, key), entry in table.entries.items():
        for hop in entry.hops:
            if hop.spent_flops == 0:  # the store held it
                continue
            expected = hop.resumed_flops(hop.resumed_from) if hop.resumed_from else hop.scratch_flops
            if hop.spent_flops != expected:
                raise RuntimeError(f"seed {seed}, fidelity {fidelity}, {hop.role} {hop.key}: spent "
                                   f"{hop.spent_flops} FLOPs, the replays would count {expected}")
            checked += 1
    return checked


# --- the replays ----------------------------------------------------------------------------------------------

class ReplayStore:
    """What a replay's model store holds: trained hops by key, and per resume key the epochs of the longest
    training kept (a longer training of the hop resumes it; a shorter one starts from scratch, as in
    `trainables.chain`)."""

    def __init__(self) -> None:
        self.trained: set[str] = set()
        self.resumable: dict[str, int] = {}

    def train(self, hop: Hop) -> int:
        """The FLOPs getting `hop` costs here."""
        if hop.key in self.trained:
            return 0
        done = self.resumable.get(hop.resume_key, 0)
        self.trained.add(hop.key)
        self.resumable[hop.resume_key] = max(done, hop.epochs)
        return hop.resumed_flops(done) if 0 < done < hop.epochs else hop.scratch_flops


@dataclass(frozen=True)
class Policy:
    name: str
    halving: str = "none"  # none, async (as the study's ChainHalving), sync
    shared: bool = False  # every hop through the study's store (a grid); else only the teacher is shared
    patience: bool = False


POLICIES = (Policy("naive"), Policy("grid", shared=True), Policy("halving", "async"),
            Policy("halving+grid", "async", shared=True), Policy("sync-halving+grid", "sync", shared=True),
            Policy("patience", patience=True), Policy("patience+grid", shared=True, patience=True))
OFFERED = tuple(p.name for p in POLICIES if p.halving != "sync")  # what a study can run


@dataclass
class Replay:
    """One replayed search: what it spent, what naive would have, and the finished trials' values."""

    table: Table
    seed: int
    fidelities: list[Fidelity]  # the rungs a trial climbs, the last its full fidelity
    policy: Policy
    spent: int = 0
    naive: int = 0
    finished: dict[str, float] = field(default_factory=dict)  # config → the value the search saw
    stores: dict[str, ReplayStore] = field(default_factory=dict)

    def train(self, trial_id: str, config: str, fidelity: Fidelity) -> float:
        """Trains `config` at `fidelity` in this replay's store; returns the student's val acc."""
        entry = self.table.get(self.seed, fidelity, config)
        for hop in entry.hops:
            self.spent += self._store(trial_id, hop).train(hop)
        return entry.val

    def _store(self, trial_id: str, hop: Hop) -> ReplayStore:
        private = not self.policy.shared and hop.role != "teacher"
        return self.stores.setdefault(trial_id if private else "shared", ReplayStore())

    def start(self, config: str) -> None:
        """A trial starts: naive counts its chain from scratch at full fidelity (without patience, whatever the
        policy trains)."""
        self.naive += self.table.get(self.seed, Fidelity(self.fidelities[-1].epochs), config).scratch_flops


def warm_start_test(spec: StudySpec) -> Callable[[dict[str, Any]], bool]:
    """Whether a suggestion is one of the study's warm starts, which halving trains in full, without rungs."""
    base, warm = spec.base_config(), warm_starts(spec)
    return lambda config: space.chain_config(base, config) in warm


def study_search(spec: StudySpec, replay_index: int, results: ResultsFolder) -> StudySearch:
    """A fresh searcher, as a study's first session builds it: the study's sampler (seeded by the replay), the
    journal reconciled with no results (the warm starts enqueued)."""
    seeded = dataclasses.replace(spec, seed=replay_index, name=f"replay-{replay_index}")
    study = _load_study(seeded, optuna.storages.InMemoryStorage())
    plan = reconcile(seeded, study, results)
    return StudySearch(seeded, study, plan.ledger, plan.resume)


@dataclass(frozen=True)
class Trial:
    tune_id: str  # the searcher's
    trial_id: str  # the study's
    config: str
    in_full: bool  # a warm start: halving trains it in full, without rungs (`TrialContext.in_full`)


def replay(spec: StudySpec, table: Table, seeds: int, trials: int, policy: Policy, index: int,
           patience: int, results: ResultsFolder) -> Replay:
    top = Fidelity(spec.epochs, patience if policy.patience else 0)
    rungs = [Fidelity(r) for r in study_rungs(spec)[:-1]] if policy.halving != "none" else []
    run = Replay(table, index % seeds, [*rungs, top], policy)
    searcher, in_full = study_search(spec, index, results), warm_start_test(spec)
    if policy.halving == "sync":
        _sync_halving(searcher, in_full, run, trials, spec.halving_factor)
    else:
        rule = HalvingRule([f.epochs for f in run.fidelities], spec.halving_factor)
        for number in range(trials):
            trial = _suggest(searcher, in_full, run, f"t{number}")
            if trial is None:
                break
            _async_trial(searcher, run, rule, trial)
    return run


def _suggest(searcher: StudySearch, in_full: Callable[[dict[str, Any]], bool], run: Replay,
             tune_id: str) -> Trial | None:
    """A new trial; None when the space has no new configuration."""
    config = searcher.suggest(tune_id)
    if not isinstance(config, dict):
        return None
    trial = Trial(tune_id, config["trial_id"], config_key(config), in_full(config))
    run.start(trial.config)
    return trial


def _async_trial(searcher: StudySearch, run: Replay, rule: HalvingRule, trial: Trial) -> None:
    """One trial, rung by rung, as `chain_trainable` and `ChainHalving` run it (a warm start in full at once)."""
    rungs = [] if trial.in_full else run.fidelities[:-1]
    for fidelity in rungs:
        value = run.train(trial.trial_id, trial.config, fidelity)
        if not rule.promotes(trial.trial_id, fidelity.epochs, value):
            searcher.on_trial_complete(trial.tune_id, {METRIC: value, RUNG: fidelity.epochs})
            return
    _finish(searcher, run, trial)


def _finish(searcher: StudySearch, run: Replay, trial: Trial) -> None:
    value = run.train(trial.trial_id, trial.config, run.fidelities[-1])
    run.finished[trial.config] = value
    searcher.on_trial_complete(trial.tune_id, {METRIC: value, OUTCOME: FINISHED})


def _sync_halving(searcher: StudySearch, in_full: Callable[[dict[str, Any]], bool], run: Replay, trials: int,
                  factor: int) -> None:
    """Synchronous successive halving: brackets of factor^(rungs − 1) trials drawn at once; at each rung the whole
    bracket trains, then the best 1/factor (at least one) go on and the others stop. Warm starts train in full."""
    bracket = factor ** (len(run.fidelities) - 1)
    started = 0
    while started < trials:
        drawn = (_suggest(searcher, in_full, run, f"t{n}") for n in range(started, min(started + bracket, trials)))
        live = list(itertools.takewhile(lambda trial: trial is not None, drawn))
        if not live:
            return
        started += len(live)
        for trial in [t for t in live if t.in_full]:
            _finish(searcher, run, trial)
        live = [t for t in live if not t.in_full]
        for fidelity in run.fidelities[:-1]:
            values = {t.trial_id: run.train(t.trial_id, t.config, fidelity) for t in live}
            best = set(sorted(values, key=lambda trial_id: -values[trial_id])[:max(1, len(live) // factor)])
            for trial in live:
                if trial.trial_id not in best:
                    searcher.on_trial_complete(trial.tune_id, {METRIC: values[trial.trial_id], RUNG: fidelity.epochs})
            live = [trial for trial in live if trial.trial_id in best]
        for trial in live:
            _finish(searcher, run, trial)


# --- what the replays found -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Space:
    """The space's truth: each configuration's mean test accuracy over the seeds at full fidelity."""

    quality: dict[str, float]
    sd: float  # the seeds' SD of a configuration's test accuracy, pooled over the configurations

    @property
    def best(self) -> float:
        return max(self.quality.values())

    def near_best(self, config: str) -> bool:
        return self.quality[config] >= self.best - self.sd


def space_truth(table: Table, configs: list[str], seeds: int, epochs: int) -> Space:
    full = Fidelity(epochs)
    tests = {c: [table.get(s, full, c).test for s in range(seeds)] for c in configs}
    variances = [statistics.variance(t) for t in tests.values()] if seeds > 1 else [0.0]
    return Space({c: statistics.fmean(t) for c, t in tests.items()}, math.sqrt(statistics.fmean(variances)))


@dataclass(frozen=True)
class Summary:
    policy: str
    p: float
    spent_over_naive: float
    selected_test: float  # mean over replays of the selected configuration's mean test accuracy
    finished: float  # mean trials trained to full fidelity
    naive_flops: float  # mean over replays


def summarise(policy: Policy, runs: list[Replay], truth: Space) -> Summary:
    selected = [max(run.finished, key=run.finished.__getitem__) for run in runs]
    return Summary(policy.name, statistics.fmean(truth.near_best(c) for c in selected),
                   statistics.fmean(run.spent / run.naive for run in runs),
                   statistics.fmean(truth.quality[c] for c in selected),
                   statistics.fmean(len(run.finished) for run in runs), statistics.fmean(run.naive for run in runs))


def recommend(summaries: list[Summary]) -> tuple[Summary, bool]:
    """The cheapest policy the study offers within P_SLACK of naive's P; whether it meets the FLOPs goal too. When
    none is that accurate, the most accurate. Synchronous halving is measured to compare, not offered: the study
    halves asynchronously (`study.halving`), so no trial waits for a rung to fill."""
    naive = next(s for s in summaries if s.policy == "naive")
    offered = [s for s in summaries if s.policy in OFFERED]
    accurate = [s for s in offered if s.p >= naive.p - P_SLACK]
    if not accurate:
        return max(offered, key=lambda s: s.p), False
    cheapest = min(accurate, key=lambda s: s.spent_over_naive)
    return cheapest, cheapest.spent_over_naive <= FLOPS_GOAL


# --- the command ----------------------------------------------------------------------------------------------

def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a toy size: two configurations, one seed, two "
                                                             "replays (the tests)")
    parser.add_argument("--seeds", type=int, help="seeds of the table (default 3; --quick 1)")
    parser.add_argument("--replays", type=int, help="replays per policy (default 20; --quick 2)")
    parser.add_argument("--trials", type=int, help=f"trials per replay (default {TRIAL_SHARE * 100:.0f} %% of the space)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the table is kept")
    parser.add_argument("--threads", type=int, default=1, help="torch threads while building the table")
    args = parser.parse_args(argv)
    args.seeds = args.seeds or (1 if args.quick else 3)
    args.replays = args.replays or (2 if args.quick else 20)
    return args


def read_spec(text: str) -> StudySpec:
    """The spec as `kdstudy run --spec` reads it."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "spec.toml"
        path.write_text(text)
        return load_spec(path, {})


def print_table(table: Table, spec: StudySpec, configs: list[str], patience: int, threads: int) -> None:
    rungs = ", ".join(map(str, study_rungs(spec)))
    print(f"table: {len(configs)} configurations × {len(table.seconds)} seeds × fidelities {rungs} and "
          f"{spec.epochs} with patience {patience}: {sum(table.hop_epochs.values())} hop-epochs; building it took "
          f"{sum(table.cpu_seconds.values()):.0f} s of CPU on {threads} thread(s) "
          f"({sum(table.seconds.values()):.0f} s wall); this run trained {len(table.built)} seed(s)")
    print(f"costing: the replays' rule matches the table's {check_costing(table)} hop trainings")


def print_space(truth: Space, spec: StudySpec, params: list[dict[str, Any]], trials: int) -> None:
    configs = [config_key(p) for p in params]
    best = max(range(len(configs)), key=lambda i: truth.quality[configs[i]])
    label = space.chain_config(spec.base_config(), params[best]).label
    print(f"space: best mean test acc {truth.best:.4f} ({label}), seed-SD {truth.sd:.4f}; "
          f"{sum(map(truth.near_best, configs))} of {len(configs)} configurations within one SD of it; "
          f"{trials} trials per replay")


def print_policies(summaries: list[Summary]) -> None:
    print(f"{'policy':<18} {'P':>5} {'spent/naive':>11} {'selected test':>13} {'finished':>8}")
    for s in summaries:
        print(f"{s.policy:<18} {s.p:5.2f} {s.spent_over_naive:11.3f} {s.selected_test:13.4f} {s.finished:8.1f}")


def print_warm_starts(table: Table, spec: StudySpec, params: list[dict[str, Any]], summaries: list[Summary]
                      ) -> None:
    """What the warm starts, which halving trains in full, weigh in a replay: a floor under halving's spent/naive
    that shrinks as a study's trials grow."""
    in_full = warm_start_test(spec)
    warm = [config_key(config) for config in params if in_full(config)]
    seeds = range(len(table.seconds))
    flops = statistics.fmean(sum(table.get(seed, Fidelity(spec.epochs), c).scratch_flops for c in warm)
                             for seed in seeds)
    print(f"warm starts: the {len(warm)} chains halving trains in full are {flops / summaries[0].naive_flops:.2f} "
          f"of a replay's naive FLOPs")


def print_patience(table: Table, spec: StudySpec, configs: list[str], patience: int) -> None:
    seeds = len(table.seconds)
    change = statistics.fmean(
        table.get(seed, Fidelity(spec.epochs, patience), c).test - table.get(seed, Fidelity(spec.epochs), c).test
        for seed in range(seeds) for c in configs)
    print(f"patience: ending a hop after {patience} epochs without a better val acc changes the students' test acc "
          f"by {change:+.4f} on average over the table")


def print_recommendation(summaries: list[Summary], replays: int) -> None:
    chosen, meets = recommend(summaries)
    naive = next(s for s in summaries if s.policy == "naive")
    if not meets:
        print(f"study_cost: no policy meets the goal (P ≥ naive's − {P_SLACK} at ≤ {FLOPS_GOAL}× naive FLOPs); "
              f"the best:")
    print(f"study_cost: {chosen.policy} P={chosen.p:.2f} (naive {naive.p:.2f}) "
          f"spent/naive={chosen.spent_over_naive:.2f} over {replays} replays")


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec_text, patience = (QUICK_SPEC, QUICK_PATIENCE) if args.quick else (SPEC, PATIENCE)
    spec = read_spec(spec_text)
    params = space_configs(spec)
    configs = [config_key(p) for p in params]
    trials = args.trials or max(2, round(TRIAL_SHARE * len(configs)))

    table = load_table(spec, spec_text, params, args.seeds, patience, args.cache)
    print_table(table, spec, configs, patience, args.threads)
    truth = space_truth(table, configs, args.seeds, spec.epochs)
    print_space(truth, spec, params, trials)
    with tempfile.TemporaryDirectory() as folder:
        results = ResultsFolder(locate(folder) / "results")  # empty: every replay starts a new study
        summaries = [summarise(policy, [replay(spec, table, args.seeds, trials, policy, index, patience, results)
                                        for index in range(args.replays)], truth) for policy in POLICIES]
    print_policies(summaries)
    print_warm_starts(table, spec, params, summaries)
    print_patience(table, spec, configs, patience)
    print_recommendation(summaries, args.replays)


if __name__ == "__main__":
    main()
