"""The engine's modules import one another without a cycle, and the eager core stands alone.

Read from the source, so every import counts: at the top, inside functions, under
TYPE_CHECKING. tensor.py imports no other engine module, and no module outside
compile/ imports the compiler, so the eager core reads (and runs) without it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import service.engine

ENGINE = Path(service.engine.__file__).parent
PACKAGE = "service.engine"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ENGINE).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PACKAGE, *parts))


MODULES = {_module_name(path): path for path in sorted(ENGINE.rglob("*.py"))}


def _imports(path: Path) -> set[str]:
    """The engine modules path imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            # from package import module names the module; from module import name, the module
            found.update(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES
                         else node.module for alias in node.names)
    return found & MODULES.keys()


def _reaches(start: str, graph: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph[module])
    return seen


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def test_no_engine_module_imports_itself_through_others() -> None:
    cycles = {name for name in GRAPH if name in _reaches(name, GRAPH)}
    assert not cycles, f"import cycles through {sorted(cycles)}"


def test_the_core_imports_no_other_engine_module() -> None:
    assert GRAPH[f"{PACKAGE}.tensor"] == set()


def test_only_the_package_imports_the_compiler() -> None:
    compiler = f"{PACKAGE}.compile"
    outside = {name for name in GRAPH if not name.startswith(compiler) and name != PACKAGE}
    importers = {name for name in outside
                 if any(m.startswith(compiler) for m in GRAPH[name])}
    assert not importers


def test_every_engine_module_says_what_it_is_for() -> None:
    silent = [name for name, path in MODULES.items()
              if not ast.get_docstring(ast.parse(path.read_text()))]
    assert not silent
