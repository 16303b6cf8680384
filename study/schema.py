"""The Parquet schemas of a study's results: the contract between `study/` (writer) and `analysis/` (reader)."""

from __future__ import annotations

import dataclasses
import typing

import pyarrow as pa

from trainables.config import ChainConfig

_SCALARS: dict[typing.Any, pa.DataType] = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}


def _config_type(hint: typing.Any) -> pa.DataType:
    if typing.get_origin(hint) is tuple:
        return pa.list_(pa.int64())
    options = [o for o in typing.get_args(hint) if o is not type(None)] or [hint]
    return _SCALARS[options[0]]


def config_fields() -> list[pa.Field]:
    """One typed column per ChainConfig field, in declaration order: the config *is* the row."""
    hints = typing.get_type_hints(ChainConfig)
    return [pa.field(f.name, _config_type(hints[f.name])) for f in dataclasses.fields(ChainConfig)]


TRIAL_FIELDS = [
    pa.field("trial_id", pa.string(), nullable=False),
    pa.field("status", pa.string(), nullable=False),  # TERMINATED | STOPPED (early, by ASHA) | ERROR
    pa.field("error", pa.string()),
    *config_fields(),
    pa.field("num_tas", pa.int64()),
    pa.field("student_val_acc", pa.float64()),
    pa.field("student_test_acc", pa.float64()),
    pa.field("train_flops", pa.int64()),
    pa.field("spent_flops", pa.int64()),
    pa.field("spent_seconds", pa.float64()),
    pa.field("student_params", pa.int64()),
    pa.field("student_flops", pa.int64()),
    pa.field("ensemble_weights", pa.list_(pa.float64())),
]
TRIALS = pa.schema(TRIAL_FIELDS)

HOPS = pa.schema([
    pa.field("trial_id", pa.string(), nullable=False),
    pa.field("index", pa.int64()),
    pa.field("arch", pa.string()),
    pa.field("role", pa.string()),  # teacher | ta | student
    pa.field("key", pa.string()),
    pa.field("teachers", pa.list_(pa.int64())),
    pa.field("best_epoch", pa.int64()),
    pa.field("val_acc", pa.float64()),
    pa.field("test_acc", pa.float64()),
    pa.field("params", pa.int64()),
    pa.field("flops", pa.int64()),
    pa.field("train_flops", pa.int64()),
    pa.field("train_seconds", pa.float64()),
    pa.field("spent_flops", pa.int64()),
    pa.field("spent_seconds", pa.float64()),
    pa.field("upper_forward_samples", pa.int64()),
    pa.field("kl_terms", pa.int64()),
    pa.field("reused", pa.bool_()),
    pa.field("ensemble_weights", pa.list_(pa.float64())),
])

EPOCHS = pa.schema([
    pa.field("trial_id", pa.string(), nullable=False),
    pa.field("hop", pa.int64()),
    pa.field("role", pa.string()),
    pa.field("arch", pa.string()),
    pa.field("epoch", pa.int64()),
    pa.field("global_epoch", pa.int64()),
    pa.field("lr", pa.float64()),
    pa.field("train_loss", pa.float64()),
    pa.field("loss_ce", pa.float64()),
    pa.field("loss_kd", pa.float64()),
    pa.field("val_acc", pa.float64()),
    pa.field("val_loss", pa.float64()),
    pa.field("seconds", pa.float64()),
])

# One row per trial × hop with list columns: 100 trials × 5 hops × 10,000 CIFAR test images stay 500 rows,
# and a whole hop's predictions are one contiguous read.
PREDICTIONS = pa.schema([
    pa.field("trial_id", pa.string(), nullable=False),
    pa.field("hop", pa.int64()),
    pa.field("arch", pa.string()),
    pa.field("role", pa.string()),
    pa.field("predicted", pa.list_(pa.int16())),  # predicted class per test sample
    pa.field("true_prob", pa.list_(pa.float16())),  # probability given to the true class
    pa.field("target", pa.list_(pa.int16())),  # the true class (same for every hop; kept so a row stands alone)
])

TABLES: dict[str, pa.Schema] = {"trials": TRIALS, "hops": HOPS, "epochs": EPOCHS, "predictions": PREDICTIONS}

# Seed confirmation: a trial row per (configuration, new seed), pointing back at the trial it confirms.
CONFIRM = pa.schema([pa.field("source_trial_id", pa.string(), nullable=False), *TRIAL_FIELDS])
TABLES["confirm"] = CONFIRM
