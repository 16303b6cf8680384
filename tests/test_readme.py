"""The README's one-line reads of each table (pandas, DuckDB, polars, analysis) run against a real study."""

from __future__ import annotations

import re
from pathlib import Path

from tests.analysis_fixtures import ROOT


def _read_lines() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"A table is one read:\n\n```python\n(.*?)```", readme, flags=re.S)
    assert block, "the README's block of one-line reads is gone"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_readmes_one_line_reads_work(tiny_study: Path) -> None:
    lines = _read_lines()
    assert len(lines) == 4
    names: dict = {}
    for line in lines:
        exec(line.replace("RUN", str(tiny_study)), names)  # noqa: S102  (the README's own lines)
    assert len(names["trials"]) == 5 and set(names["trials"]["status"]) == {"TERMINATED"}
    assert len(names["hops"]) == len(names["run"].hops) > 5
    assert names["epochs"].height == len(names["run"].epochs) and "loss_kd" in names["epochs"].columns
