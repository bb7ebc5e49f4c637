"""Settings of every pytest run: the tests (``tests/``) and the docstring examples (``xsits/``)."""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Never route 127.0.0.1 through an HTTP proxy (requests, GDAL/curl): local servers only."""
    for var in ("NO_PROXY", "no_proxy"):
        cur = os.environ.get(var, "")
        if "127.0.0.1" not in cur:
            os.environ[var] = ",".join(p for p in (cur, "127.0.0.1", "localhost") if p)
