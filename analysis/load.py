"""Read a study run's Parquet results into pandas, from any storage the study accepts, while it still runs.

Each table is a folder of Parquet files (`runstore.schema`), each written atomically, so a read sees whole files;
a table with no file yet reads as an empty table with the schema's columns, which lets notebooks and reports run
against a study from its first minute. Files written by different versions may have different columns (a KD
method added later brings its settings): a read takes the union, with nulls where a file has no such column.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from runstore import schema
from runstore.storage import Location, exists, locate, read_parquet_folder

# Report order of the method groups of the built-in methods (the seed paper's comparison); any other group a
# method reports sorts after them, alphabetically.
GROUP_ORDER: tuple[str, ...] = (
    "nokd", "kd", "takd", "dgkd", "ensemble-mean", "ensemble-learned", "ensemble-confidence",
)

# Integer columns stay integers with nulls (pandas would turn a column with a null into floats: a train_size of
# 1000.0 is no longer a valid config value).
_NULLABLE_INTS = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int32Dtype(), pa.int16(): pd.Int16Dtype()}


@dataclass(frozen=True)
class Run:
    """One study run's results; `predictions` and `confirm` are None when the study did not write them."""

    location: Location
    trials: pd.DataFrame
    hops: pd.DataFrame
    epochs: pd.DataFrame
    predictions: pd.DataFrame | None
    confirm: pd.DataFrame | None

    @property
    def uri(self) -> str:
        return self.location.uri


def load_run(run: str | Path) -> Run:
    """Loads `<run>/results/*/`; missing tables are empty (or None for the optional ones). `run` is a local path
    or a storage URI (`s3://bucket/studies/name?endpoint_override=…`)."""
    location = locate(str(run))
    if not exists(location):
        raise FileNotFoundError(f"run: no such run folder {location}")
    results = location / "results"
    return Run(
        location=location,
        trials=read_table(results, "trials"),
        hops=read_table(results, "hops"),
        epochs=read_table(results, "epochs"),
        predictions=read_table(results, "predictions", optional=True),
        confirm=read_table(results, "confirm", optional=True),
    )


def read_table(results: Location, name: str, optional: bool = False) -> pd.DataFrame | None:
    table = read_parquet_folder(results / name)
    if table is None:
        return None if optional else empty_table(name)
    frame = table.to_pandas(types_mapper=_NULLABLE_INTS.get)
    for field in schema.EMPTY[name]:  # the columns a reader can count on, even if no file has them yet
        if field.name not in frame.columns:
            frame[field.name] = pd.array([None] * len(frame), dtype=_pandas_dtype(field.type))
    return frame


def empty_table(name: str) -> pd.DataFrame:
    """A table with no rows yet, with the columns a reader can count on."""
    return schema.EMPTY[name].empty_table().to_pandas()


def _pandas_dtype(arrow_type: pa.DataType) -> object:
    if pa.types.is_floating(arrow_type):
        return arrow_type.to_pandas_dtype()
    return _NULLABLE_INTS.get(arrow_type, object)


def successful(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials that finished their chain; other trials have no accuracy or cost to compare."""
    return trials[trials["status"] == schema.FINISHED]


def group_sort_key(group: str) -> tuple[int, str]:
    """Known groups in GROUP_ORDER, then any other group alphabetically (a method added later still sorts)."""
    return (GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER), group)


def ordered_groups(groups: Iterable[str]) -> list[str]:
    """The distinct groups in report order."""
    return sorted(set(groups), key=group_sort_key)


def sort_by_group(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame`'s rows in report order of their `group` column; stable, so an earlier ranking is kept within a group."""
    order = sorted(range(len(frame)), key=lambda i: group_sort_key(frame["group"].iat[i]))
    return frame.iloc[order].reset_index(drop=True)


def is_missing(value: Any) -> bool:
    """None, pd.NA or NaN: the forms a Parquet null takes once in pandas."""
    if value is None or value is pd.NA:
        return True
    return isinstance(value, (float, np.floating)) and math.isnan(value)
