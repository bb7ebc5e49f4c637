"""Many features through ``dask.compute`` (stub: being written)."""

from __future__ import annotations


def compute_all(cubes_or_source, steps=(), out_dir="out", format="netcdf", scheduler="threads",
                batch_size=256, progress=None, overwrite=False, workers=None):
    """Process and export every feature; return a report DataFrame (stub).

    Report columns: feature_id, status (written | skipped | empty | failed), path, n_dates,
    seconds, error.
    """
    raise NotImplementedError
