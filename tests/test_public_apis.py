"""The package uses Ray and Optuna through their public APIs only: a new release may change anything private.

The scan reads the source of every package (AST, no import) and flags, by file:line:
- an import of a private Ray or Optuna module: a dotted path under `ray` or `optuna` with a part that starts with
  one underscore (`ray._private.worker`, `from optuna._imports import …`);
- an attribute starting with one underscore (dunders are public) read from a name bound to Ray or Optuna (a module
  or anything imported from one: `ray._private`, `TrialState._x`);
- an attribute starting with one underscore on any other object that the package itself never defines (as a
  function, class, module name or assigned attribute) and that is not read from another imported module
  (`argparse._SubParsersAction`): such a member can only be Ray's or Optuna's, e.g. `study._storage`,
  `trial._trial_id`, or an attribute inherited from a Ray class.
Documented exceptions (no public way exists; see their docstrings) are listed by file and function in ALLOWED.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cli", "study", "trainables", "runstore", "analysis")
FOREIGN = ("ray", "optuna")
# (file, function): Ray's driver prints node-death notices through a private function only (study.cluster).
ALLOWED = {("study/cluster.py", "_quiet_node_deaths")}


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def foreign_module(dotted: str) -> bool:
    return dotted.split(".")[0] in FOREIGN


def sources() -> dict[str, ast.Module]:
    files = sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))
    return {str(p.relative_to(ROOT)): ast.parse(p.read_text(), filename=str(p)) for p in files}


def defined_names(trees: dict[str, ast.Module]) -> set[str]:
    """Every underscore name the package defines: its functions, classes, module names and assigned attributes."""
    names: set[str] = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
    return {name for name in names if private(name)}


def imported_names(tree: ast.Module, foreign: bool) -> set[str]:
    """Names a file binds to Ray or Optuna modules and what it imports from them (foreign), or to other modules."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names if foreign_module(a.name) == foreign}
        elif isinstance(node, ast.ImportFrom) and (foreign_module(node.module or "") == foreign):
            bound |= {a.asname or a.name for a in node.names}
    return bound


def root_name(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def allowed_lines(path: str, tree: ast.Module) -> set[int]:
    return {line for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and (path, node.name) in ALLOWED
            for line in range(node.lineno, (node.end_lineno or node.lineno) + 1)}


def violations(path: str, tree: ast.Module, ours: set[str]) -> list[str]:
    bound, others = imported_names(tree, foreign=True), imported_names(tree, foreign=False)
    allowed, found = allowed_lines(path, tree), []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in allowed:
            continue
        if isinstance(node, ast.Import):
            found += [f"{path}:{node.lineno}: imports {a.name}" for a in node.names
                      if foreign_module(a.name) and any(private(p) for p in a.name.split("."))]
        elif isinstance(node, ast.ImportFrom) and node.module and foreign_module(node.module):
            names = [f"{node.module}.{a.name}" for a in node.names]
            found += [f"{path}:{node.lineno}: imports {n}" for n in names if any(private(p) for p in n.split("."))]
        elif isinstance(node, ast.Attribute) and private(node.attr):
            root = root_name(node.value)
            if root in bound:
                found.append(f"{path}:{node.lineno}: {ast.unparse(node)} (a private member of {root})")
            elif node.attr not in ours and root not in others:
                found.append(f"{path}:{node.lineno}: {ast.unparse(node)} (a private member the package does not own)")
    return found


def test_the_package_uses_no_private_member_of_ray_or_optuna() -> None:
    trees = sources()
    ours = defined_names(trees)
    found = [v for path, tree in trees.items() for v in violations(path, tree, ours)]
    assert not found, "private Ray/Optuna members in use:\n" + "\n".join(found)


def test_the_scan_names_the_private_members_it_is_meant_to_catch() -> None:
    code = ("import ray._private.worker\nfrom optuna._imports import try_import\nimport optuna\n"
            "def f(study, trial):\n    optuna.samplers._tpe\n    study._storage.get(trial._trial_id)\n"
            "    trial.__class__\n    trial._mine\n    argparse._Action\n_mine = 1\nimport argparse\n")
    tree = ast.parse(code)
    found = violations("x.py", tree, defined_names({"x.py": tree}))
    assert [v.split(":", 2)[1] for v in found] == ["1", "2", "5", "6", "6"], found
    assert any("study._storage" in v for v in found) and any("trial._trial_id" in v for v in found)
