"""Fixed-size patches: exactly ``width x height`` pixels centred on the feature."""

from __future__ import annotations

import numpy as np
import xarray as xr
from odc.geo.xr import xr_coords

from xsits._common import append_history
from xsits.cube.grid import patch_geobox
from xsits.errors import GridError


def _fill_value(var: xr.DataArray) -> float | int:
    if np.issubdtype(var.dtype, np.floating) or np.issubdtype(var.dtype, np.complexfloating):
        return np.nan
    nodata = var.attrs.get("nodata", 0)
    return 0 if nodata is None or (isinstance(nodata, float) and np.isnan(nodata)) else nodata


def to_patch(
    obj: xr.Dataset | xr.DataArray, width: int, height: int | None = None
) -> xr.Dataset | xr.DataArray:
    """Exactly ``width x height`` pixels centred on the feature.

    The centre is ``attrs["center_x"], attrs["center_y"]`` (cube CRS; the centre of the
    cube's extent when absent). The target grid is an odc-geo GeoBox on the cube's own
    pixel grid (:func:`patch_geobox`: for even sizes the extra pixel is on the east/south
    side). Pixels outside the cube are padding: NaN in float bands, ``attrs["nodata"]``
    (0) in integer bands; ``x``/``y`` continue the regular spacing into the padding.
    Lazy on dask input (integer slicing + padding, no coordinate matching).

    Parameters
    ----------
    obj
        A cube or a single band with a CRS (``spatial_ref``, odc-geo convention).
    width, height
        Patch size in pixels (``height`` defaults to ``width``).

    Returns
    -------
    xarray.Dataset or xarray.DataArray
        The patch, with ``attrs["mode"] = "patch"`` and a line appended to
        ``attrs["history"]``.

    Raises
    ------
    xsits.errors.GridError
        If the size is not a positive integer, the object has no georeferencing, or the
        patch does not overlap the cube at all.

    Examples
    --------
    >>> from xsits.testing.cubes import make_cube
    >>> ds = make_cube(n_times=2, shape=(4, 5))   # 4 rows, 5 columns of 20 m
    >>> p = to_patch(ds, 7, 6)                    # bigger than the cube: padded
    >>> dict(p.sizes), p.attrs["mode"]
    ({'time': 2, 'y': 6, 'x': 7}, 'patch')
    >>> p.x.values[:3].tolist()                   # spacing continued into the padding
    [499990.0, 500010.0, 500030.0]
    >>> int(p.B04[0, 0, 0]), int(p.SCL[0, 0, 0])   # integer padding: nodata 0
    (0, 0)
    """
    height = width if height is None else height
    for name, size in (("width", width), ("height", height)):
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise GridError(f"to_patch: {name} must be a positive integer number of pixels, "
                            f"got {size!r}")
    fid = obj.attrs.get("feature_id", "?")
    geobox = obj.odc.geobox
    if geobox is None:
        raise GridError(f"feature {fid}: no georeferencing found (spatial_ref/x/y); "
                        "assign a CRS with ds.odc.assign_crs(...) before to_patch")
    if not geobox.axis_aligned:
        raise GridError(f"feature {fid}: to_patch needs an axis-aligned (north-up) grid")
    ydim, xdim = obj.odc.spatial_dims
    if "center_x" in obj.attrs and "center_y" in obj.attrs:
        center = (float(obj.attrs["center_x"]), float(obj.attrs["center_y"]))
    else:
        center = tuple(geobox.extent.centroid.coords[0])
    target, row0, col0 = patch_geobox(geobox, center, int(width), int(height))
    ny, nx = geobox.shape
    rows = (max(row0, 0), min(row0 + height, ny))
    cols = (max(col0, 0), min(col0 + width, nx))
    if rows[1] <= rows[0] or cols[1] <= cols[0]:
        raise GridError(f"feature {fid}: centre {center} is too far outside the cube for a "
                        f"{width}x{height} patch; check attrs['center_x'/'center_y'] and the CRS")
    pads = {
        ydim: (rows[0] - row0, row0 + height - rows[1]),
        xdim: (cols[0] - col0, col0 + width - cols[1]),
    }
    sub = obj.isel({ydim: slice(*rows), xdim: slice(*cols)})
    # drop every coordinate along y/x: the patch GeoBox gives the new ones
    spatial_coords = [n for n, c in sub.coords.items() if set(c.dims) & {ydim, xdim}]
    sub = sub.drop_vars(spatial_coords)

    def pad(var: xr.DataArray) -> xr.DataArray:
        if not any(d in var.dims for d in (ydim, xdim)) or not any(sum(p) for p in pads.values()):
            return var
        padded = var.pad({d: p for d, p in pads.items() if d in var.dims},
                         constant_values=_fill_value(var))
        padded.attrs = dict(var.attrs)
        return padded.astype(var.dtype)

    if isinstance(obj, xr.DataArray):
        out = pad(sub)
    else:
        out = xr.Dataset({name: pad(var) for name, var in sub.data_vars.items()},
                         coords={n: c for n, c in sub.coords.items()})
    new = xr_coords(target)
    out = out.assign_coords(
        {dim: (dim, new[dim].values, dict(obj[dim].attrs)) for dim in (ydim, xdim)}
    )
    out.attrs = dict(obj.attrs)
    out.attrs["mode"] = "patch"
    return append_history(out, f"xsits.to_patch(width={width}, height={height})")
