"""Every analysis notebook executes top to bottom against the real tiny study, in a kernel that imports the project.

A real run rather than the fake one: notebooks are where a column renamed in `study/` or a table the study
leaves empty (tiny runs have no results/confirm/) surfaces first.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager

from tests.analysis_fixtures import NOTEBOOK_KERNEL, ROOT, code_outputs, execute_notebook

NOTEBOOKS = ROOT / "analysis" / "notebooks"
NAMES = ["pareto.ipynb", "methods.ipynb", "avalanche.ipynb"]
RUN_LINE = 'RUN = os.environ.get("KDSTUDY_RUN", "runs/default")'


def test_kernel_runs_this_python() -> None:
    # jupyter_client swaps a kernelspec's bare "python" for sys.executable, so the kernel is the venv's python;
    # a spec naming another interpreter would run the notebooks without the project's dependencies.
    spec = KernelSpecManager().get_kernel_spec(NOTEBOOK_KERNEL)
    assert spec.argv[0] in ("python", "python3", sys.executable), spec.argv


def test_every_notebook_is_tested() -> None:
    assert sorted(path.name for path in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)


@pytest.mark.ray
@pytest.mark.parametrize("name", NAMES)
def test_notebook_executes_on_the_tiny_study(name: str, tiny_study: Path, tmp_path: Path) -> None:
    stored = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not cell.get("outputs") for cell in stored.cells if cell.cell_type == "code"), "stored with outputs"
    assert stored.cells[0].source.splitlines()[-1] == RUN_LINE
    run_files = _files(tiny_study)
    # Started in an empty folder: a notebook that wrote into its working folder would leave files there.
    notebook = execute_notebook(NOTEBOOKS / name, tiny_study, cwd=tmp_path)
    outputs = code_outputs(notebook)
    assert not [out for out in outputs if out.output_type == "error"]
    assert any("image/png" in out.get("data", {}) for out in outputs), "no figure displayed"
    assert not list(tmp_path.iterdir()), "the notebook wrote into its working folder"
    assert _files(tiny_study) == run_files, "the notebook wrote into the run folder (figures go to a temp folder)"


def _files(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))
