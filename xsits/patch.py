"""Fixed-size patches (stub: being written)."""

from __future__ import annotations


def to_patch(obj, width, height=None):
    """Exactly width x height pixels centred on the feature (stub)."""
    raise NotImplementedError
