"""Label rasters (stub: being written)."""

from __future__ import annotations


def labels(obj, gdf, column, fill=0, all_touched=False):
    """Rasterize a vector attribute on the cube grid (stub)."""
    raise NotImplementedError
