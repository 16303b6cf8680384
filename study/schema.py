"""The Parquet schemas of a study's results: the contract between `study/` (writer) and `analysis/` (reader)."""

from __future__ import annotations

import dataclasses
import typing

import pyarrow as pa

from trainables.config import ChainConfig
from trainables.results import HopResult

_SCALARS: dict[typing.Any, pa.DataType] = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}


def _arrow_type(hint: typing.Any) -> pa.DataType:
    """Python annotation → Arrow type: scalars, optionals, and tuple[int, ...] / list[X] as Arrow lists."""
    options = [o for o in typing.get_args(hint) if o is not type(None)] if _is_optional(hint) else [hint]
    hint = options[0]
    if typing.get_origin(hint) in (tuple, list):
        return pa.list_(_SCALARS[typing.get_args(hint)[0]])
    return _SCALARS[hint]


def _is_optional(hint: typing.Any) -> bool:
    return type(None) in typing.get_args(hint)


def dataclass_fields(cls: type, exclude: tuple[str, ...] = ()) -> list[pa.Field]:
    """One typed column per dataclass field, in declaration order: the record *is* the row."""
    hints = typing.get_type_hints(cls)
    return [pa.field(f.name, _arrow_type(hints[f.name])) for f in dataclasses.fields(cls) if f.name not in exclude]


def config_fields() -> list[pa.Field]:
    return dataclass_fields(ChainConfig)


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
    *dataclass_fields(HopResult, exclude=("predictions",)),  # role: teacher | ta | student; index 0 = teacher
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
