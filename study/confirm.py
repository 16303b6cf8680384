"""Seed confirmation: the top configurations of a study trained again with new seeds, through Ray, so that a
ranking is read against seed noise (seeds are noise here, never a hyperparameter)."""

from __future__ import annotations

import os
from typing import Any

import ray
from ray import tune
from ray.tune.logger import JsonLoggerCallback

from study.errors import UsageError
from study.results import ranked_trials, read_rows
from study.runner import StudyOutcome, _trial_dirname
from study.trainable import chain_trainable
from study.writer import CONFIG_COLUMNS, ConfirmWriter

# Settings that identify a configuration apart from its seed (the data folder may move between machines).
IDENTITY_COLUMNS = [c for c in CONFIG_COLUMNS if c not in ("seed", "data_dir", "device")]


def read_trials(run: str) -> list[dict[str, Any]]:
    rows = read_rows(f"{run}/results/trials.parquet")
    if rows is None:
        raise UsageError(f"run: no results/trials.parquet in {run}")
    return rows


def confirmation_jobs(trials: list[dict[str, Any]], top: int, seeds: int) -> list[dict[str, Any]]:
    """The `top` best distinct configurations (by validation accuracy, never test), each with `seeds` seeds
    that the study did not use."""
    chosen: dict[tuple, dict[str, Any]] = {}
    for trial in ranked_trials(trials):
        chosen.setdefault(_identity(trial), trial)
    if not chosen:
        raise UsageError("run: no successful trial to confirm")
    first_new_seed = max(t["seed"] for t in trials) + 1
    return [{"source_trial_id": trial["trial_id"],
             "chain": {**{c: trial[c] for c in CONFIG_COLUMNS}, "seed": first_new_seed + i}}
            for trial in list(chosen.values())[:top] for i in range(seeds)]


def _identity(trial: dict[str, Any]) -> tuple:
    return tuple(tuple(v) if isinstance(v, list) else v for v in (trial[c] for c in IDENTITY_COLUMNS))


def confirm_trainable(config: dict[str, Any], shared_store: str | None = None) -> None:
    chain_trainable(config["job"]["chain"], base={}, shared_store=shared_store)


def run_confirmation(run: str, top: int, seeds: int, resources: dict[str, float], max_concurrent: int,
                     address: str | None = None) -> StudyOutcome:
    jobs = confirmation_jobs(read_trials(run), top, seeds)
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, configure_logging=False)
    local = "://" not in run
    shared_store = f"{run}/models" if local else None
    trainable = tune.with_resources(tune.with_parameters(confirm_trainable, shared_store=shared_store), resources)
    name = f"confirm_top{top}_seeds{seeds}"
    tuner = tune.Tuner(
        trainable,
        param_space={"job": tune.grid_search(jobs)},
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent, trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(name=name, storage_path=run,
                                  callbacks=[ConfirmWriter(f"{run}/results", {}), JsonLoggerCallback()]),
    )
    grid = tuner.fit()
    return StudyOutcome(f"{run}/{name}", f"{run}/results", len(grid), [str(e) for e in grid.errors], False)
