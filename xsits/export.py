"""Atomic exports (stub: being written)."""

from __future__ import annotations


def export(ds, target, format=None, overwrite=False):
    """Write ``ds`` atomically to NetCDF / Zarr / CSV / Parquet (stub)."""
    raise NotImplementedError
