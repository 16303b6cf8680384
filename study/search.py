"""The study's searcher: Ray Tune's public `Searcher` interface over Optuna's ask-and-tell, drawing from the
define-by-run space (`space.suggest`), with the study's rules on top.

- Resume: trials the journal still has RUNNING after a crash (and the results do not hold) are handed out again
  first, as the same Optuna trial with the same trial id; their finished hops come back from the model store.
- Distinct configurations: a suggestion equal to a configuration already finished or running in this study is
  not trained again: Optuna is told the known outcome (at once, or when the running twin ends) and another
  suggestion is drawn, so it does not use up a trial. When the space has no new configuration left, the search
  says FINISHED.
- Retries: a configuration whose trial errored in an earlier session (`study.reconcile`) is started again, under
  its own trial id, when it is drawn (its draw is enqueued first); until then it does not count as known.
- Invalid draws: a chain no trial can train is told FAIL and another is drawn; the session goes on.
- Outcomes: a finished chain tells its objectives; a diverged or errored one FAIL (TPE learns the region is
  bad); one stopped early by a scheduler PRUNED. A trial that ends because the study was interrupted is told
  nothing (Tune does not call the searcher then): it stays RUNNING, and the next session resumes it.
- Tune results are not forwarded as intermediate values (Optuna's pruner does nothing here, and each would be a
  journal write).
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from study import space
from study.faults import NO_FAULTS, Faults
from study.spec import OBJECTIVES, StudySpec
from study.trainable import DIVERGED, FINISHED, OUTCOME, RUNG
from trainables import ChainConfig
from trainables.typed import InputError

log = logging.getLogger("kdstudy")
TRIAL_ID_ATTR, DUPLICATE_ATTR, INVALID_ATTR = "trial_id", "duplicate_of", "invalid"
# Consecutive known configurations TPE may propose before the search draws one at random instead; then how many
# random draws may fail to find a new one before the space counts as exhausted.
TPE_DUPLICATES, RANDOM_DRAWS = 10, 500


@dataclass
class Known:
    """A configuration already in the study: its trial, and its outcome once it has one."""

    trial_id: str
    state: TrialState = TrialState.RUNNING
    values: list[float] | None = None
    waiting: list[int] = field(default_factory=list)  # numbers of the duplicates to tell when it ends
    retry: bool = False  # it failed in an earlier session: its next draw trains it again, under its trial id


@dataclass
class Resumable:
    trial_id: str
    number: int
    params: dict[str, Any]


class Ledger:
    """Every configuration of the study by its flat chain config, built from the results (the truth) and kept up
    to date as trials start and end."""

    def __init__(self, spec: StudySpec) -> None:
        self.base = spec.base_config()
        self.configs: dict[str, Known] = {}
        self.size = space.size(spec)
        self.retries = 0  # configurations waiting to be retried

    def key(self, params: dict[str, Any]) -> str:
        """The key of a suggestion (Optuna params and derived values)."""
        return self.key_of(space.chain_config(self.base, params))

    @staticmethod
    def key_of(cfg: ChainConfig) -> str:
        """The key of a whole chain config: equal keys, equal chains."""
        return repr(sorted(cfg.to_flat().items()))

    def get(self, key: str) -> Known | None:
        return self.configs.get(key)

    def add(self, key: str, known: Known) -> None:
        if self.configs.setdefault(key, known) is known and known.retry:
            self.retries += 1

    def retried(self, known: Known) -> None:
        """A configuration to retry was drawn: from now on it runs like any other."""
        known.retry = False
        self.retries -= 1

    @property
    def exhausted(self) -> bool:
        return len(self.configs) >= self.size and not self.retries


class StudySearch(Searcher):
    """`storage` is the study's (Optuna's `Study` does not hand out its own): a resumed trial is reopened through
    it. A study with nothing to resume may leave it out."""

    def __init__(self, spec: StudySpec, study: optuna.Study, ledger: Ledger, resume: list[Resumable],
                 faults: Faults = NO_FAULTS, on_tell: Callable[[], None] = lambda: None,
                 storage: optuna.storages.BaseStorage | None = None) -> None:
        metric: str | list[str] = list(spec.objectives) if spec.multi_objective else spec.objectives[0]
        mode: str | list[str] = [OBJECTIVES[o] for o in spec.objectives] if spec.multi_objective \
            else OBJECTIVES[spec.objectives[0]]
        super().__init__(metric=metric, mode=mode)
        self.spec, self.ledger, self.resume, self.faults, self.on_tell = spec, ledger, list(resume), faults, on_tell
        self.study, self.storage = study, storage
        self.trials: dict[str, optuna.trial.Trial] = {}  # Tune trial id -> its Optuna trial, until it ends
        self.keys: dict[str, str] = {}  # Tune trial id -> configuration key
        self.exhausted_reason: str | None = None
        self.invalid: set[str] = set()  # reasons of invalid draws already logged
        self.random = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=spec.seed + len(study.trials)))

    # Tune snapshots a searcher with its experiment; this one's state lives in the journal and the results, and a
    # session is never restored from a snapshot (study.reconcile rebuilds it): nothing to save, and no O(trials)
    # pickle rewritten at every snapshot.
    def save(self, checkpoint_path: str) -> None:
        pass

    def restore(self, checkpoint_path: str) -> None:
        pass

    # --- handing out trials -------------------------------------------------------------------------------------

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.resume:
            return self._resume(trial_id, self.resume.pop(0))
        duplicates = 0
        while not self.ledger.exhausted:
            ot_trial = self._ask(duplicates)
            if ot_trial is None:
                break
            config = self._draw(ot_trial)
            key = self._valid_key(ot_trial, config)
            if key is None:
                duplicates += 1
                continue
            known = self.ledger.get(key)
            if known is None or known.retry:
                return self._start(trial_id, ot_trial, config, key, known)
            self._duplicate(ot_trial, known)
            duplicates += 1
        self.exhausted_reason = self.exhausted_reason or (
            f"the search space holds only {len(self.ledger.configs)} distinct configurations")
        return Searcher.FINISHED

    def _valid_key(self, ot_trial: optuna.trial.Trial, config: dict[str, Any]) -> str | None:
        """The suggestion's key; None for a chain no trial can train, which Optuna is told FAIL. The spec's check
        (`space.invalid_draw`) keeps the space free of such chains: this is the safety net that keeps a rule the
        check cannot see from ending the session."""
        try:
            return self.ledger.key(config)
        except InputError as error:
            if str(error) not in self.invalid:
                self.invalid.add(str(error))
                log.warning("search: an invalid chain was drawn and skipped (%s)", error)
            ot_trial.set_user_attr(INVALID_ATTR, str(error))
            tell(self.study, ot_trial, TrialState.FAIL, None)
            return None

    def _draw(self, ot_trial: optuna.trial.Trial) -> dict[str, Any]:
        """The chain an Optuna trial suggests: its parameters and the values derived from them."""
        derived = space.suggest(ot_trial, self.spec)
        return {**ot_trial.params, **derived}

    def _ask(self, duplicates: int) -> optuna.trial.Trial | None:
        """TPE's next suggestion; after TPE_DUPLICATES known ones in a row, a random new configuration instead
        (TPE keeps proposing a good configuration it already has, e.g. the parameter-free nokd)."""
        if duplicates >= TPE_DUPLICATES:
            fresh = self._random_new_config()
            if fresh is None:
                self.exhausted_reason = f"no new configuration in {RANDOM_DRAWS} random draws"
                return None
            self.study.enqueue_trial(fresh)
        return self.study.ask()

    def _random_new_config(self) -> dict[str, Any] | None:
        for _ in range(RANDOM_DRAWS):
            trial = self.random.ask()
            config = self._draw(trial)
            self.random.tell(trial, state=TrialState.FAIL)
            try:
                key = self.ledger.key(config)
            except InputError:
                continue
            if self.ledger.get(key) is None:
                return dict(trial.params)
        return None

    def _start(self, trial_id: str, ot_trial: optuna.trial.Trial, config: dict[str, Any], key: str,
               retried: Known | None) -> dict:
        study_trial_id = retried.trial_id if retried is not None else uuid.uuid4().hex[:8]
        ot_trial.set_user_attr(TRIAL_ID_ATTR, study_trial_id)
        self.faults.point("after-ask")
        if retried is not None:
            self.ledger.retried(retried)
        else:
            self.ledger.add(key, Known(study_trial_id))
        self.trials[trial_id], self.keys[trial_id] = ot_trial, key
        return {**config, "trial_id": study_trial_id}

    def _resume(self, trial_id: str, resumable: Resumable) -> dict[str, Any]:
        config = space.flat_from_params(resumable.params)
        self.trials[trial_id] = reopen(self.study, self.storage, resumable.number)
        self.keys[trial_id] = self.ledger.key(config)
        return {**config, "trial_id": resumable.trial_id}

    def _duplicate(self, ot_trial: optuna.trial.Trial, known: Known) -> None:
        ot_trial.set_user_attr(DUPLICATE_ATTR, known.trial_id)
        if known.state == TrialState.RUNNING:
            known.waiting.append(ot_trial.number)
        else:
            tell(self.study, ot_trial, known.state, known.values)

    # --- outcomes -------------------------------------------------------------------------------------------------

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        ot_trial, key = self.trials.pop(trial_id, None), self.keys.pop(trial_id, None)
        if ot_trial is None:
            return
        state, values = outcome(result, error, self.metric)
        if state == TrialState.PRUNED and result is not None and not isinstance(self.metric, list):
            # TPE ranks a pruned trial below every complete one, by the step of its last intermediate value, then by
            # the value: what the stopped student reached, at its last rung's epochs (halving) or its epoch (ASHA).
            step = result.get(RUNG, result.get("student_epoch", 0))
            ot_trial.report(float(result.get(self.metric, 0.0)), int(step))
        self.faults.point("before-tell")
        tell(self.study, ot_trial, state, values)
        known = self.ledger.get(key) if key else None
        if known is not None:
            known.state, known.values = state, values
            for waiting in known.waiting:
                tell(self.study, waiting, state, values)
            known.waiting = []
        self.faults.point("after-tell")
        self.on_tell()


def reopen(study: optuna.Study, storage: optuna.storages.BaseStorage | None, number: int) -> optuna.trial.Trial:
    """The live Optuna trial of a RUNNING trial of an earlier session (reporting to it needs one), found through
    the storage's public lookups."""
    if storage is None:
        raise ValueError("resuming a trial needs the study's storage")
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name),
                                                                number)
    return optuna.trial.Trial(study, trial_id)


def tell(study: optuna.Study, trial: optuna.trial.Trial | int, state: TrialState, values: list[float] | None) -> None:
    """Tells Optuna a trial's outcome (a trial object or its number): its objectives when COMPLETE, one number for
    a single-objective study; a trial that already has an outcome keeps it."""
    if state != TrialState.COMPLETE:
        values = None
    elif values is not None and len(study.directions) == 1:
        values = values[0]
    study.tell(trial, values, state=state, skip_if_finished=True)


def outcome(result: dict[str, Any] | None, error: bool, metric: str | list[str]) -> tuple[TrialState, list | None]:
    """How a trial's end reads to Optuna: its objectives, FAIL (errored, diverged) or PRUNED (stopped early)."""
    if error or result is None:
        return TrialState.FAIL, None
    if result.get(OUTCOME) == DIVERGED:
        return TrialState.FAIL, None
    if result.get(OUTCOME) != FINISHED:
        return TrialState.PRUNED, None
    metrics = metric if isinstance(metric, list) else [metric]
    values = [float(result[m]) for m in metrics]
    if not all(math.isfinite(v) for v in values):
        return TrialState.FAIL, None
    return TrialState.COMPLETE, values
