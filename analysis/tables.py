"""Markdown tables and the cell formatters of the report; every section formats its numbers through these.

A module of its own (not part of `analysis.report`) so section builders that `report` imports, such as the
error avalanche, can use them without an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

import pandas as pd

from analysis.load import is_missing

Formatter = Callable[[Any], str]
Column = tuple[str, Formatter]  # (header, formatter)

MISSING = "–"  # a null cell: a dash reads as "no value", where "nan" or "None" reads as a bug


def markdown_table(frame: pd.DataFrame, columns: Mapping[str, Column], right: Collection[str] = ()) -> str:
    """A GitHub markdown table of `columns` ({column: (header, formatter)}); columns in `right` are right-aligned.

    Pipes in headers and cells are escaped, so text such as "P(s wrong | t wrong)" stays in its cell.
    """
    headers = [_cell(header) for header, _ in columns.values()]
    rules = ["---:" if column in right else "---" for column in columns]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(rules) + "|"]
    for row in frame.to_dict("records"):
        cells = [_cell(formatter(row[column])) for column, (_, formatter) in columns.items()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fmt_pct(value: Any, digits: int = 2) -> str:
    """A fraction as a percentage: 0.1234 → "12.34 %"."""
    return MISSING if is_missing(value) else f"{100 * float(value):.{digits}f} %"


def fmt_sci(value: Any) -> str:
    return MISSING if is_missing(value) else f"{float(value):.3g}"


def fmt_int(value: Any) -> str:
    return MISSING if is_missing(value) else f"{int(value):,}"


def fmt_float(value: Any, digits: int = 2) -> str:
    return MISSING if is_missing(value) else f"{float(value):.{digits}f}"


def fmt_code(value: Any) -> str:
    """Identifiers (trial ids) in code spans, so markdown never reads them as emphasis or links."""
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
