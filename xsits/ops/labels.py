"""Label rasters: a vector attribute rasterized on the cube's own pixel grid."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import dask
import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr
from odc.geo.xr import xr_coords
from rasterio.features import rasterize

from xsits._common import append_history
from xsits.errors import AOIError, GridError

if TYPE_CHECKING:
    import geopandas as gpd


def _burn(shapes: list, shape: tuple[int, int], transform, fill, all_touched: bool, dtype):
    if not shapes:
        return np.full(shape, fill, dtype=dtype)
    return rasterize(
        shapes, out_shape=shape, transform=transform, fill=fill,
        all_touched=all_touched, dtype=dtype,
    )


def _spatial_chunks(obj: xr.Dataset | xr.DataArray, ydim: str, xdim: str) -> tuple | None:
    """``(y_chunks, x_chunks)`` of the first dask-backed band with both spatial dims."""
    arrays = [obj] if isinstance(obj, xr.DataArray) else list(obj.data_vars.values())
    for var in arrays:
        if var.chunks is not None and ydim in var.dims and xdim in var.dims:
            sizes = var.chunksizes
            return (sizes[ydim], sizes[xdim])
    return None


def labels(
    obj: xr.Dataset | xr.DataArray,
    gdf: gpd.GeoDataFrame,
    column: str,
    fill: float | None = None,
    all_touched: bool = False,
) -> xr.DataArray:
    """Rasterize the ``column`` attribute of ``gdf`` on the cube's grid.

    The result has the cube's CRS, transform and shape (``obj.odc.geobox``): dims
    ``(y, x)``, the cube's ``x``/``y`` and ``spatial_ref``. ``gdf`` is reprojected to the
    cube CRS when needed. Pixels whose centre falls in a polygon get its value (every
    touched pixel with ``all_touched=True``); where polygons overlap, the later row wins.
    Rows with a missing value or geometry are skipped.

    Value types: integer and boolean columns give ``int32`` with ``fill=0``; float columns
    ``float32`` with ``fill=NaN``; any other column (strings, categories) gives ``int32``
    codes 1..n in sorted order of the categories (0 = no label), with the mapping in
    ``attrs["classes"]`` (JSON text ``{"1": "maize", ...}``, so it survives NetCDF) and the
    CF ``flag_values`` / ``flag_meanings`` attributes. On dask input the raster is a dask
    array (rasterized when computed), chunked like the cube in ``y``/``x``.

    Parameters
    ----------
    obj
        A cube or band with a CRS (``spatial_ref``, odc-geo convention).
    gdf
        Polygons (or any geometries) with a CRS.
    column
        The attribute to burn.
    fill
        Value of pixels without label (default 0, or NaN for float columns).
    all_touched
        Burn every pixel touched by a geometry, not only those whose centre is inside.

    Returns
    -------
    xarray.DataArray
        The label raster named ``column``, with the cube's attrs and a line appended to
        ``attrs["history"]``.

    Raises
    ------
    xsits.errors.AOIError
        If ``column`` is missing or ``gdf`` has no CRS.
    xsits.errors.GridError
        If ``obj`` has no georeferencing.

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely.geometry import box
    >>> from xsits.testing.cubes import make_cube
    >>> ds = make_cube(n_times=1, shape=(2, 4))        # x from 500000 to 500080, 20 m
    >>> fields = gpd.GeoDataFrame({"crop": ["wheat", "maize"]},
    ...     geometry=[box(500000, 5499960, 500040, 5500000), box(500040, 5499960, 500060, 5500000)],
    ...     crs=ds.attrs["crs"])
    >>> lab = labels(ds, fields, "crop")
    >>> lab.values.tolist(), lab.attrs["classes"]
    ([[2, 2, 1, 0], [2, 2, 1, 0]], '{"1": "maize", "2": "wheat"}')
    """
    fid = obj.attrs.get("feature_id", "?")
    if column not in gdf.columns:
        raise AOIError(f"feature {fid}: labels column {column!r} not in the GeoDataFrame "
                       f"(columns: {', '.join(map(str, gdf.columns))})")
    if gdf.crs is None:
        raise AOIError(f"feature {fid}: the labels GeoDataFrame has no CRS; set it with "
                       "gdf.set_crs('EPSG:...')")
    geobox = obj.odc.geobox
    if geobox is None:
        raise GridError(f"feature {fid}: no georeferencing found (spatial_ref/x/y); "
                        "assign a CRS with ds.odc.assign_crs(...) before labels")
    ydim, xdim = obj.odc.spatial_dims
    vec = gdf[[column, gdf.geometry.name]]
    if vec.crs != geobox.crs.proj:
        vec = vec.to_crs(geobox.crs.proj)
    vec = vec[vec[column].notna() & vec.geometry.notna() & ~vec.geometry.is_empty]
    values = vec[column]
    attrs = dict(obj.attrs)
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_integer_dtype(values):
        dtype, fill = "int32", 0 if fill is None else fill
        burn = values.astype("int64").tolist()
    elif pd.api.types.is_float_dtype(values):
        dtype, fill = "float32", np.nan if fill is None else fill
        burn = values.astype("float64").tolist()
    else:
        categories = sorted({str(v) for v in values})
        codes = {name: code for code, name in enumerate(categories, start=1)}
        dtype, fill = "int32", 0 if fill is None else fill
        burn = [codes[str(v)] for v in values]
        attrs["classes"] = json.dumps({str(c): n for n, c in codes.items()})
        attrs["flag_values"] = np.arange(1, len(categories) + 1, dtype="int32")
        attrs["flag_meanings"] = " ".join(n.replace(" ", "_") for n in categories)
    shapes = list(zip(vec.geometry, burn, strict=True))
    args = (shapes, tuple(geobox.shape), geobox.affine, fill, all_touched, dtype)
    chunks = _spatial_chunks(obj, ydim, xdim)
    if chunks:
        data = dsa.from_delayed(dask.delayed(_burn)(*args), tuple(geobox.shape), dtype=dtype)
        data = data.rechunk(chunks)
    else:
        data = _burn(*args)
    coords = {ydim: obj[ydim], xdim: obj[xdim]}
    if "spatial_ref" in obj.coords:
        coords["spatial_ref"] = obj.coords["spatial_ref"]
    else:
        coords["spatial_ref"] = xr_coords(geobox)["spatial_ref"]
    out = xr.DataArray(data, dims=(ydim, xdim), coords=coords, name=column, attrs=attrs)
    return append_history(out, f"xsits.ops.labels(column={column!r}, all_touched={all_touched})")
