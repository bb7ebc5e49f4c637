"""The import graph of xsits: no cycle, and no function-local import but of optional extras.

``lint-imports`` (make test) checks the layers of docs/architecture.md; this test checks what
a layers contract cannot see: cycles inside one layer, and imports hidden in functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import xsits

PACKAGE = Path(xsits.__file__).parent
LIBRARY = [p for p in PACKAGE.rglob("*.py") if "testing" not in p.relative_to(PACKAGE).parts]
#: The only modules xsits (xsits.testing included) may import inside a function: they are
#: not dependencies, exist on one platform only, or cost too much to import up front.
#: A module listed here covers its submodules; everything else is imported at the module top.
LOCAL_OK = {
    "spyndex": "the indices extra",
    "imageio": "the video extra",
    "imageio_ffmpeg": "the video extra",
    "planetary_computer": "the pc extra",
    "matplotlib": "not a dependency (colour maps of one-band GIF frames)",
    "IPython": "not a dependency (the notebook front end)",
    "moto": "the test extra (xsits.testing)",
    "boto3": "the test extra (xsits.testing)",
    "uvicorn": "the test extra (xsits.testing)",
    "stac_fastapi": "the test extra (xsits.testing)",
    "psycopg": "the test extra (xsits.testing)",
    "pypgstac": "the test extra (xsits.testing)",
    "fcntl": "POSIX only",
    "pwd": "POSIX only",
    "tqdm.auto": "picks the notebook front end on import, warning when ipywidgets is missing",
    "scipy.signal": "heavy: adds 0.5 s to import xsits, used by the savgol smoother only",
}


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


def _local_imports(paths: list[Path]) -> list[tuple[str, str]]:
    """``(where, module)`` of every import inside a function (relative ones as ``.name``)."""
    found = []
    for path in paths:
        seen: set[int] = set()
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if id(node) in seen:  # a nested function's import: reported once
                    continue
                seen.add(id(node))
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = ["." * node.level + (node.module or "")]
                else:
                    continue
                found += [(f"{_module(path)}:{node.lineno}", name) for name in names]
    return found


def _allowed(module: str) -> bool:
    return any(module == ok or module.startswith(f"{ok}.") for ok in LOCAL_OK)


def test_function_local_imports_are_optional_extras_only():
    local = _local_imports(list(PACKAGE.rglob("*.py")))
    assert {m for _, m in local} & set(LOCAL_OK)  # the scan sees the extras it allows
    assert [f"{where} {m}" for where, m in local if not _allowed(m)] == []
