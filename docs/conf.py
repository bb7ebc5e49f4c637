"""Sphinx configuration of the xsits documentation site (``make docs``).

Pages are MyST Markdown (``myst_nb`` includes ``myst_parser``), the notebooks of
``notebooks/`` (linked as ``docs/notebooks``) are executed by myst-nb at build time against
the offline demo world and cached in ``docs/_build/.jupyter_cache``; the API reference and the
error table are generated from the package by ``_ext/xsits_pages.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

import xsits  # noqa: E402

project = "xsits"
author = "the xsits authors"
copyright = "the xsits authors"  # noqa: A001
release = version = xsits.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "xsits_pages",
]
exclude_patterns = ["_build", "_generated", "notebooks/data", "**.ipynb_checkpoints"]
templates_path = ["_templates"]

# numpy-style docstrings (napoleon); signatures with their type hints
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = True
autosummary_generate = True  # the API pages, listed by _ext/xsits_pages.py
autosummary_ignore_module_all = False
autodoc_default_options = {"members": False}
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_member_order = "bysource"
autoclass_content = "class"

# notebooks: executed at build time (offline demo world), cached, failing the build on error
nb_execution_mode = "cache"
nb_execution_timeout = 300
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_cache_path = str(DOCS / "_build" / ".jupyter_cache")
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "pydata_sphinx_theme"
html_title = f"xsits {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_static_path: list[str] = []
