"""Lazy per-feature cubes (stub: being written)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GridSpec:
    """Output grid (stub)."""


def open_cubes(aoi, **kwargs):
    """Return ``{feature_id: lazy Dataset}`` (stub)."""
    raise NotImplementedError
