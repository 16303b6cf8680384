"""Imports run one way: `cli → study → trainables`, `study → analysis → runstore`, `study → runstore`; nothing
imports `cli`. `runstore` (the results' storage and layout) and `analysis` need neither the engine nor the study,
nor torch, Ray or Optuna, so a notebook that only reads results never loads the training engine."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.analysis_fixtures import ROOT, write_fake_run

ANALYSIS_ONLY = """
import sys
import analysis, analysis.avalanche, analysis.load, analysis.pareto, analysis.plots, analysis.ranking
import analysis.report, analysis.tables, runstore, runstore.schema, runstore.storage
run = analysis.load.load_run(sys.argv[1])
assert len(run.trials) == 12 and not run.hops.empty
analysis.report.write_report(sys.argv[1])
heavy = sorted(m for m in ("torch", "ray", "study", "trainables", "optuna", "cli") if m in sys.modules)
print(",".join(heavy))
"""


def test_reading_a_run_and_writing_its_report_load_neither_torch_nor_ray(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "run")
    done = subprocess.run([sys.executable, "-c", ANALYSIS_ONLY, str(run)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


OURS = {"cli", "study", "trainables", "analysis", "runstore"}


def _imports(package: str) -> set[str]:
    """The top-level names every module of `package` imports, lazy imports inside functions included."""
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
    return found


def _layers_below(package: str) -> set[str]:
    return _imports(package) & OURS - {package}


def test_imports_run_one_way() -> None:
    assert _layers_below("runstore") == set()
    assert _layers_below("trainables") == set()
    assert _layers_below("analysis") == {"runstore"}
    assert _layers_below("study") == {"trainables", "analysis", "runstore"}
    assert _layers_below("cli") == {"study", "trainables", "analysis", "runstore"}


def test_the_results_store_needs_no_engine() -> None:
    assert not _imports("runstore") & {"torch", "torchvision", "ray", "optuna"}
    assert not _imports("analysis") & {"torch", "torchvision", "ray", "optuna"}
