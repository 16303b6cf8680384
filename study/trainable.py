"""The Ray Tune entry point: runs `train_chain` for one trial, writes the trial's rows, reports small scalars.

A trial keeps nothing in Tune's checkpoints: every hop it finishes is in the study's model store, so a retried or
resumed trial skips straight to its first unfinished hop.

Under successive halving (`study.halving`) a trial trains its chain rung by rung: at each rung below the top it
writes its rows as STOPPED at that rung, then reports; the scheduler either stops it there (its rows are already
right) or lets it go on to the next rung, whose rows replace them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import torch
from ray import tune

from runstore.storage import locate
from study.claims import StorageClaims, lease_seconds
from study.faults import NO_FAULTS, Faults
from study.hop_store import RunHopStore
from study.results_folder import ResultsFolder
from study.space import chain_config
from trainables import ChainConfig, HopDiverged, train_chain
from trainables.plan import planned_hops

# A trial's last result says how its chain ended; trials stopped early by a scheduler have none.
OUTCOME, FINISHED, DIVERGED = "outcome", "finished", "diverged"
RUNG = "rung_epochs"  # a halving trial's report at the end of a rung below the top: the rung's epochs per hop
DETAIL = "detail"  # how it diverged, for the driver's console line


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a study shares (sent once through Ray's object store)."""

    base: dict[str, Any]  # the chain settings every trial shares; the search adds the rest
    run_uri: str
    faults: Faults = NO_FAULTS
    claim_lease_s: float = field(default_factory=lease_seconds)
    # What a Tune result carries: the objectives, and ASHA's clock when a scheduler stops trials on the student's
    # epochs (then every epoch reports). Tune keeps statistics of every reported number of every trial in its
    # experiment state, so a study reports no more than its searcher and scheduler read.
    metrics: tuple[str, ...] = ("student_val_acc",)
    epoch_reports: bool = False
    # Successive halving's rungs, epochs per hop below the teacher, lowest first; the last one is the chain's
    # epochs. Empty: every trial trains its chain once, in full; so do the chains in `in_full` (the warm starts).
    rungs: tuple[int, ...] = ()
    in_full: frozenset[ChainConfig] = frozenset()

    def results(self) -> ResultsFolder:
        return ResultsFolder(locate(self.run_uri) / "results")

    def hop_store(self, trial_id: str | None = None) -> RunHopStore:
        """The run's model store, with the run's claims: one board for every command that trains its hops. With a
        `trial_id`, every hop it trains is recorded in the run's `trained` table as it is stored."""
        run = locate(self.run_uri)
        claims = StorageClaims(run / "claims", self.faults, self.claim_lease_s)
        ledger = None if trial_id is None else functools.partial(self.results().write_trained, trial_id)
        return RunHopStore(run / "models", claims, self.faults, ledger)


def chain_trainable(config: dict[str, Any], context: TrialContext) -> None:
    use_assigned_cpus()
    context.faults.point("trial-start")
    trial_id = config["trial_id"]
    cfg = chain_config(context.base, config)
    results, store = context.results(), context.hop_store(trial_id)
    reporter = TrialReporter(cfg, trial_id, results, context)
    halving = context.rungs if cfg not in context.in_full else ()
    rungs = fidelities(cfg, halving)
    accuracies: list[float] = []
    # Naive is the configuration trained in one go: a resumed hop's train_flops also counts its teachers' outputs
    # computed again.
    naive = planned_flops(cfg) if halving else None
    for rung, rung_cfg in rungs:
        try:
            result = train_chain(rung_cfg, report=reporter, store=store)
        except HopDiverged as diverged:
            reporter.write_epochs()
            results.write_diverged(trial_id, cfg, diverged, {RUNG: rung})
            context.faults.point("results-written")
            tune.report({**reporter.metrics(0.0, 0, reporter.train_flops), OUTCOME: DIVERGED, DETAIL: f"{diverged}"})
            return
        except Exception:
            # Failing: keep the curve of the hop it was training. A trial stopped by Tune (a scheduler, an
            # interruption) leaves through SystemExit at a report, and Ray does not wait for its thread: nothing is
            # written then.
            reporter.write_epochs()
            raise
        accuracies.append(result.student.val_acc)
        top = rung == cfg.epochs
        rung_columns = {RUNG: rung, "rung_accs": accuracies if halving else None,
                        "naive_flops": result.train_flops if naive is None else naive}
        results.write_finished(trial_id, cfg, result, rung_columns, stopped=not top)
        context.faults.point("results-written" if top else f"rung-{rung}-written")
        if not top:  # the scheduler decides here whether the chain goes on to the next rung
            tune.report({**reporter.metrics(result.student.val_acc, 0, result.train_flops), RUNG: rung})
    tune.report({**reporter.metrics(result.student.val_acc, cfg.epochs, result.train_flops), OUTCOME: FINISHED})


def fidelities(cfg: ChainConfig, rungs: tuple[int, ...]) -> list[tuple[int, ChainConfig]]:
    """The chains a trial trains, each with its rung's epochs per hop below the teacher: under halving one per
    rung, the last one the configuration itself; otherwise the configuration alone."""
    lower = [(epochs, cfg.replace(lower_epochs=epochs)) for epochs in rungs if epochs < cfg.epochs]
    return [*lower, (cfg.epochs, cfg)]


def planned_flops(cfg: ChainConfig) -> int:
    """The configuration's from-scratch training FLOPs at full fidelity, without training it (whole FLOPs: with
    augmentation DGKD's dropped teachers count on average)."""
    return round(sum(hop.flops for hop in planned_hops(cfg)))


def use_assigned_cpus() -> None:
    """Torch's threads = the trial's CPUs, so concurrent trials do not oversubscribe a node."""
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))


class TrialReporter:
    """Turns the chain's events into Tune results of a few scalars and writes each trained hop's epochs when the
    hop ends.

    Every result carries the objectives (0 until known) so searchers and schedulers always find their metric;
    `student_epoch` is ASHA's clock."""

    def __init__(self, cfg: ChainConfig, trial_id: str, results: ResultsFolder, context: TrialContext) -> None:
        self.cfg, self.trial_id, self.results, self.context = cfg, trial_id, results, context
        self.student_hop = len(cfg.archs) - 1
        self.train_flops = 0
        self.epochs: list[dict[str, Any]] = []  # of the hop being trained

    def __call__(self, event: dict[str, Any]) -> None:
        if event["event"] == "epoch":
            self.epochs.append(event)
            self.context.faults.point(f"epoch-{event['hop']}-{event['epoch']}")
            if self.context.epoch_reports:
                self._report_epoch(event)
        else:
            self.write_epochs()
            self.train_flops += event["train_flops"]

    def _report_epoch(self, event: dict[str, Any]) -> None:
        is_student = event["hop"] == self.student_hop
        if is_student and event["epoch"] == self.cfg.epochs:
            return  # the final report says it, with the outcome; a scheduler stopping it here would lose the rows
        # The scheduler may stop the trial at this report: the curve so far is on storage first.
        self.write_epochs(hop_ended=False)
        tune.report(self.metrics(event["val_acc"] if is_student else 0.0, event["epoch"] if is_student else 0,
                                 self.train_flops))

    def write_epochs(self, hop_ended: bool = True) -> None:
        if self.epochs:
            self.results.write_epochs(self.trial_id, self.epochs[0]["key"], self.epochs)
        if hop_ended:
            self.epochs = []

    def metrics(self, student_val_acc: float, student_epoch: int, train_flops: int) -> dict[str, Any]:
        known = {"student_val_acc": student_val_acc, "student_epoch": student_epoch, "train_flops": train_flops}
        # A halving trial's clock (RUNG) is added by the report at the end of each rung below the top.
        return {name: known[name] for name in self.context.metrics if name in known}
