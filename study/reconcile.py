"""At the start of every session: make the Optuna journal agree with the results the trials wrote (the truth).

After a crash (driver `kill -9`, node loss, Ctrl-C) the journal may hold RUNNING trials. One whose results exist
is told their outcome; one without results is resumed (same Optuna trial, same trial id: its finished hops come
back from the model store), as is one halted at a rung of successive halving (`halted`); one that never got a
trial id was asked for but never started, and fails. A trial the results hold but the journal lost (an object store's copy trails the driver's) is added back. Tune's own
experiment snapshot plays no part: each session is a new Tune experiment fed by this reconciled state.

An ERROR is no outcome of a configuration (a raise, an OOM, a lost node): each session retries the configurations
whose row is an ERROR, as a new Optuna trial under the same trial id (its row is replaced by the new outcome),
until one has failed in `GIVE_UP_AFTER` sessions. The warm starts are enqueued again until each has a row.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from runstore import schema
from study import space
from study.results_folder import ResultsFolder
from study.search import DUPLICATE_ATTR, TRIAL_ID_ATTR, Known, Ledger, Resumable, tell
from study.spec import StudySpec
from trainables import ChainConfig

log = logging.getLogger("kdstudy")
STATES = {schema.FINISHED: TrialState.COMPLETE, schema.DIVERGED: TrialState.FAIL, schema.ERROR: TrialState.FAIL,
          schema.STOPPED: TrialState.PRUNED}
LOST_ERROR = "the trial failed, and its error was lost when the driver stopped"
# Sessions in which a configuration may fail before it is given up: a transient fault rarely strikes one
# configuration three sessions running; a configuration that cannot train always does.
GIVE_UP_AFTER = 3


@dataclass
class Failed:
    """A configuration whose last attempt raised: retried, or given up."""

    row: dict[str, Any]
    sessions: int  # in which it failed

    def line(self) -> str:
        return f"{self.row['trial_id']} ({self.row['config_label']}: {self.row['error']})"


@dataclass
class Plan:
    ledger: Ledger
    resume: list[Resumable]
    rows: list[dict[str, Any]]  # one per trial whose configuration has its outcome
    retry: list[Failed] = field(default_factory=list)
    given_up: list[Failed] = field(default_factory=list)
    halted: list[dict[str, Any]] = field(default_factory=list)  # the rows of resumed trials halted at a rung

    @property
    def ended(self) -> int:
        return len(self.rows)


def reconcile(spec: StudySpec, study: optuna.Study, results: ResultsFolder) -> Plan:
    rows = {row["trial_id"]: row for row in results.read("trials")}
    resume: list[Resumable] = []
    duplicates: list[FrozenTrial] = []
    in_journal: set[str] = set()
    failed_sessions: Counter[str] = Counter()
    halted_rows: list[dict[str, Any]] = []
    for trial in study.get_trials(deepcopy=False):
        trial_id = trial.user_attrs.get(TRIAL_ID_ATTR)
        in_journal.add(trial_id)
        if trial.state != TrialState.RUNNING:
            if trial_id and trial.state in (TrialState.FAIL, TrialState.PRUNED) and trial_id not in rows:
                rows[trial_id] = _write_lost_row(spec, results, trial_id, trial)
            failed_sessions[trial_id] += trial.state == TrialState.FAIL
            continue
        if trial_id is None:
            if trial.user_attrs.get(DUPLICATE_ATTR):
                duplicates.append(trial)
            else:  # asked for, never handed to a trial
                study.tell(trial.number, state=TrialState.FAIL)
        elif trial_id in rows and rows[trial_id]["status"] in schema.FINAL and not halted(rows[trial_id]):
            tell(study, trial.number, STATES[rows[trial_id]["status"]], objectives(rows[trial_id], spec))
        else:  # no row, the ERROR of an earlier attempt, or a rung's row: this attempt goes on
            row = rows.pop(trial_id, None)
            if row is not None and halted(row):
                halted_rows.append(row)
            resume.append(Resumable(trial_id, trial.number, dict(trial.params)))
    for trial_id, row in rows.items():
        if trial_id not in in_journal:
            _add_back(study, spec, row)
            failed_sessions[trial_id] += row["status"] == schema.ERROR
    final = [row for row in rows.values() if row["status"] in schema.FINAL]
    failed = [Failed(row, failed_sessions[row["trial_id"]]) for row in rows.values()
              if row["status"] == schema.ERROR]
    plan = Plan(_ledger(spec, final, resume), resume, final,
                retry=[f for f in failed if f.sessions < GIVE_UP_AFTER],
                given_up=[f for f in failed if f.sessions >= GIVE_UP_AFTER], halted=halted_rows)
    _add_failed(plan.ledger, plan)
    _settle_duplicates(study, plan.ledger, duplicates)
    _enqueue_pending(study, spec, plan)
    return plan


def halted(row: dict[str, Any]) -> bool:
    """A row a halving trial wrote at a rung below the top: STOPPED there if the scheduler stopped it, or the state
    of a chain that was going on (then its trial is still RUNNING in the journal: it resumes, and its promotion is
    decided again, against the rung's values of every session)."""
    rung = row.get("rung_epochs")
    return row["status"] == schema.STOPPED and rung is not None and rung < row["epochs"]


def row_config(row: dict[str, Any]) -> ChainConfig:
    return ChainConfig.from_flat({c: row[c] for c in schema.config_columns(list(row))})


def objectives(row: dict[str, Any], spec: StudySpec) -> list[float] | None:
    if row["status"] != schema.FINISHED:
        return None
    return [float(row[o]) for o in spec.objectives]


def _write_lost_row(spec: StudySpec, results: ResultsFolder, trial_id: str, trial: FrozenTrial) -> dict[str, Any]:
    """The driver told Optuna a trial's end, then died before writing its row: write it from the journal."""
    cfg = space.chain_config(spec.base_config(), trial.params)
    status = schema.STOPPED if trial.state == TrialState.PRUNED else schema.ERROR
    error = None if status == schema.STOPPED else LOST_ERROR
    results.write_trial(trial_id, cfg, status, error=error)
    return {"trial_id": trial_id, "status": status, "error": error, "config_label": cfg.label, **cfg.to_flat()}


def _add_back(study: optuna.Study, spec: StudySpec, row: dict[str, Any]) -> None:
    try:
        params, distributions = space.params_of(spec, row_config(row).to_flat())
        values = objectives(row, spec)
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=distributions, state=STATES[row["status"]],
            values=values if row["status"] == schema.FINISHED else None,
            user_attrs={TRIAL_ID_ATTR: row["trial_id"]}))
    except ValueError as error:  # a row the current space cannot express: keep it out of the sampler's history
        log.warning("journal: trial %s is not added back (%s)", row["trial_id"], error)


def _ledger(spec: StudySpec, rows: list[dict[str, Any]], resume: list[Resumable]) -> Ledger:
    ledger = Ledger(spec)
    for row in rows:
        known = Known(row["trial_id"], STATES[row["status"]], objectives(row, spec))
        ledger.add(ledger.key_of(row_config(row)), known)
    for trial in resume:
        ledger.add(ledger.key(trial.params), Known(trial.trial_id))
    return ledger


def _add_failed(ledger: Ledger, plan: Plan) -> None:
    """Retried configurations wait for their draw under their own trial id; given-up ones are never drawn."""
    for failed in plan.retry:
        ledger.add(ledger.key_of(row_config(failed.row)), Known(failed.row["trial_id"], retry=True))
    for failed in plan.given_up:
        ledger.add(ledger.key_of(row_config(failed.row)), Known(failed.row["trial_id"], TrialState.FAIL))


def _settle_duplicates(study: optuna.Study, ledger: Ledger, duplicates: list[FrozenTrial]) -> None:
    """Duplicate suggestions still waiting on a twin: told the twin's outcome, or wait again for its resumption."""
    by_trial = {known.trial_id: known for known in ledger.configs.values()}
    for trial in duplicates:
        known = by_trial.get(trial.user_attrs[DUPLICATE_ATTR])
        if known is None or known.retry:
            study.tell(trial.number, state=TrialState.FAIL)
        elif known.state == TrialState.RUNNING:
            known.waiting.append(trial.number)
        else:
            tell(study, trial.number, known.state, known.values)


def _enqueue_pending(study: optuna.Study, spec: StudySpec, plan: Plan) -> None:
    """The first draws of the session: the warm starts that have no row yet, then the configurations to retry
    (each once: a draw a crashed session left waiting is not enqueued twice)."""
    # A WAITING trial holds its params only in the system attr enqueue_trial writes (its `params` stay empty until
    # it is asked for): a public attribute, whose key Optuna 4–5 name this way.
    waiting = [t.system_attrs.get("fixed_params") for t in study.get_trials(deepcopy=False,
                                                                             states=(TrialState.WAITING,))]
    pending = [p for p in space.warm_start_points(spec) if plan.ledger.get(plan.ledger.key(p)) is None]
    for failed in plan.retry:
        pending.append(space.params_of(spec, row_config(failed.row).to_flat())[0])
    for params in pending:
        if params not in waiting:
            study.enqueue_trial(params)
            waiting.append(params)
