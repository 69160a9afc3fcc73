"""The package layout: every module imports on its own terms, no module below the root
imports the ``facecore`` root (lazy imports included), and the module import graph has no
cycles (lazy imports included)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "facecore"


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO_ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, known: set[str]) -> list[tuple[int, str, str]]:
    """``(line, imported facecore module, statement)`` for every import in ``path``, at
    module level or inside functions (lazy), except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and getattr(block.test, "id", None) == "TYPE_CHECKING"
        for stmt in block.body
        for n in ast.walk(stmt)
    }
    out = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "facecore":
                    out.append((node.lineno, alias.name, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "facecore":
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                target = sub if sub in known else node.module
                out.append((node.lineno, target, f"from {node.module} import {alias.name}"))
    return out


def test_no_module_below_the_root_imports_the_root():
    modules = _modules()
    known = set(modules)
    offenders = []
    for name, path in modules.items():
        if name == "facecore":
            continue
        for line, target, stmt in _imports(path, known):
            if target == "facecore":
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{line}: {stmt}")
    assert offenders == []


def test_the_import_graph_has_no_cycles():
    modules = _modules()
    known = set(modules)
    graph = {
        name: sorted({t for _, t, _ in _imports(path, known) if t in known and t != name})
        for name, path in modules.items()
    }
    # Tarjan's strongly connected components
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []


def test_every_module_imports_in_a_fresh_interpreter(fresh_python):
    names = sorted(n for n in _modules() if n != "facecore._build_info" or
                   (PACKAGE / "_build_info.py").is_file())
    out = fresh_python(
        f"""
        import importlib, json
        failed = {{}}
        for name in {names!r}:
            try:
                importlib.import_module(name)
            except Exception as e:
                failed[name] = f"{{type(e).__name__}}: {{e}}"
        print(json.dumps(failed))
        """
    )
    assert json.loads(out.strip().splitlines()[-1]) == {}


def test_version_is_a_leaf():
    tree = ast.parse((PACKAGE / "_version.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    formats = _imports(PACKAGE / "formats.py", set(_modules()))
    assert [t for _, t, _ in formats] == ["facecore._version"]
