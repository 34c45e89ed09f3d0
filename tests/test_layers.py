"""The package's shape: layers point down (import-linter's contract in pyproject.toml) and no import cycle, counting
the imports inside functions (an import there may only delay a heavy dependency, never dodge a cycle)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def import_graph() -> dict[str, set[str]]:
    """module -> the podium modules it imports anywhere in its file (top level or inside functions)."""
    modules = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path

    def resolve(module: str, name: str | None = None) -> str:
        if name and f"{module}.{name}" in modules:
            return f"{module}.{name}"
        while module not in modules and "." in module:
            module = module.rsplit(".", 1)[0]
        return module

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("podium"):
                graph[name] |= {resolve(node.module, a.name) for a in node.names}
            elif isinstance(node, ast.Import):
                graph[name] |= {resolve(a.name) for a in node.names if a.name.startswith("podium")}
        graph[name].discard(name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_even_inside_functions():
    graph = import_graph()
    assert "podium.commands.train" in graph and "podium.engine.fold" in graph["podium.commands.train"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_layers_point_down():
    lint = Path(sys.executable).parent / "lint-imports"
    if not lint.exists() and shutil.which("lint-imports") is None:
        pytest.fail("import-linter is missing: `pip install -e '.[test]'` installs it")
    out = subprocess.run([str(lint if lint.exists() else "lint-imports"), "--no-cache"], capture_output=True,
                         text=True, cwd=SRC.parent, env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0 and "1 kept, 0 broken" in out.stdout, out.stdout[-3000:] + out.stderr[-2000:]
