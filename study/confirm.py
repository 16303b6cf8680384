"""Seed confirmation: the top configurations of a study, or the best of each method group, trained again with new
seeds through Ray, so that a ranking is read against seed noise (seeds are noise here, never a hyperparameter).

Each confirmation trial writes its own `confirm` row; hops come from (and go to) the study's model store.
Running it again with more seeds trains only the (configuration, seed) pairs that have no row yet.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import pandas as pd
from ray import tune

from analysis.load import read_table, sort_by_group
from analysis.ranking import chain_settings, ranked
from runstore import schema
from runstore.storage import locate
from study import cluster
from study.faults import Faults
from study.recorder import NodeDeaths, error_message
from study.results_folder import ResultsFolder, confirmation_id
from study.runner import bind, quiet_run_config, quiet_tune, trial_dirname
from study.trainable import TrialContext, use_assigned_cpus
from trainables import ChainConfig, HopDiverged, train_chain
from trainables.typed import InputError

# Settings that identify a configuration apart from its seed (the data folder may move between machines).
NOT_IDENTITY = ("seed", "data_dir", "device")


@dataclass(frozen=True)
class ConfirmOutcome:
    jobs: int
    errors: list[str]


def confirmation_jobs(trials: pd.DataFrame, top: int | None, seeds: int, done: set[tuple[str, int]] = frozenset(),
                      per_group: bool = False) -> list[dict[str, Any]]:
    """Jobs that train each chosen configuration (see `chosen_sources`) with `seeds` seeds the study did not use;
    pairs in `done` (source trial, seed) are left out.

    Every configuration gets the same seeds: the seed draws the validation split and the teacher, so the
    configurations confirmed together form a paired design (`analysis.paired`).
    """
    sources = chosen_sources(trials, top, per_group)
    first_new_seed = int(trials["seed"].max()) + 1
    jobs = []
    for source in sources:
        for seed in range(first_new_seed, first_new_seed + seeds):
            if (source["trial_id"], seed) not in done:
                jobs.append({"source_trial_id": source["trial_id"], "chain": {**source["chain"], "seed": seed}})
    return jobs


def chosen_sources(trials: pd.DataFrame, top: int | None, per_group: bool) -> list[dict[str, Any]]:
    """The configurations to confirm, ranked by validation accuracy (never test): the best trial of each method
    group (`per_group`, in report group order), or else the `top` best distinct configurations."""
    best = ranked(trials)
    if best.empty:
        raise InputError("run", problem="no successful trial to confirm")
    if per_group:
        best = sort_by_group(best.drop_duplicates("group", keep="first"))
    chosen: dict[str, dict[str, Any]] = {}
    for _, row in best.iterrows():
        chain = chain_settings(row)
        identity = repr(sorted((c, v) for c, v in chain.items() if c not in NOT_IDENTITY))
        chosen.setdefault(identity, {"trial_id": row["trial_id"], "chain": chain})
    return list(chosen.values()) if per_group else list(chosen.values())[:top]


def _done(confirm: pd.DataFrame | None) -> set[tuple[str, int]]:
    if confirm is None:
        return set()
    return {(r.source_trial_id, int(r.seed)) for r in confirm.itertuples() if r.status != schema.ERROR}


def planned_jobs(run_uri: str, top: int | None, seeds: int, per_group: bool = False) -> list[dict[str, Any]]:
    results = locate(run_uri) / "results"  # the two tables it needs, not the study's large predictions
    return confirmation_jobs(read_table(results, "trials"), top, seeds,
                             _done(read_table(results, "confirm", optional=True)), per_group)


def confirm_trainable(config: dict[str, Any], context: TrialContext) -> None:
    use_assigned_cpus()
    job = config["job"]
    cfg = ChainConfig.from_flat(job["chain"])
    results = context.results()
    try:
        result = train_chain(cfg, store=context.hop_store(confirmation_id(job["source_trial_id"], cfg.seed)))
    except HopDiverged as diverged:
        results.write_confirmation(job["source_trial_id"], cfg, schema.DIVERGED, error=f"diverged: {diverged}")
        return
    results.write_confirmation(job["source_trial_id"], cfg, schema.FINISHED, summary=result.summary())


class ConfirmRecorder(NodeDeaths):
    """The rows a confirmation trial cannot write: its ERROR."""

    def __init__(self, results: ResultsFolder) -> None:
        self.results, self.errors = results, []

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        super().on_trial_error(iteration, trials, trial, **info)
        job = trial.config["job"]
        message = error_message(trial)
        self.errors.append(message)
        self.results.write_confirmation(job["source_trial_id"], ChainConfig.from_flat(job["chain"]), schema.ERROR,
                                        error=message)


def run_confirmation(run_uri: str, jobs: list[dict[str, Any]], resources: dict[str, float], max_concurrent: int,
                     address: str | None = None) -> ConfirmOutcome:
    if not jobs:
        return ConfirmOutcome(0, [])
    quiet_tune()
    run = locate(run_uri)
    cluster.connect(address)
    recorder = ConfirmRecorder(ResultsFolder(run / "results"))
    session = time.strftime("confirm-%Y%m%d-%H%M%S") + f"-{uuid.uuid4().hex[:4]}"
    tuner = tune.Tuner(
        bind(confirm_trainable, TrialContext({}, run.uri, Faults.from_env()), resources),
        param_space={"job": tune.grid_search(jobs)},
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent, reuse_actors=True,
                                    trial_dirname_creator=trial_dirname),
        run_config=quiet_run_config(run, session, [recorder]),
    )
    tuner.fit()
    return ConfirmOutcome(len(jobs), recorder.errors)
