"""docs/architecture.md names modules; a module renamed or removed fails here instead of rotting the page."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "architecture.md"


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _defines(module: str, name: str) -> bool:
    """`module` defines `name` at its top level (a function, a class or an assignment)."""
    tree = ast.parse(ROOT.joinpath(*module.split(".")).with_suffix(".py").read_text())
    targets = [t for node in tree.body for t in getattr(node, "targets", [getattr(node, "target", None)])]
    return name in {getattr(node, "name", None) for node in tree.body} | {getattr(t, "id", None) for t in targets}


def test_every_module_the_architecture_page_names_exists() -> None:
    text = PAGE.read_text()
    paths = set(re.findall(r"`((?:cli|runstore|study|trainables|analysis|tests|docs)/[\w/.-]*)", text))
    # dotted names, not `study.json`
    dotted = set(re.findall(r"`((?:cli|runstore|study|trainables|analysis)(?:\.(?!json`)\w+)+)", text))
    missing = [p for p in paths if not (ROOT / p).exists()]
    missing += [d for d in dotted if not _is_module(d)
                and not (_is_module(d.rpartition(".")[0]) and _defines(*d.rsplit(".", 1)))]
    assert len(paths) > 20 and not missing, sorted(missing)
