"""Temporal gap filling (stub: being written)."""

from __future__ import annotations


def gapfill(obj, method="linear", max_gap=None, edges=True, dim="time"):
    """Fill NaNs along time (stub)."""
    raise NotImplementedError
