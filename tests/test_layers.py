"""Imports run one way: `study → trainables`, `study → analysis`; `analysis` needs neither, nor torch nor Ray, so a
notebook that only reads results never loads the training engine."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.analysis_fixtures import ROOT, write_fake_run

ANALYSIS_ONLY = """
import sys
import analysis, analysis.avalanche, analysis.load, analysis.pareto, analysis.plots, analysis.ranking
import analysis.report, analysis.schema, analysis.storage, analysis.tables
run = analysis.load.load_run(sys.argv[1])
assert len(run.trials) == 12 and not run.hops.empty
analysis.report.write_report(sys.argv[1])
heavy = sorted(m for m in ("torch", "ray", "study", "trainables", "optuna") if m in sys.modules)
print(",".join(heavy))
"""


def test_reading_a_run_and_writing_its_report_load_neither_torch_nor_ray(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "run")
    done = subprocess.run([sys.executable, "-c", ANALYSIS_ONLY, str(run)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def _imported_packages(package: str) -> set[str]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
    return found & {"study", "trainables", "analysis"}


def test_imports_run_one_way() -> None:
    assert _imported_packages("trainables") == {"trainables"}
    assert _imported_packages("analysis") == {"analysis"}
    assert _imported_packages("study") == {"study", "trainables", "analysis"}
