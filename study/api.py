"""kdstudy from Python, the way Ray Tune users work: run, resume or grow a study (`run`), or train KD chains in
your own `tune.Tuner` with any Tune searcher and scheduler (`tune_trainable`, `param_space`, `tune_callback`).

Both write the study's results layout on the run's storage and share its model store and claim board, so
`analysis.load.load_run` and `kdstudy report` read either. Nothing here forks the study: `run` is `kdstudy run`'s
session (`study.folder.start`, `study.runner.run_study`), and a trial of a user's Tuner is the study's
`chain_trainable`, bound the way the study binds it (`study.runner.bind`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pandas as pd
import ray
from ray import tune

from runstore.storage import Location, locate
from study import cluster
from study.faults import Faults
from study.folder import check_storage, read_settings, start
from study.recorder import write_error, write_stopped
from study.results_folder import ResultsFolder
from study.runner import bind, keep_credentials_out_of_runtime_envs, run_study
from study.space import TA_PARAM, chain_config, ta_subsets
from study.spec import STUDY_SETTINGS, StudySpec, check_name, validate
from study.trainable import OUTCOME, TrialContext, chain_trainable
from trainables import ChainConfig
from trainables.config import CHAIN_SETTINGS
from trainables.methods import Param, all_params, method_class
from trainables.typed import InputError, coerce

# What a trial of a user's Tuner reports, at every epoch of every hop and at its end: `student_epoch` is 0 before
# the student's hop, the clock of a scheduler that stops chains on the student's epochs (ASHA's time_attr).
TUNE_METRICS = ("student_val_acc", "train_flops", "student_epoch")
# A trial's resources as Tune writes them, each held to the rule of the study setting that says the same.
RESOURCES = {"cpu": STUDY_SETTINGS["cpus_per_trial"], "gpu": STUDY_SETTINGS["gpus_per_trial"]}


@dataclass(frozen=True)
class StudyResults:
    """A study after a session, read as a Tune user reads a `ResultGrid`. It holds every trial of the study, of
    every session: a study's truth is the rows its trials wrote, not one Tune experiment."""

    path: str  # the run, `<storage>/<name>`: for `analysis.load.load_run` and `analysis.report.write_report`
    trials: pd.DataFrame  # `results/trials`: one row per trial (its configuration, outcome, accuracies, costs)
    errors: list[str]  # of this session's trials that failed, one line each
    missing: int  # trials asked for without an outcome (failed or interrupted): running the spec again runs them
    interrupted: bool  # by SIGINT or SIGTERM: the running trials were stopped, and resume on the next run
    exhausted: str | None  # why the study has fewer trials than asked for: its space has no more

    @property
    def best_config(self) -> dict[str, Any]:
        """The best trial's flat chain config (by validation accuracy, as the report ranks), ready for
        `ChainConfig.from_flat`; ValueError when no trial finished its chain."""
        from analysis.ranking import best_config

        return best_config(self.trials)


def run(spec: StudySpec) -> StudyResults:
    """Runs the study `spec` describes, as `kdstudy run` does but for the report: a new study, the rest of an
    unfinished one (resumed: no finished trial trains again), or a finished one grown to a larger `spec.trials`;
    any other change of settings under the same name is refused. Bad input raises InputError, naming the field,
    before anything is written."""
    spec = checked(spec)
    start(spec)
    outcome = run_study(spec)
    return StudyResults(spec.run.uri, outcome.trials, outcome.errors, outcome.missing,
                        outcome.signal is not None, outcome.exhausted)


def checked(spec: StudySpec) -> StudySpec:
    """`spec` as `kdstudy run` runs it: each setting as its declared type (a list for a tuple, an int for a float),
    then every rule a spec file is held to."""
    typed = {name: coerce(name, declared.kind, getattr(spec, name)) for name, declared in STUDY_SETTINGS.items()}
    return validate(dataclasses.replace(spec, **typed))


# --- the chain trainable in a user's own Tuner ---------------------------------------------------------------------


def tune_trainable(storage: str, name: str, resources: dict[str, float] | None = None) -> Any:
    """A Tune trainable that trains one KD chain per trial, from the trial's flat config (`ChainConfig`'s settings
    and its method's; `param_space` builds a space of them), for a `tune.Tuner` with any searcher and scheduler.

    A trial writes the study's rows to `<storage>/<name>/results/` under Tune's trial id; takes and puts its hops in
    the run's model store under the run's claims (a hop is trained once per run, whatever else trains chains
    there); and reports `TUNE_METRICS` at every epoch of every hop and at its end, whose result also says
    `outcome` (finished or diverged). Settings the drawn method does not have are ignored (`drawn_chain`).
    `resources` as Tune writes them, `{"cpu": 2, "gpu": 0.5}`; 1 CPU by default. Add `tune_callback(storage,
    name)` to the run's callbacks: it writes the rows of the trials a scheduler stops or that fail."""
    context = TrialContext({}, _run(storage, name).uri, Faults.from_env(), metrics=TUNE_METRICS,
                           epoch_reports=True)
    wanted = _resources({"cpu": 1.0, **(resources or {})})
    keep_credentials_out_of_runtime_envs()
    return bind(tune_chain_trainable, context, wanted)


def tune_chain_trainable(config: dict[str, Any], context: TrialContext) -> None:
    """The study's trainable for a trial of a user's Tuner: its id is Tune's, its chain the drawn method's."""
    chain_trainable({**drawn_chain(config), "trial_id": tune.get_context().get_trial_id()}, context)


def tune_callback(storage: str, name: str) -> tune.Callback:
    """The driver's side of `tune_trainable`'s trials, for the run's `tune.RunConfig(callbacks=[...])`."""
    return TrialRows(_run(storage, name))


class TrialRows(tune.Callback):
    """Writes the rows a trial cannot write itself, as a study's driver does: STOPPED for a trial a scheduler
    stopped before its chain's end, ERROR for one that raised or whose node died."""

    def __init__(self, run: Location) -> None:
        self.results = ResultsFolder(run / "results")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        if result.get(OUTCOME) is None:
            write_stopped(self.results, trial.trial_id, _tune_chain(trial.config), result)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        try:
            cfg = _tune_chain(trial.config)
        except InputError:
            return  # no chain to write a row of: the trial failed on its config, which Tune shows
        write_error(self.results, trial.trial_id, cfg, trial)


def _tune_chain(config: dict[str, Any]) -> ChainConfig:
    return chain_config({}, drawn_chain(config))


def drawn_chain(config: dict[str, Any]) -> dict[str, Any]:
    """A flat config a Tune space drew → its chain's settings: the settings of other methods than the drawn one are
    left out, and so are TA depths for a method that runs without TAs. Tune's spaces are flat and draw every key
    for every trial, where the study's define-by-run space asks only for the drawn method's."""
    method = method_class(config.get("method", CHAIN_SETTINGS["method"].default))
    ignored = set(all_params()) - {param.name for param in method.params}
    if not method.uses_tas:
        ignored.add(TA_PARAM)
    return {key: value for key, value in config.items() if key not in ignored}


def param_space(spec: StudySpec) -> dict[str, Any]:
    """A Tune `param_space` of the chains `spec` searches, for Tune's own searchers: its fixed chain settings as
    constants; `method`, and `ta_depths` as one choice of a TA subset ("8-6-4"); every setting of its methods as
    its search draws it — choices and grids (the very points a study draws, so hops repeat across trials) as
    `tune.choice`, ranges as `tune.uniform` or `tune.loguniform`.

    Tune draws every method's settings for every trial; `tune_trainable` ignores those the drawn method does not
    have. The spec's checks cover every draw (every method with every TA subset at both ends of each range), so
    every chain the space draws is valid."""
    spec = checked(spec)
    domains = TuneDomains()
    for param in _searched(spec):
        param.suggest(domains, spec.searched(param))
    space = {**spec.base_config(), "method": tune.choice(list(spec.methods)), **domains.space}
    if any(method_class(name).uses_tas for name in spec.methods):
        space[TA_PARAM] = tune.choice(ta_subsets(spec.ta_candidates))
    return space


class TuneDomains:
    """Answers each suggestion of a setting's search (`Param.suggest`, the one rule of how a search is drawn) with
    the Tune domain that draws the same values."""

    def __init__(self) -> None:
        self.space: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        return self._add(name, tune.choice(list(choices)))

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> Any:
        if step is not None:  # a grid point as Optuna computes it (`study.spec.Search.nearest`)
            points = round((high - low) / step) + 1
            return self._add(name, tune.choice([k * step + low for k in range(points)]))
        return self._add(name, tune.loguniform(low, high) if log else tune.uniform(low, high))

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> Any:
        domain = tune.lograndint(low, high + 1) if log else tune.choice(list(range(low, high + 1, step)))
        return self._add(name, domain)

    def _add(self, name: str, domain: Any) -> Any:
        self.space[name] = domain
        return domain


def _searched(spec: StudySpec) -> list[Param]:
    """Every setting of the spec's methods, once (methods share T and α)."""
    return list({param.name: param for name in spec.methods for param in method_class(name).params}.values())


def _run(storage: str, name: str) -> Location:
    """`<storage>/<name>` for chains of a user's Tuner: writable, and not a study's (whose rows are its trials)."""
    check_storage(storage)
    check_name(name)
    run = locate(storage) / name
    if read_settings(run) is not None:
        raise InputError("name", problem=f"{run} is a study's folder; its results are its own trials: use another "
                                         "name")
    return run


def _resources(resources: dict[str, float]) -> dict[str, float]:
    """Tune's resources of a trial, checked as `kdstudy run` checks its own: known kinds, valid amounts, and no
    more than a node of the connected cluster (or this machine) has."""
    wanted = {}
    for kind, amount in resources.items():
        if kind not in RESOURCES:
            raise InputError(f"resources.{kind}", problem=f"unknown resource; expected {' or '.join(RESOURCES)}")
        try:
            wanted[kind] = RESOURCES[kind].coerce(amount)
        except InputError as error:
            raise InputError(f"resources.{kind}", problem=error.detail) from None
    capacity, where = ((cluster.cluster_capacity(), "the largest node of the cluster") if ray.is_initialized()
                       else (cluster.local_capacity(), "this machine"))
    try:
        cluster.check_request(wanted["cpu"], wanted.get("gpu", 0.0), capacity, where)
    except InputError as error:
        raise InputError("resources", problem=error.detail) from None
    return wanted
