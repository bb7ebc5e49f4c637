"""Small in-memory cubes that follow the xsits data model (see CONTRIBUTING.md).

They make docstring examples and unit tests independent of any server: exact values are easy
to state, and ``chunks=`` gives the same cube dask-backed.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

#: SCL classes used by :func:`make_cube`'s default scene (see the Sentinel-2 L2A product guide).
SCL_NODATA, SCL_SHADOW, SCL_VEGETATION, SCL_CLOUD_HIGH = 0, 3, 4, 9


def make_cube(
    *,
    n_times: int = 6,
    shape: tuple[int, int] = (8, 8),
    bands: tuple[str, ...] = ("B03", "B04", "B08", "SCL"),
    crs: str = "EPSG:32632",
    resolution: float = 20.0,
    origin: tuple[float, float] = (500000.0, 5500000.0),
    start: str = "2024-01-01",
    freq: str = "10D",
    baseline: str | list[str] = "05.11",
    feature_id: str = "1",
    mode: str = "image",
    seed: int = 0,
    chunks: dict | None = None,
) -> xr.Dataset:
    """Build a small cube with known values, as :func:`xsits.open_cubes` would return it.

    Reflectance bands are ``uint16`` with the +1000 offset of baseline >= 04.00 and
    ``nodata=0``; ``SCL`` is ``uint8`` and vegetation (4) everywhere, except a cloud (9) in
    the top-left quarter of date 1 and a shadow (3) pixel at ``(y=0, x=-1)`` of date 2 and
    one nodata (0) pixel at ``(0, 0)`` of the last date (where reflectance is 0 too).

    Parameters
    ----------
    n_times, shape
        Number of dates and ``(ny, nx)`` pixels.
    bands
        Band names; ``"SCL"`` becomes the class band.
    crs, resolution, origin
        Grid: CRS, pixel size (m) and top-left corner.
    start, freq
        Dates: ``pd.date_range(start, periods=n_times, freq=freq)``.
    baseline
        ``processing_baseline`` of every date (one string) or per date (list).
    feature_id, mode
        Provenance attributes.
    seed
        Seed for the reflectance noise.
    chunks
        ``None`` for numpy-backed data, else a dask chunking such as ``{"time": 2}``.

    Examples
    --------
    >>> ds = make_cube(n_times=3, shape=(4, 5))
    >>> dict(ds.sizes)
    {'time': 3, 'y': 4, 'x': 5}
    >>> int(ds.SCL[1, 0, 0]), str(ds.B04.dtype)
    (9, 'uint16')
    """
    ny, nx = shape
    geobox = GeoBox.from_bbox(
        (origin[0], origin[1] - ny * resolution, origin[0] + nx * resolution, origin[1]),
        crs=crs,
        resolution=resolution,
    )
    times = pd.date_range(start, periods=n_times, freq=freq)
    baselines = [baseline] * n_times if isinstance(baseline, str) else list(baseline)
    rng = np.random.default_rng(seed)
    dims = ("time", "y", "x")

    scl = np.full((n_times, ny, nx), SCL_VEGETATION, dtype="uint8")
    if n_times > 1:
        scl[1, : max(1, ny // 2), : max(1, nx // 2)] = SCL_CLOUD_HIGH
    if n_times > 2:
        scl[2, 0, -1] = SCL_SHADOW
    scl[-1, 0, 0] = SCL_NODATA

    data_vars = {}
    for i, band in enumerate(bands):
        if band == "SCL":
            data_vars[band] = (dims, scl, {"nodata": 0})
            continue
        refl = 500 + 300 * i + rng.integers(0, 200, size=(n_times, ny, nx))
        refl[scl == SCL_CLOUD_HIGH] = 8000
        offset = np.array([1000 if b >= "04.00" else 0 for b in baselines])[:, None, None]
        dn = (refl + offset).astype("uint16")
        dn[scl == SCL_NODATA] = 0
        data_vars[band] = (dims, dn, {"nodata": 0})

    coords = dict(xr_coords(geobox))
    coords["time"] = times
    coords["cloud_cover"] = ("time", np.round(rng.uniform(0, 10, n_times), 2))
    platforms = ["Sentinel-2A" if k % 2 else "Sentinel-2B" for k in range(n_times)]
    coords["platform"] = ("time", platforms)
    coords["processing_baseline"] = ("time", baselines)
    coords["mgrs_tile"] = ("time", ["32UMA"] * n_times)
    coords["boa_offset_applied"] = ("time", np.zeros(n_times, dtype=bool))
    cx, cy = geobox.extent.centroid.coords[0]
    ds = xr.Dataset(
        data_vars,
        coords=coords,
        attrs={
            "feature_id": feature_id,
            "collection": "sentinel-2-l2a",
            "stac": "memory",
            "query": json.dumps({"eo:cloud_cover": {"lt": 10}}),
            "mode": mode,
            "crs": crs,
            "resolution": float(resolution),
            "center_x": float(cx),
            "center_y": float(cy),
            "start": str(times[0].date()),
            "end": str(times[-1].date()),
        },
    )
    if chunks is not None:  # chunk the bands only: per-date coordinates stay small numpy arrays
        ds = ds.assign({name: var.chunk(chunks) for name, var in ds.data_vars.items()})
    return ds
