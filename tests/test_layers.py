"""The layers, read from the source: imports point down, the libraries stay free of the app
stack, and no package has an import loop.

    cli                      the `mpt` command: may import everything; nothing imports it
    flows  review  serving   the apps: never each other
    registry  cluster        the registry (SQL, artifact store) and the way into Ray
    mpt_core                 the ML library: none of the services above

Every `import` and `from ... import` of every module is read with `ast`, at module level,
inside functions, and under `if TYPE_CHECKING:`, and all of them must point down. Loops are
looked for three times: among the imports that run when a module is imported (a loop there
breaks depending on which module is imported first), with those inside functions added (a
loop hidden in a function is still one), and with those for type checkers added (a design
in which two modules each need the other).
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

MAY_IMPORT: dict[str, frozenset[str]] = {
    "mpt_core": frozenset(),
    "registry": frozenset(),  # it knows no tasks: metrics come as names and numbers
    "cluster": frozenset(),
    "flows": frozenset({"mpt_core", "registry", "cluster"}),
    "review": frozenset({"mpt_core", "registry", "cluster"}),
    "serving": frozenset({"mpt_core", "registry", "cluster"}),
    "cli": frozenset({"mpt_core", "registry", "cluster", "flows", "review", "serving"}),
}
"""Which of the platform's packages each package may import (besides itself)."""
PACKAGES = tuple(MAY_IMPORT)

STACK_FREE: dict[str, frozenset[str]] = {
    "mpt_core": frozenset(
        {"prefect", "ray", "dvc", "great_expectations", "sqlalchemy", "alembic"}
        | {"fastapi", "starlette", "httpx", "requests", "boto3"}
    ),
    "registry": frozenset({"prefect", "ray", "torch"}),
}
"""Third-party packages a library must not import, even inside a function."""

SCOPES = {
    "module level": frozenset({"module"}),
    "and functions": frozenset({"module", "function"}),
    "and type checking": frozenset({"module", "function", "typing"}),
}
"""The imports each loop check counts."""


@dataclass(frozen=True)
class Import:
    source: str
    """The importing module, dotted (`flows.retrain`)."""
    target: str
    """The imported module, dotted; for a platform package the module that runs."""
    line: int
    scope: str
    """`module` (runs on import), `function` (runs when called) or `typing` (never runs)."""

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


def _module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", None)
    return name == "TYPE_CHECKING"


def _walk(node: ast.AST, scope: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node, scope
        return
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and scope == "module":
        scope = "function"
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        for statement in node.body:
            yield from _walk(statement, "typing")
        for statement in node.orelse:
            yield from _walk(statement, scope)
        return
    for child in ast.iter_child_nodes(node):
        yield from _walk(child, scope)


def _known(target: str, modules: Collection[str]) -> str:
    """The longest prefix of `target` that is one of `modules` (else `target`)."""
    parts = target.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in modules:
            return ".".join(parts[:n])
    return target


def _targets(
    module: str, is_package: bool, node: ast.Import | ast.ImportFrom, modules: Collection[str]
) -> Iterator[str]:
    """The modules an import statement runs: `from pkg import sub` names pkg.sub when that
    is a module, else pkg; relative imports are resolved against `module`."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield _known(alias.name, modules)
        return
    base = node.module or ""
    if node.level:
        parts = module.split(".") if is_package else module.split(".")[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join([*parts, node.module] if node.module else parts)
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        yield submodule if submodule in modules else _known(base, modules)


def read_imports(root: Path, packages: Collection[str]) -> tuple[set[str], list[Import]]:
    """The modules of `packages` under `root`, and every import statement they hold."""
    paths = {
        _module_name(root, path): path
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
    }
    found = []
    for module, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, scope in _walk(tree, "module"):
            for target in _targets(module, path.name == "__init__.py", node, paths):
                found.append(Import(module, target, node.lineno, scope))
    return set(paths), found


MODULES, IMPORTS = read_imports(ROOT, PACKAGES)


def _package(module: str) -> str:
    return module.split(".")[0]


def test_the_reader_resolves_imports_and_tells_the_scopes_apart(tmp_path):
    """The checks below are only as good as this reader."""
    files = {
        "pkg/__init__.py": "from .sub import leaf\nfrom . import mod\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/leaf.py": "from .. import mod\nfrom ..mod import thing\nimport pkg.sub\n",
        "pkg/mod.py": (
            "from typing import TYPE_CHECKING\n"
            "import os.path\n"
            "if TYPE_CHECKING:\n"
            "    from pkg.sub.leaf import x\n"
            "else:\n"
            "    import json\n"
            "class C:\n"
            "    from . import sub\n"
            "    def f(self):\n"
            "        from .sub import leaf, nothing\n"
        ),
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    modules, imports = read_imports(tmp_path, ["pkg"])
    assert modules == {"pkg", "pkg.mod", "pkg.sub", "pkg.sub.leaf"}
    assert {(i.source, i.target, i.line, i.scope) for i in imports} == {
        ("pkg", "pkg.sub.leaf", 1, "module"),
        ("pkg", "pkg.mod", 2, "module"),
        ("pkg.sub.leaf", "pkg.mod", 1, "module"),
        ("pkg.sub.leaf", "pkg.mod", 2, "module"),
        ("pkg.sub.leaf", "pkg.sub", 3, "module"),
        ("pkg.mod", "typing", 1, "module"),
        ("pkg.mod", "os.path", 2, "module"),
        ("pkg.mod", "pkg.sub.leaf", 4, "typing"),
        ("pkg.mod", "json", 6, "module"),
        ("pkg.mod", "pkg.sub", 8, "module"),
        ("pkg.mod", "pkg.sub.leaf", 10, "function"),
        ("pkg.mod", "pkg.sub", 10, "function"),
    }
    assert {_package(m) for m in MODULES} == set(PACKAGES)


def test_imports_point_down_and_apps_never_import_each_other():
    wrong = [
        f"{i.where} imports {i.target} ({_package(i.source)} may import: "
        f"{', '.join(sorted(MAY_IMPORT[_package(i.source)])) or 'none of the platform'})"
        for i in IMPORTS
        if _package(i.target) in MAY_IMPORT
        and _package(i.target) != _package(i.source)
        and _package(i.target) not in MAY_IMPORT[_package(i.source)]
    ]
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


@pytest.mark.parametrize("package", sorted(STACK_FREE))
def test_the_libraries_import_none_of_the_app_stack(package):
    banned = STACK_FREE[package]
    wrong = [
        f"{i.where} imports {i.target}"
        for i in IMPORTS
        if _package(i.source) == package and _package(i.target) in banned
    ]
    assert not wrong, f"{package} must not import {', '.join(sorted(banned))}:\n" + "\n".join(wrong)


def _loops(package: str, scopes: frozenset[str]) -> list[list[str]]:
    """The import loops inside `package` (strongly connected modules, Tarjan), each sorted."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES if _package(m) == package}
    for i in IMPORTS:
        if i.source in graph and i.target in graph and i.source != i.target and i.scope in scopes:
            graph[i.source].add(i.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    loops: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            members = []
            while not members or members[-1] != module:
                members.append(stack.pop())
            if len(members) > 1:
                loops.append(sorted(members))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(loops)


def _describe(loop: list[str], scopes: frozenset[str]) -> str:
    edges = sorted(
        {
            f"  {i.where} -> {i.target} ({i.scope})"
            for i in IMPORTS
            if i.source in loop and i.target in loop and i.scope in scopes
        }
    )
    return f"{len(loop)} modules: {', '.join(loop)}\n" + "\n".join(edges)


LOOP_CASES = [
    pytest.param(
        package,
        scope,
        id=f"{package}-{scope.replace(' ', '-')}",
    )
    for package in PACKAGES
    for scope in SCOPES
]


@pytest.mark.parametrize(("package", "scope"), LOOP_CASES)
def test_no_import_loop_inside_a_package(package, scope):
    loops = _loops(package, SCOPES[scope])
    assert not loops, f"import loops in {package} ({scope}):\n" + "\n".join(
        _describe(loop, SCOPES[scope]) for loop in loops
    )
