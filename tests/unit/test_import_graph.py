"""No import cycle anywhere in the `jobtrail` package (issue 9, point 5).

A cycle hides in function-level imports: they break it at run time but not in the design,
and the next module-level import brings it back as an ImportError. So the graph is built
from the source with `ast`, every import statement counted wherever it is (module level,
inside a function, under ``TYPE_CHECKING``). Modules are named as installed: the folders
mapped by pyproject's ``package-dir`` (``adapters/audit/replay.py`` is
``jobtrail.adapters.audit.replay``).
"""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIRS: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"][
    "setuptools"
]["package-dir"]


def modules() -> dict[str, Path]:
    """Installed module name -> source file, for every module of the mapped folders."""
    found: dict[str, Path] = {}
    for package, folder in PACKAGE_DIRS.items():
        base = ROOT / folder
        for path in base.rglob("*.py"):
            parts = path.relative_to(base).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The modules of ``known`` that ``name`` (at ``path``) imports, explicitly."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _known_prefix(alias.name, known)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, name, is_package)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield from [submodule] if submodule in known else _known_prefix(base, known)


def _absolute(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    package = name.split(".") if is_package else name.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _known_prefix(dotted: str, known: dict[str, Path]) -> Iterator[str]:
    """The longest prefix of ``dotted`` that is one of our modules (nothing for libraries)."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            yield candidate
            return


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: set(imported(name, path, known)) - {name} for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component: list[str] = []
            while not component or component[-1] != module:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(found)


def test_the_graph_sees_every_kind_of_import() -> None:
    graph = import_graph()
    assert "jobtrail.adapters.audit.replay" in graph
    assert "jobtrail.domain.events" in graph["jobtrail.adapters.audit.checks.history"]
    # a function-level import is an edge too
    assert "jobtrail.adapters.audit.parallel" in graph["jobtrail.adapters.audit.replay"]


def test_a_cycle_is_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycle_in_jobtrail() -> None:
    assert cycles(import_graph()) == []


def test_the_audit_checks_are_pure() -> None:
    """The verification reads no database: it imports the standard library, `domain`,
    `projections` and itself, nothing else (its adapters feed it records)."""
    allowed = ("jobtrail.domain", "jobtrail.projections", "jobtrail.adapters.audit.checks")
    known = modules()
    for name, path in known.items():
        if not name.startswith("jobtrail.adapters.audit.checks"):
            continue
        ours = [m for m in imported(name, path, known) if not m.startswith(allowed)]
        libraries = {
            m.split(".")[0]
            for m in _imported_names(path)
            if m.split(".")[0] not in sys.stdlib_module_names and m.split(".")[0] != "jobtrail"
        }
        assert (name, ours, libraries) == (name, [], set())


def _imported_names(path: Path) -> Iterator[str]:
    """The absolute module names a file's import statements name."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
