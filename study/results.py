"""Reading and writing a study's Parquet tables, on local disk or any pyarrow.fs URI, and the ranking rule the
study commands share (the analysis package applies the same rule to DataFrames)."""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


def read_rows(uri: str) -> list[dict[str, Any]] | None:
    """A Parquet file's rows, or None when it does not exist (yet)."""
    fs, path = pafs.FileSystem.from_uri(uri)
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    return pq.read_table(path, filesystem=fs).to_pylist()


def write_table_atomic(table: pa.Table, uri: str, row_group_size: int | None = None) -> None:
    """Local: write beside, then rename — readers see the old file or the new one, never half of one.
    Object stores (s3://, gs://) make a finished upload visible at once, so they are written directly."""
    fs, path = pafs.FileSystem.from_uri(uri)
    fs.create_dir(os.path.dirname(path), recursive=True)
    if isinstance(fs, pafs.LocalFileSystem):
        tmp = f"{path}.tmp-{os.getpid()}"
        pq.write_table(table, tmp, filesystem=fs, row_group_size=row_group_size)
        fs.move(tmp, path)
    else:
        pq.write_table(table, path, filesystem=fs, row_group_size=row_group_size)


def ranked_trials(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Finished trials, best student validation accuracy first (never test: that would leak the test set);
    ties go to the cheaper chain."""
    finished = [t for t in trials if t["status"] == "TERMINATED" and t["student_val_acc"] is not None]
    return sorted(finished, key=lambda t: (-t["student_val_acc"], t["train_flops"] or 0))
