"""Print the import graph between kdstudy's packages, read from the code (`python docs/import_graph.py`).

Only imports between different top-level packages are listed: inside a package any module may import another.
Lazy imports inside functions count too, since they bind the packages just as firmly.
"""
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = sorted(p.parent.name for p in ROOT.glob("*/__init__.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def submodule_or_package(base: str, name: str) -> str:
    """`from runstore import schema` imports the module runstore.schema; `from trainables import ChainConfig`
    imports the package."""
    path = ROOT.joinpath(*base.split("."), name)
    return f"{base}.{name}" if path.with_suffix(".py").exists() or (path / "__init__.py").exists() else base


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every kdstudy module the file imports (relative imports resolved)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.update(submodule_or_package(base, alias.name) for alias in node.names)
    return {n for n in names if n.split(".")[0] in PACKAGES}


def cross_package_edges() -> dict[tuple[str, str], set[str]]:
    edges: dict[tuple[str, str], set[str]] = defaultdict(set)
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            source = module_name(path)
            for target in imported_modules(path):
                if target.split(".")[0] != package:
                    edges[(package, target.split(".")[0])].add(f"{source} → {target}")
    return edges


def main() -> None:
    edges = cross_package_edges()
    print("packages:", ", ".join(PACKAGES))
    for (source, target), imports in sorted(edges.items()):
        print(f"\n{source} → {target} ({len(imports)} imports)")
        for line in sorted(imports):
            print("  ", line)
    if not edges:
        sys.exit("no imports between packages found")


if __name__ == "__main__":
    main()
