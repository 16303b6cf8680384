"""Writes a study's results as Parquet while it runs: a Tune callback that rewrites the tables atomically each time
a trial ends, so a notebook can read consistent files at any moment."""

from __future__ import annotations

import json
import os
from typing import Any

import pyarrow as pa
from ray.tune import Callback

from study.results import read_rows, write_table_atomic
from study.schema import EPOCHS, HOPS, TABLES, TRIALS, config_fields
from study.space import flat_from_params

CONFIG_COLUMNS = [f.name for f in config_fields()]
# Rows of predictions.parquet per row group: about one trial's hops (each row holds a whole test split), so a
# reader filtering on trial_id skips the rest of the file by row-group statistics.
PREDICTION_ROW_GROUP = 8
SUMMARY_COLUMNS = TRIALS.names[TRIALS.names.index("num_tas") + 1:]


class ResultsWriter(Callback):
    """Keeps every table's rows keyed by trial, so a retried or resumed trial replaces its rows, never doubles them."""

    trials_table = "trials"
    detail_tables: tuple[str, ...] = ("hops", "epochs", "predictions")

    def __init__(self, results_uri: str, base: dict[str, Any]) -> None:
        self.results_uri = results_uri
        self.base = base
        self.rows: dict[str, dict[str, list[dict[str, Any]]]] = {
            name: {} for name in (self.trials_table, *self.detail_tables)}
        # Tables changed since the last write: a finished trial rewrites its tables, an errored one only the
        # trials (and epochs) table, never the large predictions file again.
        self.dirty: set[str] = set()

    # Tune calls setup on a fresh start and on a restore: both pick up what earlier sessions wrote.
    def setup(self, **info: Any) -> None:
        self.rows = {name: self._read_existing(name) for name in self.rows}

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict[str, Any], **info: Any) -> None:
        if "epoch_record" in result and "epochs" in self.rows:
            record = json.loads(result["epoch_record"])
            epochs = self.rows["epochs"].setdefault(trial.trial_id, [])
            # a retried trial re-trains its unfinished hop: keep only the latest run of each (hop, epoch)
            epochs[:] = [r for r in epochs if (r["hop"], r["epoch"]) != (record["hop"], record["epoch"])]
            epochs.append({"trial_id": trial.trial_id, **{k: record.get(k) for k in EPOCHS.names[1:]}})
            self.dirty.add("epochs")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        if "chain_record" in result:
            self._record_chain(trial, json.loads(result["chain_record"]))
        else:  # stopped early by a scheduler: what the student reached so far
            summary = {k: result.get(k) for k in ("student_val_acc", "train_flops")}
            self._record_trial(trial, self._config_of(trial), "STOPPED", None, summary)
        self.flush()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._record_trial(trial, self._config_of(trial), "ERROR", error_message(trial), {})
        self.flush()

    def _config_of(self, trial: Any) -> dict[str, Any]:
        return {**self.base, **flat_from_params(trial.config)}

    def _record_chain(self, trial: Any, record: dict[str, Any]) -> None:
        self._record_trial(trial, record["config"], "TERMINATED", None, record)
        if not self.detail_tables:
            return
        trial_id = trial.trial_id
        self.dirty.update(self.detail_tables)
        self.rows["hops"][trial_id] = [{"trial_id": trial_id, **{k: h.get(k) for k in HOPS.names[1:]}}
                                       for h in record["hops"]]
        target = record["target"]
        self.rows["predictions"][trial_id] = [{"trial_id": trial_id, **p, "target": target}
                                              for p in record["predictions"]]

    def _record_trial(self, trial: Any, config: dict[str, Any], status: str, error: str | None,
                      summary: dict[str, Any]) -> None:
        row = {"trial_id": trial.trial_id, "status": status, "error": error}
        row.update({name: config.get(name) for name in CONFIG_COLUMNS})
        row["num_tas"] = len(config.get("ta_depths") or [])
        row.update({name: summary.get(name) for name in SUMMARY_COLUMNS})
        self.rows[self.trials_table][self._row_key(trial, row)] = [self._decorate(trial, row)]
        self.dirty.add(self.trials_table)

    def _row_key(self, trial: Any, row: dict[str, Any]) -> str:
        return trial.trial_id

    def _decorate(self, trial: Any, row: dict[str, Any]) -> dict[str, Any]:
        return row

    def flush(self) -> None:
        for name in sorted(self.dirty):
            rows = [row for trial_rows in self.rows[name].values() for row in trial_rows]
            table = pa.Table.from_pylist(rows, schema=TABLES[name])
            group = PREDICTION_ROW_GROUP if name == "predictions" else None
            write_table_atomic(table, f"{self.results_uri}/{name}.parquet", row_group_size=group)
        self.dirty.clear()

    def _read_existing(self, name: str) -> dict[str, list[dict[str, Any]]]:
        by_trial: dict[str, list[dict[str, Any]]] = {}
        for row in read_rows(f"{self.results_uri}/{name}.parquet") or []:
            by_trial.setdefault(self._stored_key(name, row), []).append(row)
        return by_trial

    def _stored_key(self, table: str, row: dict[str, Any]) -> str:
        return row["trial_id"]


class ConfirmWriter(ResultsWriter):
    """Seed confirmation: one `confirm.parquet` row per (confirmed trial, seed). Keyed by that pair, so running
    confirmation again with more seeds adds rows instead of repeating them."""

    trials_table = "confirm"
    detail_tables = ()

    def _config_of(self, trial: Any) -> dict[str, Any]:
        return dict(trial.config["job"]["chain"])

    def _row_key(self, trial: Any, row: dict[str, Any]) -> str:
        return f"{trial.config['job']['source_trial_id']}:{row['seed']}"

    def _decorate(self, trial: Any, row: dict[str, Any]) -> dict[str, Any]:
        return {"source_trial_id": trial.config["job"]["source_trial_id"], **row}

    def _stored_key(self, table: str, row: dict[str, Any]) -> str:
        return f"{row['source_trial_id']}:{row['seed']}"


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
