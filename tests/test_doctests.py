"""Run the docstring examples of the operation modules (one test per module)."""

import doctest
import importlib

import pytest

MODULES = [
    "xsits.aoi",
    "xsits.grid",
    "xsits.stac",
    "xsits.load",
    "xsits.errors",
    "xsits._common",
    "xsits.testing.cubes",
    "xsits.harmonize",
    "xsits.mask",
    "xsits.gapfill",
    "xsits.patch",
    "xsits.composite",
    "xsits.smooth",
    "xsits.clip",
    "xsits.stack",
    "xsits.sample",
    "xsits.indices",
    "xsits.labels",
    "xsits.accessor",
    "xsits.steps",
    "xsits.batch",
    "xsits.batch_plan",
    "xsits.batch_report",
    "xsits.cli",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no doctest"
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
