"""A study's results folder, as its writers see it: each trial writes its own files (`runstore.schema` has the
layout), atomically, on the run's storage; the driver writes only the rows a trial cannot (ERROR, STOPPED).

A trial's `trials/<id>.parquet` is written last, after its hops and predictions: its presence means the trial's
rows are complete, which is what the driver trusts after a crash.

It lives in `study`, not in `runstore`: it turns the engine's typed results (`ChainConfig`, `ChainResult`) into
rows, and `runstore` imports nothing of the engine.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from runstore import schema
from runstore.storage import Location, read_parquet_folder, write_parquet
from study import rows
from trainables import ChainConfig, ChainResult, HopDiverged
from trainables.results import cost_summary


def confirmation_id(source_trial_id: str, seed: int) -> str:
    """A confirmation trial's id: its rows' and the hop trainings' it records (`trained`)."""
    return f"{source_trial_id}-s{seed}"


class ResultsFolder:
    def __init__(self, location: Location) -> None:
        self.location = location

    def table(self, name: str) -> Location:
        return self.location / name

    # --- written by a trial -------------------------------------------------------------------------------------

    def write_finished(self, trial_id: str, cfg: ChainConfig, result: ChainResult,
                       rung: dict[str, Any] | None = None, stopped: bool = False) -> None:
        """The rows of a chain trained to its end: the configuration `cfg`'s, at its full fidelity or (`stopped`,
        under successive halving) at the rung whose columns `rung` holds (`runstore.schema`)."""
        self._write("hops", trial_id, rows.hop_rows(trial_id, result.hops), schema.HOPS)
        self._write("predictions", trial_id, rows.prediction_rows(trial_id, result), schema.PREDICTIONS)
        status = schema.STOPPED if stopped else schema.FINISHED
        self.write_trial(trial_id, cfg, status, summary={**result.summary(), **(rung or {})})

    def write_diverged(self, trial_id: str, cfg: ChainConfig, diverged: HopDiverged,
                       rung: dict[str, Any] | None = None) -> None:
        self._write("hops", trial_id, rows.hop_rows(trial_id, diverged.completed), schema.HOPS)
        self.write_trial(trial_id, cfg, schema.DIVERGED, error=f"diverged: {diverged}",
                         summary={**cost_summary(diverged.completed), **(rung or {})})

    def write_epochs(self, trial_id: str, key: str, events: list[dict[str, Any]]) -> None:
        """One hop's epochs, written by the trial that trained it; a retrained hop replaces them."""
        if events:
            self._write("epochs", key, rows.epoch_rows(trial_id, events), rows.epochs_schema())

    def write_trained(self, trial_id: str, key: str, train_flops: int, train_seconds: float, diverged: bool) -> None:
        """One hop training, as the hop is stored: what the study spent on it, whoever later reuses it."""
        row = rows.trained_row(trial_id, key, train_flops, train_seconds, diverged)
        self._write("trained", f"{key}-{trial_id}", [row], schema.TRAINED)

    # --- written by the driver, or by a trial ---------------------------------------------------------------------

    def write_trial(self, trial_id: str, cfg: ChainConfig, status: str, error: str | None = None,
                    summary: dict[str, Any] | None = None) -> None:
        row = rows.trial_row(trial_id, cfg, status, error, summary)
        self._write("trials", trial_id, [row], rows.trials_schema())

    def write_confirmation(self, source_trial_id: str, cfg: ChainConfig, status: str, error: str | None = None,
                           summary: dict[str, Any] | None = None) -> None:
        row = {"source_trial_id": source_trial_id,
               **rows.trial_row(confirmation_id(source_trial_id, cfg.seed), cfg, status, error, summary)}
        self._write("confirm", row["trial_id"], [row], rows.trials_schema(confirm=True))

    # --- read by the driver -------------------------------------------------------------------------------------

    def read(self, name: str) -> list[dict[str, Any]]:
        """Every row of a table (one file per trial): what the driver reconciles with after a crash."""
        table = read_parquet_folder(self.table(name))
        return [] if table is None else table.to_pylist()

    def _write(self, name: str, file: str, table_rows: list[dict[str, Any]], table_schema: pa.Schema) -> None:
        table = pa.Table.from_pylist(table_rows, schema=table_schema)
        write_parquet(self.table(name) / f"{file}.parquet", table)
