"""Harmonize processing baselines (stub: being written)."""

from __future__ import annotations


def harmonize(ds, offset=1000, min_baseline="04.00"):
    """Undo the +1000 reflectance offset of processing baseline >= 04.00 (stub)."""
    raise NotImplementedError
