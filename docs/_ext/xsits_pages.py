"""Pages generated from the package when the site is built (``config-inited``).

- ``api/``: the API reference. ``api/index.md`` lists :data:`xsits.__all__` (each name linked
  to where it is defined) and every public module, layer by layer in the order of
  ``[tool.importlinter]`` in ``pyproject.toml``; one page per module (its docstring, then an
  autosummary of its public names: ``__all__`` when the module has one, else its own
  functions and classes). No hand list of modules: a module that moves or splits moves here.
- ``_generated/errors-table.md``: the table of :mod:`xsits.errors`, one row per class.

Both are written before autosummary makes its stub pages, and are not committed.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import shutil
import tomllib
from pathlib import Path
from types import ModuleType

import xsits
import xsits.errors

DOCS = Path(__file__).resolve().parents[1]
REPO = DOCS.parent
API = DOCS / "api"
GENERATED = DOCS / "_generated"


def _summary(obj: object) -> str:
    """The first paragraph of a docstring, its reST roles as MyST roles, for a table cell."""
    doc = inspect.getdoc(obj) or ""
    line = doc.strip().split("\n\n")[0].replace("\n", " ").strip()
    line = re.sub(r":(func|class|mod|meth|data|attr|obj|exc):`", r"{py:\1}`", line)
    return line.replace("|", "\\|")


def _layers() -> list[list[str]]:
    """``[["cli"], ["demo"], ["intake", "accessor"], ...]``, top to bottom."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c.get("type") == "layers"]
    return [[name.strip() for name in layer.split("|")] for layer in layers]


def _modules(name: str) -> list[str]:
    """``xsits.<name>`` and, for a package, its public submodules, depth first."""
    full = f"xsits.{name}"
    if name.startswith("_"):
        return []
    out = [full]
    module = importlib.import_module(full)
    if hasattr(module, "__path__"):
        for info in pkgutil.iter_modules(module.__path__):
            if not info.name.startswith("_"):
                out += _modules(f"{name}.{info.name}")
    return out


def _defined(module: ModuleType) -> list[str]:
    """Names a module's own source binds at top level, in order."""
    tree = ast.parse(Path(module.__file__).read_text())
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return names


def public_names(module: ModuleType) -> list[str]:
    """The names a module's page documents: defined here, public, ``__all__`` first."""
    defined = _defined(module)
    if hasattr(module, "__all__"):
        return [n for n in module.__all__ if n in defined]
    return [n for n in defined if not n.startswith("_")
            and (inspect.isfunction(getattr(module, n, None))
                 or inspect.isclass(getattr(module, n, None)))]


def _canonical(name: str) -> str:
    obj = getattr(xsits, name)
    if inspect.ismodule(obj):
        return f"{{py:mod}}`{name} <{obj.__name__}>`"
    if inspect.isfunction(obj) or inspect.isclass(obj):
        return f"{{py:obj}}`{name} <{obj.__module__}.{obj.__qualname__}>`"
    return f"`{name}`"


def _top_level() -> list[str]:
    rows = ["| name | what it is |", "|---|---|"]
    for name in xsits.__all__:
        obj = getattr(xsits, name)
        what = (f"the version, `{obj}`" if name == "__version__" else _summary(obj))
        rows.append(f"| {_canonical(name)} | {what} |")
    return rows


def write_api() -> list[str]:
    """Write ``api/index.md`` and one page per public module (the old ones removed).

    Returns the module pages (paths from the docs directory), for autosummary.
    """
    if API.exists():
        shutil.rmtree(API)
    API.mkdir()
    lines = [
        "# API reference",
        "",
        "Generated from the docstrings. `import xsits` gives the names below; everything",
        "else is in the module of its layer (top to bottom: a module imports only from the",
        "layers below its own, see [the architecture](../architecture.md)).",
        "",
        "## `xsits`",
        "",
        *_top_level(),
        "",
        "## Modules, by layer",
        "",
    ]
    pages = []
    for layer in _layers():
        for name in layer:
            for modname in _modules(name):
                module = importlib.import_module(modname)
                lines.append(f"- {{py:mod}}`{modname}`: {_summary(module)}")
                pages.append(modname)
                _write_module_page(modname, module)
    lines += ["", "```{toctree}", ":hidden:", "", *pages, "```", ""]
    (API / "index.md").write_text("\n".join(lines))
    return [f"api/{page}.md" for page in pages]


def _write_module_page(modname: str, module: ModuleType) -> None:
    names = public_names(module)
    body = [f"# `{modname}`", "", "```{eval-rst}", f".. automodule:: {modname}",
            "   :no-members:", ""]
    if names:
        body += [f".. currentmodule:: {modname}", "", ".. autosummary::",
                 "   :toctree: generated", "   :nosignatures:", "",
                 *[f"   {n}" for n in names], ""]
    body += ["```", ""]
    (API / f"{modname}.md").write_text("\n".join(body))


def write_errors_table() -> None:
    """Write ``_generated/errors-table.md``: each error class, its built-in base, its summary."""
    GENERATED.mkdir(exist_ok=True)
    rows = ["| error | is also a | raised when |", "|---|---|---|"]
    for name, cls in vars(xsits.errors).items():
        if not (inspect.isclass(cls) and issubclass(cls, xsits.errors.XsitsError)):
            continue
        parents = [b.__name__ for b in cls.__bases__ if b is not xsits.errors.XsitsError]
        rows.append(f"| {{py:class}}`{name} <xsits.errors.{name}>` | "
                    f"{', '.join(f'`{p}`' for p in parents) or '–'} | {_summary(cls)} |")
    (GENERATED / "errors-table.md").write_text("\n".join(rows) + "\n")


def _generate(app, config) -> None:  # noqa: ANN001  (Sphinx application, config)
    # autosummary makes the stubs of these pages (an incremental build's list of source
    # files is the previous build's until it reads them)
    config.autosummary_generate = write_api()
    write_errors_table()


def setup(app):  # noqa: ANN001, ANN201
    """Register the generator with Sphinx."""
    # config-inited: before Sphinx lists the source files and autosummary makes its stubs
    app.connect("config-inited", _generate)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
