"""The house rules that code can check: one-way dependencies between the rooms, and no private helper
imported across modules (DEVELOPERS.md, "Architecture rules").

Read from the source with ``ast`` (imports inside functions count too), so a lazy import cannot hide.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("foundation", "cellvq_graph", "graphdb", "cellvq")
#: What each room may import from the others: foundation nothing, cellvq_graph reads AnnData only,
#: graphdb takes plain tables, cellvq composes them all.
ALLOWED = {"foundation": set(), "cellvq_graph": set(), "graphdb": set(),
           "cellvq": {"foundation", "cellvq_graph", "graphdb"}}


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _module_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(absolute module, imported names, line) of every import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = _module_of(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append((module, [a.name for a in node.names], node.lineno))
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@pytest.mark.parametrize("room", ROOMS)
def test_dependencies_run_one_way(room):
    wrong = [f"{p.relative_to(ROOT)}:{line} imports {module}"
             for p in _sources(room) for module, _, line in _imports(p)
             if (top := module.split(".")[0]) in ROOMS and top != room and top not in ALLOWED[room]]
    assert not wrong, f"{room} may import only {sorted(ALLOWED[room]) or 'none of the other rooms'}: {wrong}"


def test_no_private_helper_is_imported_across_modules():
    """``from x import _helper``, ``import x._module`` and ``x._helper`` on an imported module are all
    refused: a helper another module needs gets a public name (or moves)."""
    wrong = []
    for path in _sources(*ROOMS, "benchmarks", "tests"):
        own = _module_of(path)
        for module, names, line in _imports(path):
            if module != own and (any(_private(part) for part in module.split("."))
                                  or any(_private(n) for n in names)):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module} {names}")
        modules = _module_aliases(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and _private(node.attr)
                    and isinstance(node.value, ast.Name) and node.value.id in modules):
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert not wrong, "private names used across modules (give them a public name): " + "; ".join(wrong)


def _module_aliases(path: Path) -> set[str]:
    """Names bound to our own modules in this file (``from graphdb import queries as q`` -> ``q``)."""
    aliases = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ROOMS:
            for a in node.names:
                if (ROOT / Path(*node.module.split("."), a.name)).with_suffix(".py").exists() or \
                        (ROOT / Path(*node.module.split("."), a.name)).is_dir():
                    aliases.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            aliases.update(a.asname or a.name for a in node.names if a.name.split(".")[0] in ROOMS)
    return aliases


def test_the_checks_see_a_violation(tmp_path, monkeypatch):
    """The private-import check is not vacuous: it reads relative imports and module attributes."""
    pkg = tmp_path / "graphdb"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def _helper():\n    return 1\n")
    (pkg / "b.py").write_text("from .a import _helper\nfrom graphdb import a\nx = a._helper()\n")
    (pkg / "c.py").write_text("import foundation.data\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    found = _imports(pkg / "b.py")
    assert ("graphdb.a", ["_helper"], 1) in found
    assert "a" in _module_aliases(pkg / "b.py")
    with pytest.raises(AssertionError, match="graphdb may import only"):
        test_dependencies_run_one_way("graphdb")
    with pytest.raises(AssertionError, match=r"b.py:1 imports graphdb.a \['_helper'\].*b.py:3 uses a._helper"):
        test_no_private_helper_is_imported_across_modules()
