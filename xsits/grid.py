"""The output pixel grid of each feature: CRS, resolution, and image or patch extent.

``aoi → grid → search → load``: the grid of a feature decides which area is searched and
exactly which pixels are loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import geopandas as gpd
from odc.geo import geom
from odc.geo.crs import CRS
from odc.geo.geobox import GeoBox
from shapely.geometry.base import BaseGeometry

from xsits.errors import GridError


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
        if not self.resolution or self.resolution <= 0:
            raise GridError(f"resolution={self.resolution!r} must be a positive number of metres")
        size = tuple(int(v) for v in self.size)
        if len(size) != 2 or min(size) < 1:
            raise GridError(f"size={self.size!r} must be (width, height) with both >= 1")
        object.__setattr__(self, "size", size)
        if self.buffer < 0:
            raise GridError(f"buffer={self.buffer!r} must be >= 0 metres")
        if str(self.crs).lower() != "utm":
            try:
                crs = CRS(self.crs)
            except Exception as err:
                raise GridError(f"crs={self.crs!r} is not a CRS odc-geo knows: {err}") from err
            if crs.geographic:
                raise GridError(
                    f"crs={self.crs!r} is geographic; use a projected CRS in metres "
                    "(e.g. 'utm' or 'EPSG:3035')"
                )


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


def feature_geobox(geometry: BaseGeometry, geometry_crs: object, spec: GridSpec) -> GeoBox:
    """The pixel grid of one feature, aligned to multiples of the resolution.

    Patch mode centres ``size`` pixels on the pixel that contains the feature's centroid (for
    an even size the centre pixel is the one right of / below the middle). Image mode covers
    the feature's bounding box buffered by ``buffer`` metres.

    Examples
    --------
    >>> from shapely.geometry import Point
    >>> gbox = feature_geobox(Point(500005, 5500005), 32632,
    ...                       GridSpec(resolution=10, mode="patch", size=(4, 3)))
    >>> gbox.shape, gbox.affine.c, gbox.affine.f
    (Shape2d(x=4, y=3), 499980.0, 5500020.0)
    """
    crs = feature_crs(geometry, geometry_crs, spec)
    res = float(spec.resolution)
    if spec.mode == "patch":
        width, height = spec.size
        cx, cy = feature_centre(geometry, geometry_crs, crs)
        col, row = math.floor(cx / res), math.floor(cy / res)
        x0 = (col - width // 2) * res
        y0 = (row - (height - 1) // 2) * res
        bbox = (x0, y0, x0 + width * res, y0 + height * res)
        return GeoBox.from_bbox(bbox, crs, resolution=res, tight=True)
    shape = geom.Geometry(geometry, crs=geometry_crs).to_crs(crs)
    minx, miny, maxx, maxy = shape.boundingbox
    b = float(spec.buffer)
    bbox = (minx - b, miny - b, maxx + b, maxy + b)
    if bbox[2] - bbox[0] < res or bbox[3] - bbox[1] < res:  # a point without buffer: one pixel
        cx, cy = shape.centroid.coords[0]
        bbox = (cx - res / 2, cy - res / 2, cx + res / 2, cy + res / 2)
    return GeoBox.from_bbox(bbox, crs, resolution=res)


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
    return {
        fid: feature_geobox(g, aoi.crs, spec)
        for fid, g in zip(aoi["feature_id"], aoi.geometry, strict=True)
    }


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
