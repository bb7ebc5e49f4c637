"""The import graph of xsits: no cycle, and no function-local import of xsits itself.

``lint-imports`` (make test) checks the layers of docs/architecture.md; this test checks what
a layers contract cannot see: cycles inside one layer, and imports hidden in functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import xsits

PACKAGE = Path(xsits.__file__).parent
#: Optional extras and platform modules may be imported where they are needed.
LIBRARY = [p for p in PACKAGE.rglob("*.py") if "testing" not in p.relative_to(PACKAGE).parts]


def _module(path: Path) -> str:
    parts = ("xsits", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    names = {_module(p) for p in PACKAGE.rglob("*.py")}

    def resolve(name: str) -> str:
        while name and name not in names:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for path in LIBRARY:
        me = _module(path)
        out = graph.setdefault(me, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("xsits"):
                targets = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("xsits")]
            else:
                continue
            out.update(t for t in map(resolve, targets) if t not in (me, "xsits"))
    return graph


def test_no_import_cycle():
    graph, state, cycles = _graph(), {}, []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_no_function_local_import_of_xsits():
    local = []
    for path in LIBRARY:
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("xsits"):
                    local.append(f"{_module(path)}:{node.lineno} {node.module}")
                elif isinstance(node, ast.Import) and any(
                        a.name.startswith("xsits") for a in node.names):
                    local.append(f"{_module(path)}:{node.lineno}")
    assert local == []
