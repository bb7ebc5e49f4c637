"""Temporal composites (stub: being written)."""

from __future__ import annotations


def composite(obj, freq="1MS", how="median"):
    """Regular time axis via flox (stub)."""
    raise NotImplementedError
