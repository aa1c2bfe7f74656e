"""No circle in the import graph of `tightcompress`: layers point one way (`format`, then `permute`,
`baselines` and `prune`, then `api`, then the readers, the hardware and the pipeline, then the CLI).

The graph is built from the source (AST), counting every import wherever it is written: at module level,
inside functions (lazy imports) and inside `try`. Only `if TYPE_CHECKING:` blocks are left out: they never
run. Importing `a.b.c` also runs the packages `a.b` and `a` (their `__init__`), so it counts as importing
them too, except the packages the importer itself lives in (they are already running).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import tightcompress

ROOT = Path(tightcompress.__file__).resolve().parent
PACKAGE = ROOT.name


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(name: str, modules: dict[str, Path]) -> bool:
    return name in modules and modules[name].name == "__init__.py"


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for child in node.body:
                    lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module of the package that `name` runs by importing, wherever the import is written."""
    tree = ast.parse(path.read_text(), str(path))
    skipped = _type_checking_lines(tree)
    package = name if is_package(name, modules) else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            targets.add(source)
            targets.update(f"{source}.{alias.name}" for alias in node.names)  # `from pkg import module`
    own = {name.rsplit(".", i)[0] for i in range(name.count(".") + 1)}  # the packages it lives in
    found: set[str] = set()
    for target in targets:
        parts = target.split(".")
        for end in range(1, len(parts) + 1):  # the module and every package above it runs
            module = ".".join(parts[:end])
            if module in modules and module not in own:
                found.add(module)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph (its modules in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_the_import_graph_has_no_circle() -> None:
    graph = import_graph()
    assert len(graph) > 50 and f"{PACKAGE}.api" in graph[f"{PACKAGE}.subword_packer"]
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("sources", "circle"),
    [
        ({"a/__init__.py": "", "a/x.py": "def f():\n    from a.y import g\n", "a/y.py": "from a import x\n"},
         True),  # a lazy (function-level) import closes a circle
        ({"a/__init__.py": "from a.y import g\n", "a/x.py": "", "a/y.py": "from a.x import h\n"}, False),
        ({"a/__init__.py": "from a.y import g\n", "a/x.py": "from a import y\n", "a/y.py": "import a.x\n"},
         True),
        ({"a/__init__.py": "", "a/y.py": "from .x import h\n",
          "a/x.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from a.y import g\n"},
         False),  # annotations only: never runs
        ({"a/__init__.py": "", "a/b/__init__.py": "from a.c import f\n", "a/b/m.py": "",
          "a/c.py": "from a.b.m import g\n"}, True),  # importing a.b.m runs a.b's __init__
    ],
)  # fmt: skip
def test_the_circle_finder_sees_lazy_relative_and_package_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sources: dict[str, str], circle: bool
) -> None:
    for relative, text in sources.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path / "a")
    assert (find_cycle(import_graph()) is not None) is circle
