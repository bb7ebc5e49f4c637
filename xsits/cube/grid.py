"""The output pixel grid of each feature: CRS, resolution, and image or patch extent.

``aoi → grid → search → load``: the grid of a feature decides which area is searched and
exactly which pixels are loaded.

Owns: :class:`GridSpec` (checked when it is made, before any request), each feature's
GeoBox, and the resampling names a load accepts (:func:`validate_resampling`).
Must not: search or read pixels.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import geopandas as gpd
import numpy as np
from affine import Affine
from odc.geo import geom
from odc.geo.crs import CRS
from odc.geo.geobox import GeoBox
from shapely.geometry.base import BaseGeometry

from xsits._common import one_line
from xsits.errors import GridError

#: Resampling names accepted by odc-stac / GDAL (``resampling=`` of a load).
RESAMPLING: tuple[str, ...] = ("nearest", "bilinear", "cubic", "cubic_spline", "lanczos",
                               "average", "mode", "min", "max", "med", "q1", "q3", "sum", "rms")


def _number(value: object) -> bool:
    """A finite real number (not a bool, not a string)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and \
        math.isfinite(float(value))


@dataclass(frozen=True)
class GridSpec:
    """How each feature's cube is laid out.

    Parameters
    ----------
    crs
        Output CRS: ``"utm"`` (default: each feature's own UTM zone, no reprojection of
        Sentinel-2 data) or anything odc-geo understands (``"EPSG:3035"``, ``3035``...).
    resolution
        Pixel size in CRS units (metres). Default 10.
    mode
        ``"image"``: the feature's bounding box buffered by ``buffer`` metres, or ``"patch"``:
        exactly ``size`` pixels centred on the feature.
    buffer
        Image mode: metres added on every side of the feature's bounding box. Default 0.
    size
        Patch mode: ``(width, height)`` in pixels. Default ``(10, 10)``.

    Examples
    --------
    >>> GridSpec(crs="EPSG:3035", resolution=20, mode="patch", size=(10, 10)).size
    (10, 10)
    """

    crs: str | int = "utm"
    resolution: float = 10.0
    mode: Literal["image", "patch"] = "image"
    buffer: float = 0.0
    size: tuple[int, int] = (10, 10)

    def __post_init__(self) -> None:
        if self.mode not in ("image", "patch"):
            raise GridError(f"mode={self.mode!r} is not known; use mode='image' or mode='patch'")
        if not _number(self.resolution) or self.resolution <= 0:
            raise GridError(f"resolution={self.resolution!r} must be a positive number of "
                            "metres, e.g. resolution=10")
        size = (self.size, self.size) if _number(self.size) else self.size
        size = tuple(size) if isinstance(size, Iterable) and not isinstance(size, str) else ()
        if len(size) != 2 or not all(_number(v) and v >= 1 and float(v).is_integer()
                                     for v in size):
            raise GridError(f"size={self.size!r} must be (width, height) in pixels, both whole "
                            "numbers >= 1, e.g. size=(10, 10)")
        object.__setattr__(self, "size", tuple(int(v) for v in size))
        if not _number(self.buffer) or self.buffer < 0:
            raise GridError(f"buffer={self.buffer!r} must be a number of metres >= 0, e.g. "
                            "buffer=100")
        object.__setattr__(self, "resolution", float(self.resolution))
        object.__setattr__(self, "buffer", float(self.buffer))
        if str(self.crs).lower() != "utm":
            try:
                crs = CRS(self.crs)
            except Exception as err:
                raise GridError(f"crs={self.crs!r} is not a CRS odc-geo knows "
                                f"({one_line(err, 120)}); use 'utm' or e.g. 'EPSG:3035'") from None
            if crs.geographic:
                raise GridError(
                    f"crs={self.crs!r} is geographic; use a projected CRS in metres "
                    "(e.g. 'utm' or 'EPSG:3035')"
                )


def validate_resampling(
    resampling: str | Mapping[str, str], bands: Iterable[str] | None = None
) -> str | dict[str, str]:
    """``resampling`` if odc-stac / GDAL accept it (a name or ``{band: name}``), else raise.

    Parameters
    ----------
    resampling
        One of :data:`RESAMPLING`, or a mapping of band names (``"*"``: every other band)
        to such names.
    bands
        The bands loaded: a mapping's keys must be among them (or ``"*"``).

    Raises
    ------
    xsits.errors.GridError
        An unknown name, a mapping key that is not a loaded band, or another type.

    Examples
    --------
    >>> validate_resampling("bilinear")
    'bilinear'
    >>> validate_resampling({"B04": "cubic", "*": "nearest"}, bands=["B04", "SCL"])
    {'B04': 'cubic', '*': 'nearest'}
    >>> validate_resampling("bicubic")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    xsits.errors.GridError: resampling='bicubic' is not a resampling odc-stac knows; use ...
    """
    names = ", ".join(RESAMPLING)
    if isinstance(resampling, str):
        if resampling not in RESAMPLING:
            raise GridError(f"resampling={resampling!r} is not a resampling odc-stac knows; use "
                            f"one of {names}")
        return resampling
    if not isinstance(resampling, Mapping) or not resampling:
        raise GridError(f"resampling={resampling!r} must be a name ({names}) or a non-empty "
                        "{band: name} mapping, e.g. resampling={'B04': 'bilinear'}")
    known = None if bands is None else {*bands, "*"}
    for band, name in resampling.items():
        if known is not None and band not in known:
            raise GridError(f"resampling={dict(resampling)!r} names band {band!r}, which is not "
                            f"loaded; use one of {sorted(known)}")
        if name not in RESAMPLING:
            raise GridError(f"resampling={dict(resampling)!r}: {name!r} for band {band!r} is not "
                            f"a resampling odc-stac knows; use one of {names}")
    return dict(resampling)


def feature_crs(geometry: BaseGeometry, geometry_crs: object, spec: GridSpec) -> CRS:
    """The output CRS of one feature: its UTM zone for ``crs="utm"``, else ``spec.crs``.

    Examples
    --------
    >>> from shapely.geometry import Point
    >>> str(feature_crs(Point(8.49, 49.85), "EPSG:4326", GridSpec()))
    'EPSG:32632'
    """
    if str(spec.crs).lower() == "utm":
        centre = geom.Geometry(geometry, crs=geometry_crs).centroid.to_crs("EPSG:4326")
        lon, lat = centre.coords[0]
        return CRS.utm(lon, lat)
    return CRS(spec.crs)


def feature_centre(
    geometry: BaseGeometry, geometry_crs: object, crs: object
) -> tuple[float, float]:
    """Centroid of a feature in ``crs`` (projected first, then the centroid is taken).

    Examples
    --------
    >>> from shapely.geometry import Point
    >>> feature_centre(Point(500000, 5500000), 32632, 32632)
    (500000.0, 5500000.0)
    """
    x, y = geom.Geometry(geometry, crs=geometry_crs).to_crs(crs).centroid.coords[0]
    return float(x), float(y)


def patch_geobox(
    geobox: GeoBox, center: tuple[float, float], width: int, height: int
) -> tuple[GeoBox, int, int]:
    """The ``height x width`` GeoBox on ``geobox``'s pixel grid nearest to ``center``.

    Returns the patch GeoBox and the (row, column) of its top-left pixel in ``geobox``
    (negative or past the edge when the patch sticks out of the cube).

    The patch is the one whose geometric centre is nearest the feature centre: for an odd
    size the feature's pixel is the middle one; for an even size it is one of the two middle
    pixels, whichever puts the feature nearer the patch centre. Ties (centre exactly on a
    pixel edge) go east / south. :func:`feature_geobox` and :func:`xsits.to_patch` both use
    this rule, so cutting a patch-mode cube to its own size changes nothing.

    Examples
    --------
    >>> from odc.geo.geobox import GeoBox
    >>> gbox = GeoBox.from_bbox((0, 0, 100, 100), "EPSG:32632", resolution=10)
    >>> patch, row0, col0 = patch_geobox(gbox, (45.0, 55.0), 4, 3)  # centre of pixel (4, 4)
    >>> patch.shape, row0, col0
    (Shape2d(x=4, y=3), 3, 3)
    """
    col_f, row_f = geobox.wld2pix(*center)
    # round away float noise from the inverse transform before taking the floor
    col0 = math.floor(round(col_f - width / 2, 6) + 0.5)
    row0 = math.floor(round(row_f - height / 2, 6) + 0.5)
    affine = geobox.translate_pix(col0, row0).affine
    return GeoBox((height, width), affine, geobox.crs), row0, col0


def feature_geobox(geometry: BaseGeometry, geometry_crs: object, spec: GridSpec) -> GeoBox:
    """The pixel grid of one feature, aligned to multiples of the resolution.

    Patch mode: ``size`` pixels of the global grid of ``resolution`` multiples whose centre is
    nearest the feature's centroid (see :func:`patch_geobox`). Image mode covers the
    feature's bounding box buffered by ``buffer`` metres; a point with ``buffer=0`` gets the
    single pixel that contains it (1 x 1; on a pixel edge, the pixel east / south, as in
    :func:`patch_geobox`).

    Examples
    --------
    >>> from shapely.geometry import Point
    >>> gbox = feature_geobox(Point(500005, 5500005), 32632,
    ...                       GridSpec(resolution=10, mode="patch", size=(4, 3)))
    >>> gbox.shape, gbox.affine.c, gbox.affine.f
    (Shape2d(x=4, y=3), 499990.0, 5500020.0)
    >>> gbox = feature_geobox(Point(500003, 5500007), 32632, GridSpec(resolution=10))
    >>> gbox.shape, gbox.affine.c, gbox.affine.f
    (Shape2d(x=1, y=1), 500000.0, 5500010.0)
    """
    crs = feature_crs(geometry, geometry_crs, spec)
    res = float(spec.resolution)
    anchor = GeoBox((1, 1), Affine(res, 0.0, 0.0, 0.0, -res, 0.0), crs)
    if spec.mode == "patch":
        width, height = spec.size
        return patch_geobox(anchor, feature_centre(geometry, geometry_crs, crs), width, height)[0]
    shape = geom.Geometry(geometry, crs=geometry_crs).to_crs(crs)
    minx, miny, maxx, maxy = shape.boundingbox
    b = float(spec.buffer)
    if minx == maxx and miny == maxy and b == 0:  # a point: the one pixel containing it
        return patch_geobox(anchor, (minx, miny), 1, 1)[0]
    return GeoBox.from_bbox((minx - b, miny - b, maxx + b, maxy + b), crs, resolution=res)


def feature_geoboxes(aoi: gpd.GeoDataFrame, spec: GridSpec) -> dict[str, GeoBox]:
    """:func:`feature_geobox` for every feature of an AOI, keyed by ``feature_id``.

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely.geometry import Point
    >>> aoi = gpd.GeoDataFrame({"feature_id": ["a"]}, geometry=[Point(8.49, 49.85)], crs=4326)
    >>> feature_geoboxes(aoi, GridSpec(mode="patch", size=(10, 10)))["a"].shape
    Shape2d(x=10, y=10)
    """
    geoms = aoi.geometry
    one_pixel = spec.mode == "image" and float(spec.buffer) == 0
    if len(aoi) and (geoms.geom_type == "Point").all() and (spec.mode == "patch" or one_pixel):
        return _point_geoboxes(aoi, spec, (1, 1) if one_pixel else spec.size)
    return {
        fid: feature_geobox(g, aoi.crs, spec)
        for fid, g in zip(aoi["feature_id"], geoms, strict=True)
    }


def _point_geoboxes(aoi: gpd.GeoDataFrame, spec: GridSpec,
                    size: tuple[int, int]) -> dict[str, GeoBox]:
    """:func:`feature_geobox` of many points at once (the same grids, vectorised)."""
    fids = aoi["feature_id"].to_numpy()
    x = aoi.geometry.x.to_numpy()
    y = aoi.geometry.y.to_numpy()
    src = CRS(aoi.crs)
    crss: list[CRS] = []
    if str(spec.crs).lower() == "utm":
        lon, lat = (np.asarray(v) for v in src.transformer_to_crs("EPSG:4326")(x, y))
        zones: dict[tuple[int, bool], CRS] = {}
        for k in range(len(fids)):
            edge = abs(lon[k] / 6 - round(lon[k] / 6)) < 1e-9 or abs(lat[k]) < 1e-9 or \
                abs(lat[k]) > 80
            key = (int((lon[k] + 180) // 6), bool(lat[k] >= 0))
            if edge:
                crss.append(CRS.utm(float(lon[k]), float(lat[k])))
                continue
            if key not in zones:
                zones[key] = CRS.utm(float(lon[k]), float(lat[k]))
            crss.append(zones[key])
    else:
        crss = [CRS(spec.crs)] * len(fids)
    res = float(spec.resolution)
    width, height = size
    out: dict[str, GeoBox] = {}
    for crs in {str(c): c for c in crss}.values():
        at = np.array([str(c) == str(crs) for c in crss])
        cx, cy = (np.asarray(v, dtype="float64")
                  for v in src.transformer_to_crs(crs)(x[at], y[at]))
        anchor = GeoBox((1, 1), Affine(res, 0.0, 0.0, 0.0, -res, 0.0), crs)
        for fid, px, py in zip(fids[at], cx, cy, strict=True):
            out[fid] = patch_geobox(anchor, (float(px), float(py)), width, height)[0]
    return {fid: out[fid] for fid in fids}


def footprints_4326(geoboxes: dict[str, GeoBox]) -> gpd.GeoSeries:
    """The lon/lat outline of each grid: what has to be searched for each feature.

    Examples
    --------
    >>> from odc.geo.geobox import GeoBox
    >>> gb = GeoBox.from_bbox((500000, 5500000, 500100, 5500100), 32632, resolution=10)
    >>> footprints_4326({"a": gb}).crs.to_epsg()
    4326
    """
    shapes = {fid: gb.extent.to_crs("EPSG:4326").geom for fid, gb in geoboxes.items()}
    return gpd.GeoSeries(shapes, crs="EPSG:4326")
