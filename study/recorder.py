"""The driver's side of a trial's end: the rows a trial cannot write (ERROR, STOPPED), and one console line.

O(1) per trial: nothing is kept once a trial has ended, and each row is a file of its own.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable

from ray.tune import Callback
from ray.tune.progress_reporter import TrialProgressCallback

from runstore import schema
from study.cluster import NodeWatch
from study.results_folder import ResultsFolder
from study.space import chain_config
from study.trainable import DETAIL, DIVERGED, OUTCOME, RUNG
from trainables import ChainConfig


class NodeDeaths(Callback):
    """One console line per node that died, instead of Ray's account of it (left out in `study.cluster.connect`).
    The cluster knows a node is dead only once its health checks fail, seconds after the node's trials failed, so
    every trial event looks (one request to the GCS), and the session's end looks a last time."""

    def setup(self, **info: Any) -> None:
        self.nodes = NodeWatch()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._report_deaths()

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._report_deaths()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._report_deaths()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._report_deaths()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._report_deaths()

    def _report_deaths(self) -> None:
        for address in self.nodes.deaths():
            print(f"node {address} died: its trials will be retried", file=sys.stdout, flush=True)


class TrialRecorder(NodeDeaths):
    def __init__(self, base: dict[str, Any], results: ResultsFolder, target: int, ended: int,
                 is_interrupted: Callable[[], bool]) -> None:
        self.base, self.results, self.target, self.ended = base, results, target, ended
        self.is_interrupted = is_interrupted
        self.first_error: dict[str, str] = {}  # message -> trial id that first showed it
        self.errors: list[str] = []
        self.started: dict[str, float] = {}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        super().on_trial_start(iteration, trials, trial, **info)
        self.started.setdefault(trial.trial_id, time.monotonic())

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        super().on_trial_complete(iteration, trials, trial, **info)
        result = trial.last_result or {}
        cfg = self._config(trial)
        if result.get(OUTCOME) is None:
            if self.is_interrupted():
                return  # stopped by the interruption, not by the scheduler: the next session resumes it
            self._line(trial, cfg, schema.STOPPED, write_stopped(self.results, trial.config["trial_id"], cfg, result))
        elif result[OUTCOME] == DIVERGED:
            self._line(trial, cfg, schema.DIVERGED, result.get(DETAIL, ""))
        else:
            self._line(trial, cfg, schema.FINISHED, f"val {result['student_val_acc']:.4f}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        super().on_trial_error(iteration, trials, trial, **info)
        cfg = self._config(trial)
        message = write_error(self.results, trial.config["trial_id"], cfg, trial)
        self.errors.append(message)
        first = self.first_error.setdefault(message, trial.config["trial_id"])
        shown = message if first == trial.config["trial_id"] else f"same error as trial {first}"
        self._line(trial, cfg, schema.ERROR, shown)

    def _config(self, trial: Any) -> ChainConfig:
        return chain_config(self.base, trial.config)

    def _line(self, trial: Any, cfg: ChainConfig, status: str, detail: str) -> None:
        self.ended += status in schema.FINAL  # an ERROR is retried: it does not count towards the trials
        seconds = time.monotonic() - self.started.pop(trial.trial_id, time.monotonic())
        width = len(str(self.target))
        text = f"[{self.ended:>{width}}/{self.target}] {trial.config['trial_id']} {status:<10} {cfg.label}"
        print(f"{text}  {detail}  ({seconds:.0f} s)".rstrip(), file=sys.stdout, flush=True)


def write_stopped(results: ResultsFolder, trial_id: str, cfg: ChainConfig, result: dict[str, Any]) -> str:
    """Writes the row of a trial a scheduler stopped, unless the trial wrote it (a halving trial writes its rung's
    rows before it reports); returns where it stopped, in words."""
    val = f"val {result.get('student_val_acc', 0):.4f}"
    if RUNG in result:
        epochs = int(result[RUNG])
        return f"{val} at {epochs} epoch{'' if epochs == 1 else 's'} per hop below the teacher"
    summary = {"student_val_acc": result.get("student_val_acc"), "train_flops": result.get("train_flops")}
    results.write_trial(trial_id, cfg, schema.STOPPED, summary=summary)
    return f"{val} at student epoch {result.get('student_epoch', 0)}"


def write_error(results: ResultsFolder, trial_id: str, cfg: ChainConfig, trial: Any) -> str:
    """Writes the row of a trial that raised or whose node died; returns its error, in one line."""
    message = error_message(trial)
    results.write_trial(trial_id, cfg, schema.ERROR, error=message)
    return message


class NoTuneProgress(TrialProgressCallback):
    """Tune adds a progress printer unless one is given: this one prints nothing (the study prints its lines)."""

    def on_trial_result(self, *args: Any, **info: Any) -> None:
        pass

    def on_trial_error(self, *args: Any, **info: Any) -> None:
        pass

    def on_trial_complete(self, *args: Any, **info: Any) -> None:
        pass


def error_message(trial: Any) -> str:
    """The root cause's last line ("ValueError: …"), not Ray's whole remote traceback."""
    text = _error_text(trial).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "unknown error"


def _error_text(trial: Any) -> str:
    # When the callback runs, the error file is in the driver's staging folder; storage gets it later.
    local = trial.error_file
    if local and os.path.exists(local):
        with open(local) as handle:
            return handle.read()
    return str(trial.get_error() or "")
