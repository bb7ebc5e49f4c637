"""Read AOI files (stub: being written)."""

from __future__ import annotations


def read_aoi(source, id_column=None, x=None, y=None, crs=None, layer=None):
    """Read points/polygons into a GeoDataFrame with a safe string ``feature_id`` (stub)."""
    raise NotImplementedError
