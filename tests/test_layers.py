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


# Third-party packages slow enough to import that a podium module may delay them with an import inside a function.
HEAVY = {"torch", "torchvision", "lightning", "timm", "albumentations", "cv2", "matplotlib", "sklearn", "scipy",
         "mlflow", "wandb", "tensorboard", "pytorch_grad_cam", "onnxruntime"}
# cli.py imports its commands inside them on purpose: `podium --help` and `podium check` start without torch.
LAZY_ON_PURPOSE = {"podium.cli"}


def imports_by_place(tree: ast.Module) -> tuple[set[str], list[ast.ImportFrom | ast.Import]]:
    """(modules imported at run time at module level, the import statements inside functions)."""
    top: set[str] = set()
    inner: list[ast.ImportFrom | ast.Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # not imported at run time
            here = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                if here:
                    inner.append(child)
                elif isinstance(child, ast.ImportFrom):
                    top.update({child.module or ""} | {f"{child.module}.{a.name}" for a in child.names})
                else:
                    top.update(a.name for a in child.names)
            visit(child, here)

    visit(tree, False)
    return top, inner


def heavy_closures(trees: dict[str, ast.Module]) -> dict[str, set[str]]:
    """module -> the heavy packages importing it loads (through podium modules, their parents included)."""
    memo: dict[str, set[str]] = {}

    def closure(module: str) -> set[str]:
        if module in memo:
            return memo[module]
        memo[module] = set()  # no cycles (checked above); this only ends recursion on a bad tree
        found: set[str] = set()
        parts = module.split(".")
        for i in range(1, len(parts)):
            if ".".join(parts[:i]) in trees:
                found |= closure(".".join(parts[:i]))
        for name in imports_by_place(trees[module])[0]:
            if name.split(".")[0] in HEAVY:
                found.add(name.split(".")[0])
            elif name in trees and name != module:
                found |= closure(name)
        memo[module] = found
        return found

    return {m: closure(m) for m in trees}


def needless_lazy_imports(trees: dict[str, ast.Module], exempt: set[str] = frozenset()) -> list[str]:
    """Imports of podium inside functions that delay no heavy package the module does not already load."""
    heavy = heavy_closures(trees)
    found = []
    for module, tree in sorted(trees.items()):
        if module in exempt:
            continue
        for node in imports_by_place(tree)[1]:
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names])
            podium = [n for n in names if n.split(".")[0] == "podium"]
            if not podium:
                continue
            delayed = set().union(*(heavy.get(n, set()) for n in podium)) - heavy[module]
            if not delayed:
                found.append(f"{module} line {node.lineno}: {ast.unparse(node)}")
    return found


def test_imports_inside_functions_only_delay_heavy_packages():
    trees = {}
    for path in SRC.rglob("*.py"):
        trees[".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")] = ast.parse(
            path.read_text())
    assert "torch" in heavy_closures(trees)["podium.engine.module"]
    found = needless_lazy_imports(trees, LAZY_ON_PURPOSE)
    assert not found, "move these to the top of their module:\n" + "\n".join(found)


def test_a_needless_lazy_import_is_found():
    trees = {"podium": ast.parse(""),
             "podium.light": ast.parse("import json\n"),
             "podium.net": ast.parse("import torch\n"),
             "podium.user": ast.parse("def f():\n    from podium.light import x\n\n"
                                      "def g():\n    from podium.net import y\n"),
             "podium.torchy": ast.parse("import torch\n\ndef g():\n    from podium.net import y\n")}
    assert needless_lazy_imports(trees) == ["podium.torchy line 4: from podium.net import y",
                                            "podium.user line 2: from podium.light import x"]
