"""Runs one session of a study: reconcile the journal with the results, then a Ray Tune experiment whose
searcher (study.search) hands out the trials still to run (resumed ones first), until the study has its trials,
the space is exhausted, or a signal interrupts it.

Every session is a new Tune experiment (`<run>/tune/<yymmdd-HHMM-xxxx>`); a rerun never restores Tune's snapshot,
it rebuilds the state from the results the trials wrote (`study.reconcile`).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Callable, Sequence

import optuna
import pandas as pd
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.stopper import Stopper

from analysis.load import empty_table, read_table
from runstore import schema
from runstore.storage import Location
from study import cluster, space
from study.faults import Faults
from study.halving import ChainHalving, HalvingRule, study_rungs
from study.journal import Journal
from study.plan import plan_study
from study.reconcile import GIVE_UP_AFTER, Failed, Plan, reconcile
from study.recorder import NoTuneProgress, TrialRecorder
from study.results_folder import ResultsFolder
from study.search import StudySearch
from study.spec import OBJECTIVES, StudySpec
from study.trainable import RUNG, TrialContext, chain_trainable
from trainables import ChainConfig

Trainable = Callable[..., None]
# Tune's console output and per-trial logs are replaced by the study's own lines and Parquet rows; the study
# handles SIGINT itself; and Tune's experiment snapshot, which no rerun reads (study.reconcile rebuilds a session
# from the results), is written once a day and at the session's end instead of every few seconds — each write is
# O(trials). Read by Tune when an experiment starts.
QUIET_TUNE = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "RAY_AIR_NEW_OUTPUT": "0", "TUNE_PRINT_ALL_TRIAL_ERRORS": "0",
              "TUNE_DISABLE_SIGINT_HANDLER": "1", "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
              "TUNE_GLOBAL_CHECKPOINT_S": "86400"}
AWS_CREDENTIALS = frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"})


@dataclass
class StudyOutcome:
    target: int
    trials: pd.DataFrame = field(default_factory=lambda: empty_table("trials"))  # every trial that ended
    errors: list[str] = field(default_factory=list)  # of this session's errored trials
    signal: int | None = None  # the signal that interrupted the session
    exhausted: str | None = None  # why the study has fewer trials than asked for

    @property
    def counts(self) -> dict[str, int]:
        """Status -> trials that ended with it, in the schema's order of statuses."""
        present = self.trials["status"].value_counts()
        return {status: int(present[status]) for status in schema.STATUSES if status in present}

    @property
    def ended(self) -> int:
        """Trials whose configuration has its outcome; an ERROR is retried by the next session."""
        return int(self.trials["status"].isin(schema.FINAL).sum())

    @property
    def failed(self) -> int:
        return int((self.trials["status"] == schema.ERROR).sum())

    @property
    def missing(self) -> int:
        """Trials asked for that have no outcome yet (failed, lost or interrupted): the next session runs them. An
        exhausted space misses none: it has no more to give."""
        return 0 if self.exhausted else max(0, self.target - self.ended)


def run_study(spec: StudySpec, trainable: Trainable = chain_trainable,
              callbacks: Sequence[tune.Callback] = ()) -> StudyOutcome:
    """Runs the study's next session; `callbacks` also watch its Tune experiment (a benchmark's clock)."""
    quiet_tune()
    run = spec.run
    cluster.connect(spec.address)
    journal = Journal(run)
    storage = journal.open()
    study = _load_study(spec, storage)
    results = ResultsFolder(run / "results")
    plan = reconcile(spec, study, results)
    outcome = StudyOutcome(spec.trials)
    try:
        if spec.trials > plan.ended:
            _session(spec, trainable, study, storage, plan, results, journal, outcome, callbacks)
    finally:
        journal.sync(force=True)
    outcome.trials = read_table(results.location, "trials")  # once: `kdstudy run`'s summary reads it too
    return outcome


def quiet_tune() -> None:
    """Before a Tune experiment: the settings above (a user's own environment wins), Optuna's notices off, and
    no credentials in the trials' runtime environment."""
    for name, value in QUIET_TUNE.items():
        os.environ.setdefault(name, value)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    keep_credentials_out_of_runtime_envs()


def keep_credentials_out_of_runtime_envs() -> None:
    """Tune copies the driver's AWS_* variables into every trial's runtime_env, and Ray's runtime_env agent writes
    runtime_envs in plain text into `logs/runtime_env_agent.log` on every node. Trials find credentials where the
    driver does (environment, profile, instance role) on their own node instead. Ray has no public switch for
    this (a job's runtime_env env_vars are overridden by the trial actor's own; clearing them from the driver's
    environment would cut the driver's own storage off): the set is a constant of Tune's internal module
    `ray.tune.execution.class_cache`, checked against Ray 2.60 and by the S3 test that scans Ray's logs for a
    planted secret."""
    from ray.tune.execution import class_cache

    class_cache.ENV_VARS_TO_PROPAGATE = class_cache.ENV_VARS_TO_PROPAGATE - AWS_CREDENTIALS


def _session(spec: StudySpec, trainable: Trainable, study: optuna.Study, storage: optuna.storages.BaseStorage,
             plan: Plan, results: ResultsFolder, journal: Journal, outcome: StudyOutcome,
             callbacks: Sequence[tune.Callback]) -> None:
    faults = Faults.from_env()
    with Interruption() as interruption:
        searcher = StudySearch(spec, study, plan.ledger, plan.resume, faults, on_tell=journal.sync, storage=storage)
        asha, rungs = spec.early_stopping == "asha", study_rungs(spec)
        clock = ["student_epoch"] if asha else [RUNG] if rungs else []
        context = TrialContext(spec.base_config(), spec.run.uri, faults, metrics=(*spec.objectives, *clock),
                               epoch_reports=asha, rungs=tuple(rungs),
                               in_full=warm_starts(spec) if rungs else frozenset())
        recorder = TrialRecorder(context.base, results, spec.trials, plan.ended, interruption.is_set)
        _print_start(spec, plan)
        tuner = _tuner(spec, trainable, context, searcher, [recorder, *callbacks], interruption,
                       num_samples=spec.trials - plan.ended, scheduler=_scheduler(spec, plan))
        tuner.fit()
    outcome.signal, outcome.errors = interruption.signal, recorder.errors
    outcome.exhausted = searcher.exhausted_reason


def _load_study(spec: StudySpec, storage: optuna.storages.BaseStorage) -> optuna.Study:
    directions = [("maximize" if OBJECTIVES[o] == "max" else "minimize") for o in spec.objectives]
    # constant_liar: concurrent trials count as bad while running, so TPE does not propose their twins.
    sampler = optuna.samplers.TPESampler(seed=spec.seed + _trial_count(storage, spec.name), constant_liar=True)
    return optuna.create_study(storage=storage, study_name=spec.name, directions=directions, sampler=sampler,
                               load_if_exists=True)


def _trial_count(storage: optuna.storages.BaseStorage, name: str) -> int:
    """Each session's sampler gets its own seed: a resumed study must not replay the first session's draws."""
    summaries = [s for s in optuna.get_all_study_summaries(storage) if s.study_name == name]
    return summaries[0].n_trials if summaries else 0


def _tuner(spec: StudySpec, trainable: Trainable, context: TrialContext, searcher: StudySearch,
           callbacks: list[tune.Callback], interruption: Interruption, num_samples: int,
           scheduler: TrialScheduler) -> tune.Tuner:
    resources = {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial}
    # short: Tune repeats the session's and the trial's folder names in every trial's entry of its experiment state
    session = time.strftime("%y%m%d-%H%M") + f"-{uuid.uuid4().hex[:4]}"
    return tune.Tuner(
        bind(trainable, context, resources),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                    num_samples=num_samples,
                                    max_concurrent_trials=spec.max_concurrent, reuse_actors=True,
                                    trial_dirname_creator=trial_dirname),
        run_config=quiet_run_config(spec.run, session, callbacks, stop=interruption,
                                    failure_config=tune.FailureConfig(max_failures=spec.max_failures)),
    )


def bind(trainable: Trainable, context: TrialContext, resources: dict[str, float]) -> Any:
    """The trainable as Tune runs it: the session's context sent once through Ray's object store, and each trial's
    resources."""
    return tune.with_resources(tune.with_parameters(trainable, context=context), resources)


def quiet_run_config(run: Location, session: str, callbacks: Sequence[tune.Callback], **options: Any
                     ) -> tune.RunConfig:
    """A session's own Tune experiment, `<run>/tune/<session>`, on the run's storage, printing nothing: the
    callbacks print the study's lines."""
    folder = run / "tune"
    return tune.RunConfig(name=session, storage_path=folder.path, storage_filesystem=folder.fs,
                          callbacks=[*callbacks, NoTuneProgress()], verbose=0, **options)


def trial_dirname(trial: Any) -> str:
    # Tune's default name spells out every parameter; the Parquet rows hold those, the study's id is enough.
    return str(trial.config.get("trial_id", trial.trial_id))


def warm_starts(spec: StudySpec) -> frozenset[ChainConfig]:
    """The study's warm starts (the seed paper's comparison and the nokd control) as chains: halving trains them
    in full, as the report's method comparison and error avalanche need them whole."""
    return frozenset(space.warm_start_chains(spec))


def _scheduler(spec: StudySpec, plan: Plan) -> TrialScheduler:
    rungs = study_rungs(spec)
    if rungs:
        # The cutoffs go on from every rung value of earlier sessions: those of ended trials and of halted ones,
        # whose decision is taken again against them.
        rule = HalvingRule(rungs, spec.halving_factor, OBJECTIVES[spec.objectives[0]])
        rule.record_rows([*plan.rows, *plan.halted])
        return ChainHalving(rule, spec.objectives[0])
    if spec.early_stopping == "asha":
        # The student's epochs are the clock: upper hops report student_epoch 0 and are never cut. A trial that
        # reaches max_t must go on to its final report, which carries the chain's outcome: reaching max_t is no stop
        # here, and the top rung only sees the final report (TrialReporter does not report the last epoch alone).
        return ASHAScheduler(time_attr="student_epoch", metric=spec.objectives[0], mode=OBJECTIVES[spec.objectives[0]],
                             max_t=spec.epochs, grace_period=1, reduction_factor=2, stop_last_trials=False)
    return FIFOScheduler()


def _print_start(spec: StudySpec, plan: Plan) -> None:
    ended, resuming = plan.ended, len(plan.resume)
    state = f"{ended} of {spec.trials} trials ended" + (f", resuming {resuming}" if resuming else "") if ended or \
        resuming else f"{spec.trials} trials"
    print(f"study {spec.name} ({spec.run}): {state}, {spec.max_concurrent} at a time", flush=True)
    print(plan_study(spec, plan.ended).line(), flush=True)
    if plan.retry:
        print(f"retrying {len(plan.retry)} trials that failed: {_listed(plan.retry)}", flush=True)
    if plan.given_up:
        print(f"giving up {len(plan.given_up)} configurations that failed in {GIVE_UP_AFTER} sessions: "
              f"{_listed(plan.given_up)}", flush=True)


def _listed(failed: list[Failed], shown: int = 5) -> str:
    more = f"; and {len(failed) - shown} more" if len(failed) > shown else ""
    return "; ".join(f.line() for f in failed[:shown]) + more


class Interruption(Stopper):
    """SIGINT and SIGTERM stop the study cleanly: running trials are stopped (no outcome is recorded for them, so
    the next session resumes them) and the session returns. A second signal stops at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interruption:
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its stopper with the experiment; the handlers it replaced stay in the driver (whatever they
        # hold: Ray's own SIGTERM handler of a node started in this process holds locks).
        return {**self.__dict__, "_previous": {}}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum

    def is_set(self) -> bool:
        return self.signal is not None

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.is_set()
