"""Polygon clipping: pixels outside a feature's polygon become NaN (or the integer nodata).

Owns: :func:`clip` and how a feature's polygon travels with its cube: :func:`with_geometry`
stores it in ``attrs["geometry"]`` (WKT in the cube's CRS), which survives NetCDF / Zarr and
pickling to dask workers, so a step (:class:`xsits.ops.steps.clip`) can clip each cube of a
batch to its own polygon.
Must not: rasterise by hand (odc-geo's :func:`odc.geo.xr.rasterize`, i.e.
:func:`rasterio.features.geometry_mask`, decides which pixels are inside) or read pixels.

Examples
--------
>>> from shapely.geometry import box
>>> from xsits.ops.mask import scl_mask
>>> from xsits.testing.cubes import make_cube
>>> ds = scl_mask(make_cube(n_times=2, shape=(2, 4)))  # x 500000..500080, y 5499960..5500000
>>> out = clip(ds, box(500000, 5499960, 500040, 5500000))  # the two western columns
>>> out.B04[0].isnull().values.tolist()
[[False, False, True, True], [False, False, True, True]]
"""

from __future__ import annotations

from typing import Any

import dask
import dask.array as dsa
import numpy as np
import xarray as xr
from odc.geo.crs import norm_crs
from odc.geo.geom import Geometry
from odc.geo.xr import rasterize
from shapely import wkt
from shapely.geometry.base import BaseGeometry

from xsits._common import append_history
from xsits.errors import AOIError, GridError

#: Attribute holding a cube's polygon: WKT in the cube's CRS (``attrs["crs"]``).
GEOMETRY_ATTR = "geometry"


def _fid(obj: xr.Dataset | xr.DataArray) -> str:
    return str(obj.attrs.get("feature_id", "?"))


def _as_geometry(obj: xr.Dataset | xr.DataArray, geometry: Any, crs: Any) -> Geometry:
    """``geometry`` as an odc-geo Geometry with a CRS (the cube's when none is known)."""
    if crs is not None:
        try:
            crs = norm_crs(crs)
        except Exception as err:  # pyproj's CRSError and odc-geo's own
            raise AOIError(f"feature {_fid(obj)}: crs={crs!r} is not a CRS pyproj knows "
                           f"({type(err).__name__}); pass e.g. crs='EPSG:4326'") from None
    if geometry is None:
        text = obj.attrs.get(GEOMETRY_ATTR)
        if not text:
            raise AOIError(
                f"feature {_fid(obj)}: no geometry given and no attrs['{GEOMETRY_ATTR}'] on the "
                "cube; pass clip(ds, polygon, crs=...) or attach it with "
                "xsits.cube.clip.with_geometry(ds, polygon, crs)"
            )
        geometry = wkt.loads(str(text))
    if hasattr(geometry, "geometry") and hasattr(geometry, "crs"):  # GeoSeries / GeoDataFrame
        if geometry.crs is None and crs is None:
            raise AOIError(f"feature {_fid(obj)}: the clip GeoDataFrame has no CRS; set it "
                           "with gdf.set_crs('EPSG:...') or pass crs=")
        crs = crs if crs is not None else geometry.crs
        geometry = geometry.geometry.union_all()
    if isinstance(geometry, Geometry):
        if crs is not None and geometry.crs is not None and geometry.crs != crs:
            raise AOIError(f"feature {_fid(obj)}: crs={crs!r} contradicts the geometry's CRS "
                           f"{geometry.crs}; drop crs=")
        return geometry if geometry.crs is not None else Geometry(geometry.geom, crs=crs)
    if not isinstance(geometry, BaseGeometry):
        raise AOIError(f"feature {_fid(obj)}: cannot clip to a {type(geometry).__name__}; "
                       "pass a shapely (Multi)Polygon, an odc-geo Geometry or a GeoDataFrame")
    return Geometry(geometry, crs=crs if crs is not None else obj.odc.crs)


def _rasterize(poly: Geometry, geobox: Any, all_touched: bool) -> np.ndarray:
    """Boolean array of ``geobox``'s shape, True inside ``poly``."""
    return rasterize(poly, geobox, all_touched=all_touched).data


def _inside_mask(obj: xr.Dataset | xr.DataArray, poly: Geometry, all_touched: bool,
                 ydim: str, xdim: str) -> xr.Variable:
    """Boolean ``(y, x)`` Variable, True inside ``poly``; dask-backed like the cube."""
    geobox = obj.odc.geobox
    arrays = [obj] if isinstance(obj, xr.DataArray) else list(obj.data_vars.values())
    chunked = next((v for v in arrays if v.chunks is not None and {ydim, xdim} <= set(v.dims)),
                   None)
    if chunked is None:
        return xr.Variable((ydim, xdim), _rasterize(poly, geobox, all_touched))

    task = dask.delayed(_rasterize, pure=True)(poly, geobox, all_touched)
    data = dsa.from_delayed(task, tuple(geobox.shape), dtype=bool)
    sizes = chunked.chunksizes
    return xr.Variable((ydim, xdim), data.rechunk((sizes[ydim], sizes[xdim])))


def _outside_value(var: xr.DataArray) -> float | int:
    """NaN for floats; ``attrs["nodata"]`` (default 0) for integers."""
    if np.issubdtype(var.dtype, np.floating):
        return np.nan
    nodata = var.attrs.get("nodata", 0)
    if nodata is None or (isinstance(nodata, float) and np.isnan(nodata)):
        return 0
    return nodata


def _clip_var(var: xr.DataArray, inside: xr.Variable, ydim: str, xdim: str) -> xr.Variable:
    v = var.variable
    if ydim not in v.dims or xdim not in v.dims:
        return v
    out = v.where(inside, _outside_value(var)).astype(v.dtype).transpose(*v.dims)
    out.attrs = dict(v.attrs)
    return out


def clip(
    obj: xr.Dataset | xr.DataArray,
    geometry: Any = None,
    *,
    crs: Any = None,
    all_touched: bool = False,
) -> xr.Dataset | xr.DataArray:
    """Set the pixels outside a polygon to NaN (floats) or to the band's nodata (integers).

    Which pixels are inside is decided by :func:`odc.geo.xr.rasterize`
    (:func:`rasterio.features.geometry_mask` on the cube's GeoBox): a pixel is inside when
    its centre is in the polygon (holes excluded), or, with ``all_touched=True``, when the
    polygon touches it at all. Integer bands keep their dtype: ``uint16`` reflectance and
    ``SCL`` get ``attrs["nodata"]`` (0) outside. The polygon is reprojected to the cube's CRS
    when needed. Lazy on dask input (the mask is rasterised when computed, chunked like the
    cube).

    Parameters
    ----------
    obj
        A cube or band with a CRS (``spatial_ref``, odc-geo convention).
    geometry
        A shapely (Multi)Polygon, an odc-geo ``Geometry``, or a GeoSeries / GeoDataFrame
        (the union of its rows). Default ``None``: the cube's own polygon,
        ``attrs["geometry"]`` (see :func:`with_geometry`).
    crs
        CRS of a shapely ``geometry``. Default ``None``: the geometry's own CRS (odc-geo,
        geopandas, ``attrs["geometry"]``), else the cube's.
    all_touched
        Keep every pixel the polygon touches, not only those whose centre is inside.

    Returns
    -------
    xarray.Dataset or xarray.DataArray
        Same dims, dtypes and coordinates, with a line appended to ``attrs["history"]``.

    Raises
    ------
    xsits.errors.AOIError
        No geometry (argument or attribute), not a polygon, or a CRS contradiction.
    xsits.errors.GridError
        The cube has no georeferencing, or the polygon does not overlap it (wrong CRS?).

    Examples
    --------
    >>> from shapely.geometry import Polygon
    >>> from xsits.ops.mask import scl_mask
    >>> from xsits.testing.cubes import make_cube
    >>> ds = scl_mask(make_cube(n_times=2, shape=(3, 3)))  # x 500000..500060, y 5499940..5500000
    >>> ring = Polygon([(500000, 5499940), (500060, 5499940), (500060, 5500000),
    ...                 (500000, 5500000)],
    ...                holes=[[(500020, 5499960), (500040, 5499960), (500040, 5499980),
    ...                        (500020, 5499980)]])
    >>> out = clip(ds, ring)
    >>> out.B04[0].isnull().values.astype(int).tolist()   # the hole is outside
    [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
    >>> int(out.SCL[0, 1, 1]), str(out.SCL.dtype)        # integers: nodata, same dtype
    (0, 'uint8')
    """
    geobox = obj.odc.geobox
    if geobox is None:
        raise GridError(f"feature {_fid(obj)}: no georeferencing found (spatial_ref/x/y); "
                        "assign a CRS with ds.odc.assign_crs(...) before clip")
    poly = _as_geometry(obj, geometry, crs)
    if poly.geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise AOIError(f"feature {_fid(obj)}: clip needs a Polygon or MultiPolygon, got a "
                       f"{poly.geom.geom_type}; clip polygon AOIs only (buffer points first)")
    if not poly.to_crs(geobox.crs).intersects(geobox.extent):
        raise GridError(f"feature {_fid(obj)}: the polygon does not overlap the cube; is its "
                        f"CRS right (crs={crs!r}, cube {geobox.crs})?")
    ydim, xdim = obj.odc.spatial_dims
    inside = _inside_mask(obj, poly, all_touched, ydim, xdim)
    if isinstance(obj, xr.DataArray):
        out = obj.copy(data=_clip_var(obj, inside, ydim, xdim).data)
    else:
        out = obj.assign({name: _clip_var(var, inside, ydim, xdim)
                          for name, var in obj.data_vars.items()})
        out.attrs = dict(obj.attrs)
    return append_history(out, f"xsits.cube.clip(all_touched={all_touched})")


def with_geometry(obj: xr.Dataset | xr.DataArray, geometry: Any,
                  crs: Any = None) -> xr.Dataset | xr.DataArray:
    """``obj`` carrying ``geometry`` as ``attrs["geometry"]``: WKT in the cube's CRS.

    How a feature's polygon travels with its cube to :func:`clip` and
    :class:`xsits.ops.steps.clip` (through pickling, dask workers, NetCDF and Zarr files).

    Parameters
    ----------
    obj
        A cube or band with a CRS.
    geometry, crs
        The polygon and its CRS, as for :func:`clip` (``crs=None``: the geometry's own, else
        the cube's).

    Returns
    -------
    xarray.Dataset or xarray.DataArray
        A shallow copy with the attribute set.

    Examples
    --------
    >>> from shapely.geometry import Point
    >>> from xsits.testing.cubes import make_cube
    >>> ds = make_cube(n_times=1, shape=(3, 3))
    >>> field = Point(9.0, 49.6).buffer(0.0003)         # lon/lat degrees
    >>> tagged = with_geometry(ds, field, crs="EPSG:4326")
    >>> tagged.attrs["geometry"][:16]                   # now in the cube's UTM metres
    'POLYGON ((500021'
    """
    if obj.odc.crs is None:
        raise GridError(f"feature {_fid(obj)}: no CRS found; assign one with "
                        "ds.odc.assign_crs(...) first")
    poly = _as_geometry(obj, geometry, crs).to_crs(obj.odc.crs)
    out = obj.copy(deep=False)
    out.attrs = {**obj.attrs, GEOMETRY_ATTR: poly.geom.wkt}
    return out
