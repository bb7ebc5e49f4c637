"""STAC search (stub: being written)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StacQuery:
    """What to search (stub)."""


@dataclass
class SearchResult:
    """Items per feature (stub)."""


def search(aoi, **kwargs):
    """One STAC search per group of nearby features (stub)."""
    raise NotImplementedError
