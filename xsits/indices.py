"""Spectral indices (stub: being written)."""

from __future__ import annotations


def indices(ds, names, mapping=None, scale=10000.0):
    """Spectral indices via spyndex (stub)."""
    raise NotImplementedError
