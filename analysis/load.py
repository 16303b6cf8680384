"""Read a study run's Parquet results into pandas, tolerating a study that is still writing them.

The study replaces each file atomically (temp file + rename), so a read sees either the old or the new
file, never a torn one; a file that does not exist yet reads as an empty table with the schema's columns,
which lets notebooks and reports run against a study from its first minute.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from study import schema

# The seed paper compares ensembles by how they weight the teachers, so each weighting is its own group.
GROUP_ORDER: tuple[str, ...] = (
    "nokd", "kd", "takd", "dgkd", "ensemble-mean", "ensemble-learned", "ensemble-confidence",
)


_INT_COLUMNS: tuple[str, ...] = tuple(f.name for f in schema.TRIALS if pa.types.is_integer(f.type))


@dataclass(frozen=True)
class Run:
    """One study run's results; `predictions` and `confirm` are None when the study did not write them."""

    path: Path
    trials: pd.DataFrame
    hops: pd.DataFrame
    epochs: pd.DataFrame
    predictions: pd.DataFrame | None
    confirm: pd.DataFrame | None


def load_run(run: str | Path) -> Run:
    """Loads `<run>/results/*.parquet`; missing tables are empty (or None for the optional ones)."""
    path = Path(run)
    if not path.exists():
        raise FileNotFoundError(f"run: no such run folder {path}")
    results = path / "results"
    confirm = _read_optional(results / "confirm.parquet", schema.CONFIRM)
    return Run(
        path=path,
        trials=with_labels(_read(results / "trials.parquet", schema.TRIALS)),
        hops=_read(results / "hops.parquet", schema.HOPS),
        epochs=_read(results / "epochs.parquet", schema.EPOCHS),
        predictions=_read_optional(results / "predictions.parquet", schema.PREDICTIONS),
        confirm=None if confirm is None else with_labels(confirm),
    )


def successful(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials that finished; ERROR trials have no accuracy or cost to compare.

    Their null metrics made pandas read integer columns as floats; without them the integers come back.
    """
    ok = trials[trials["status"] == "TERMINATED"]
    restore = {column: "int64" for column in _INT_COLUMNS
               if column in ok.columns and ok[column].dtype.kind == "f" and ok[column].notna().all()}
    return ok.astype(restore) if restore else ok


def with_labels(trials: pd.DataFrame) -> pd.DataFrame:
    """Adds `config_label` and `group` when missing, so frames not built by `load_run` work everywhere."""
    out = trials.copy()
    if "config_label" not in out.columns:
        out["config_label"] = [config_label(row) for row in out.to_dict("records")] if len(out) else []
    if "group" not in out.columns:
        out["group"] = [method_group(row) for row in out.to_dict("records")] if len(out) else []
    return out


def method_group(row: dict[str, Any] | pd.Series) -> str:
    """The comparison group: the method, except ensembles are split by their teacher weighting."""
    method = str(row["method"])
    return f"ensemble-{row['weighting']}" if method == "ensemble" else method


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


def config_label(row: dict[str, Any] | pd.Series) -> str:
    """A short human label, e.g. `takd 10→8→6→2 T=4.0 α=0.50`; seeds are left out so repeats share it."""
    method = str(row["method"])
    parts = [method]
    if method == "ensemble":
        parts[0] = f"ensemble[{row['weighting']}/{row['space']}]"
    parts.append(_chain_label(row))
    if method == "dgkd":
        parts.append(f"drop={int(row['drop'])}")
    if method != "nokd":  # nokd trains the student alone: T and α do nothing
        parts.append(f"T={float(row['temperature']):.1f} α={float(row['alpha']):.2f}")
    width = row.get("width")
    if not is_missing(width) and float(width) != 1.0:
        parts.append(f"w={float(width):g}")
    return " ".join(parts)


def _chain_label(row: dict[str, Any] | pd.Series) -> str:
    """Depths joined by arrows; the family is named only when it is not the default plain CNN."""
    teacher_family, teacher_depth = _split_arch(str(row["teacher"]))
    student_family, student_depth = _split_arch(str(row["student"]))
    if str(row["method"]) == "nokd":
        return _arch_text(student_family, student_depth)
    tas = [int(d) for d in _as_list(row.get("ta_depths"))]
    if teacher_family == student_family:
        prefix = "" if teacher_family == "plain" else teacher_family
        return prefix + "→".join(str(d) for d in [teacher_depth, *tas, student_depth])
    tas_text = [f"{teacher_family}{d}" for d in tas]
    return "→".join([str(row["teacher"]), *tas_text, str(row["student"])])


def _split_arch(arch: str) -> tuple[str, str]:
    # A regex, not trainables.models.parse_arch: labels must not depend on which families are registered.
    match = re.fullmatch(r"(.*?)(\d+)", arch)
    return (match.group(1), match.group(2)) if match else (arch, "")


def _arch_text(family: str, depth: str) -> str:
    return depth if family == "plain" else f"{family}{depth}"


def _as_list(value: Any) -> list[Any]:
    return [] if is_missing(value) else list(value)


def _read(path: Path, table_schema: pa.Schema) -> pd.DataFrame:
    frame = _read_optional(path, table_schema)
    return table_schema.empty_table().to_pandas() if frame is None else frame


def _read_optional(path: Path, table_schema: pa.Schema) -> pd.DataFrame | None:
    try:
        frame = pq.read_table(path).to_pandas()
    except FileNotFoundError:  # not written yet (checked by reading, not by exists(), to avoid a race)
        return None
    # A study started on an older schema lacks newer columns; add them empty so readers need no guards.
    empty = table_schema.empty_table().to_pandas()
    for column in empty.columns:
        if column not in frame.columns:
            numeric = empty[column].dtype.kind in "iuf"  # missing ints read as NaN floats, like nulls do
            frame[column] = float("nan") if numeric else None
    return frame
