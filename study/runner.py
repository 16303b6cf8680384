"""Builds the Ray Tune experiment for a study spec — OptunaSearch over the define-by-run space — runs or resumes
it, and returns where the results are."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Callable

import optuna
import ray
from ray import tune
from ray.tune.logger import JsonLoggerCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from study.space import suggest, warm_start_points
from study.spec import OBJECTIVES, StudySpec
from study.trainable import chain_trainable
from study.writer import ResultsWriter

Trainable = Callable[..., None]


@dataclass(frozen=True)
class StudyOutcome:
    run_path: str
    results_path: str
    num_trials: int
    errors: list[str]
    resumed: bool


def run_study(spec: StudySpec, trainable: Trainable = chain_trainable) -> StudyOutcome:
    """Runs (or, when `<storage>/<name>` holds an unfinished study, resumes) the study."""
    # Parquet replaces Tune's CSV and TensorBoard logs (the JSON log stays: Tune's result grid reads it).
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # Keeping one checkpoint per trial forces a state snapshot per hop; cheap here, so don't warn about it.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if not ray.is_initialized():
        ray.init(address=spec.address, include_dashboard=False, configure_logging=False)
    wrapped = _with_resources(spec, trainable)
    resumed = tune.Tuner.can_restore(spec.run_path)
    if resumed:
        tuner = tune.Tuner.restore(spec.run_path, trainable=wrapped, resume_unfinished=True, resume_errored=False)
    else:
        tuner = tune.Tuner(wrapped, tune_config=_tune_config(spec), run_config=_run_config(spec))
    grid = tuner.fit()
    errors = [str(error) for error in grid.errors]
    return StudyOutcome(spec.run_path, results_path(spec), len(grid), errors, resumed)


def results_path(spec: StudySpec) -> str:
    return f"{spec.run_path}/results"


def _with_resources(spec: StudySpec, trainable: Trainable) -> Any:
    # Trials on one machine share trained hops (the teacher is the same in every trial) through a local store.
    shared_store = f"{spec.run_path}/models" if spec.is_local else None
    bound = tune.with_parameters(trainable, base=spec.base_config(), shared_store=shared_store)
    return tune.with_resources(bound, {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial})


def _tune_config(spec: StudySpec) -> tune.TuneConfig:
    return tune.TuneConfig(search_alg=_searcher(spec), scheduler=_scheduler(spec), num_samples=spec.trials,
                           max_concurrent_trials=spec.max_concurrent, trial_dirname_creator=_trial_dirname)


def _trial_dirname(trial: Any) -> str:
    # Tune's default name spells out every parameter; the Parquet rows hold those, the id is enough here.
    return f"trial_{trial.trial_id}"


def _searcher(spec: StudySpec) -> OptunaSearch:
    metric: str | list[str] = list(spec.objectives) if spec.multi_objective else spec.objectives[0]
    mode: str | list[str] = [OBJECTIVES[o] for o in spec.objectives] if spec.multi_objective \
        else OBJECTIVES[spec.objectives[0]]
    return OptunaSearch(
        space=functools.partial(suggest, spec=spec),
        metric=metric,
        mode=mode,
        points_to_evaluate=warm_start_points(spec),
        sampler=optuna.samplers.TPESampler(seed=spec.seed),
        study_name=spec.name,
        storage=_journal(spec),
    )


def _journal(spec: StudySpec) -> optuna.storages.BaseStorage | None:
    """A journal file beside the Parquet results, so `optuna-dashboard <file>` opens the same study."""
    if not spec.is_local:
        return None
    path = f"{results_path(spec)}/optuna_journal.log"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))


def _scheduler(spec: StudySpec) -> TrialScheduler:
    if spec.scheduler == "asha":
        # The student's epochs are the clock: upper hops report student_epoch 0 and are never cut. A trial that
        # reaches max_t must go on to its final report, which carries the chain's record.
        return ASHAScheduler(time_attr="student_epoch", metric=spec.objectives[0], mode=OBJECTIVES[spec.objectives[0]],
                             max_t=spec.epochs, grace_period=1, reduction_factor=2, stop_last_trials=False)
    return FIFOScheduler()


def _run_config(spec: StudySpec) -> tune.RunConfig:
    writer = ResultsWriter(results_path(spec), spec.base_config())
    return tune.RunConfig(name=spec.name, storage_path=spec.storage_uri, callbacks=[writer, JsonLoggerCallback()],
                          failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                          checkpoint_config=tune.CheckpointConfig(num_to_keep=1))
