"""One lazy, dask-backed cube per feature with odc-stac.

``aoi → grid → search → load``: :func:`open_cubes` lays out each feature's pixel grid
(:mod:`xsits.grid`), finds its items with one search per group of nearby features
(:mod:`xsits.search`), and builds a lazy ``odc.stac.load`` cube per feature with
``groupby="solar_day"``. Nothing is read until ``.compute()``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import itertools
import logging
import re
import time
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import odc.stac
import pystac
import rasterio
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords, xr_reproject
from odc.loader import resolve_load_cfg
from odc.loader._builder import _fill_nd_slice
from odc.loader._reader import resolve_dst_fill_value, resolve_src_nodata
from odc.loader._rio import RioDriver, RioReader
from odc.loader.types import RasterLoadParams, RasterSource
from odc.stac import parse_items
from odc.stac._mdtools import StacAuxReader, StacMDParser
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from xsits._common import relaxed_gc, single_threaded_blas
from xsits.aoi import read_aoi
from xsits.errors import LoadError
from xsits.grid import GridSpec, feature_centre, feature_geoboxes, footprints_4326
from xsits.reader import CogDriver, Source
from xsits.stac import SearchResult, StacQuery, iter_search, merge_results

# odc-loader reprojects in-memory arrays with rasterio, which warns that they have no transform
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning, module="rasterio.warp")

#: STAC item properties kept as per-date coordinates: ``{property: (coordinate, default)}``.
TIME_PROPERTIES: dict[str, tuple[str, Any]] = {
    "eo:cloud_cover": ("cloud_cover", np.nan),
    "platform": ("platform", ""),
    "s2:processing_baseline": ("processing_baseline", ""),
    "s2:mgrs_tile": ("mgrs_tile", ""),
    "earthsearch:boa_offset_applied": ("boa_offset_applied", False),
}

#: GDAL settings for many small HTTP range reads, with retries on flaky servers.
GDAL_HTTP_DEFAULTS: dict[str, Any] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MAX_RETRY": 5,
    "GDAL_HTTP_RETRY_DELAY": 0.5,
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_INGESTED_BYTES_AT_OPEN": 32768,
    "VSI_CACHE": True,
    "VSI_CACHE_SIZE": 64_000_000,
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff",
    "GDAL_HTTP_VERSION": 2,
}


#: Default dask chunks of a cube: up to 2048x2048 pixels, and as many dates of one band as
#: fit in :data:`CHUNK_BYTES` (all dates of a small cube: few tasks; reads are fetched per
#: feature by :mod:`xsits.reader`, not per task).
CHUNKS: dict[str, int] = {"y": 2048, "x": 2048}
#: Target size of one chunk of the default chunking (``uint16`` pixels).
CHUNK_BYTES = 32 * 2**20

#: Retries of one chunk read (one band of one date) and the first backoff delay (seconds).
READ_RETRIES, RETRY_DELAY = 4, 0.2

log = logging.getLogger(__name__)
_GDAL_LIB: Any = None


def _gdal_lib() -> Any:
    """The libgdal that rasterio uses, through ctypes (None if not found).

    rasterio's copy first: wheels of pyogrio / fiona bundle other libgdal copies, whose caches
    are not the ones rasterio (and so odc-stac) reads through.
    """
    global _GDAL_LIB
    if _GDAL_LIB is None:
        import ctypes
        import ctypes.util

        base = Path(rasterio.__file__).parent
        candidates = [str(p) for d in (base.parent / "rasterio.libs", base / ".dylibs")
                      if d.is_dir() for p in d.glob("libgdal*")]
        try:
            with open("/proc/self/maps") as fh:
                mapped = sorted({ln.split()[-1] for ln in fh if "libgdal" in ln})
            candidates += [m for m in mapped if "rasterio" in m] + mapped
        except OSError:
            pass
        found = ctypes.util.find_library("gdal")
        candidates += [found] if found else []
        _GDAL_LIB = False
        for path in candidates:
            try:
                lib = ctypes.CDLL(path)
                lib.VSICurlClearCache  # noqa: B018 - raises AttributeError when absent
            except (OSError, AttributeError):
                continue
            _GDAL_LIB = lib
            break
    return _GDAL_LIB or None


def clear_gdal_cache() -> None:
    """Forget what GDAL's ``/vsicurl/`` remembers (truncated ranges, "file does not exist").

    Called before a read is retried, so that the retry asks the server again.

    Examples
    --------
    >>> clear_gdal_cache()
    """
    lib = _gdal_lib()
    if lib is not None:
        lib.VSICurlClearCache()


class _RetryingReader(RioReader):
    def __init__(self, src, ctx, retries: int, delay: float) -> None:
        super().__init__(src, ctx)
        self._retries, self._delay = retries, delay

    def read(self, cfg, dst_geobox, *, dst=None, selection=None):
        for attempt in itertools.count():
            try:
                return super().read(cfg, dst_geobox, dst=dst, selection=selection)
            except (RasterioError, OSError):
                if attempt >= self._retries:
                    raise
                log.info("read failed (attempt %d); clearing GDAL's cache and retrying",
                         attempt + 1)
                clear_gdal_cache()
                time.sleep(self._delay * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover


class RetryingRioDriver(RioDriver):
    """odc-stac's rasterio reader driver, retrying each failed chunk read.

    :class:`xsits.reader.CogDriver` reads COGs itself and hands it the rest. A dropped
    connection or a truncated range (GDAL does not retry those) clears GDAL's HTTP cache and
    reads the chunk again, ``retries`` times with exponential backoff from ``delay`` seconds;
    then the error propagates (odc-stac ``fail_on_error=True``: a cube is never silently
    missing a date). Picklable: it travels in the dask graph to any scheduler.

    Examples
    --------
    >>> RetryingRioDriver(retries=2).retries
    2
    """

    def __init__(self, retries: int = READ_RETRIES, delay: float = RETRY_DELAY) -> None:
        super().__init__(md_parser=StacMDParser({}), aux_reader=StacAuxReader())
        self.retries, self.delay = retries, delay

    def open(self, src, ctx) -> RioReader:
        """A reader of one source that retries its reads."""
        return _RetryingReader(src, ctx, self.retries, self.delay)


class Cubes(dict):
    """``{feature_id: xr.Dataset}`` plus why the other features have no cube.

    Attributes
    ----------
    missing
        ``{feature_id: reason}`` for features without a cube (no item, failed search...).
    search
        The :class:`~xsits.search.SearchResult` the cubes were built from.

    Examples
    --------
    >>> c = Cubes({}, missing={"9": "no item"})
    >>> len(c), c.missing
    (0, {'9': 'no item'})
    """

    def __init__(self, cubes=(), *, missing=None, search=None) -> None:
        super().__init__(cubes)
        self.missing: dict[str, str] = dict(missing or {})
        self.search: SearchResult | None = search


def configure_gdal(client=None, **overrides: Any) -> None:
    """Apply :data:`GDAL_HTTP_DEFAULTS` (plus ``overrides``) here and on dask workers.

    Examples
    --------
    >>> configure_gdal(GDAL_HTTP_MAX_RETRY=3)
    """
    odc.stac.configure_rio(**{**GDAL_HTTP_DEFAULTS, **overrides}, client=client)


def _solar_groups(items: Sequence[pystac.Item], lon: float) -> list[list[pystac.Item]]:
    """Group items like ``odc.stac.load(groupby="solar_day")`` does, in the same order."""
    shift = dt.timedelta(hours=lon / 15)

    def key(it: pystac.Item) -> dt.date:
        return (it.datetime + shift).date()

    ordered = sorted(items, key=lambda it: (key(it), it.datetime, it.id))
    return [list(g) for _, g in itertools.groupby(ordered, key=key)]


def _time_coords(groups: list[list[pystac.Item]]) -> dict[str, tuple[str, np.ndarray]]:
    """Per-date coordinates from the first item of each solar-day group."""
    coords = {}
    for prop, (name, default) in TIME_PROPERTIES.items():
        values = [g[0].properties.get(prop, default) for g in groups]
        if isinstance(default, bool):
            arr = np.array([bool(v) for v in values], dtype=bool)
        elif isinstance(default, float):
            arr = np.array([np.nan if v is None else float(v) for v in values], dtype="float64")
        else:
            arr = np.array([str(v) for v in values], dtype=str)
        coords[name] = ("time", arr)
    return coords


def _proj_code(item: pystac.Item) -> str:
    """The item's CRS as ``"EPSG:n"`` (``"EPSG:None"`` without projection metadata)."""
    return item.properties.get("proj:code") or f"EPSG:{item.properties.get('proj:epsg')}"


def _native_geobox(items: Sequence[pystac.Item], geobox: GeoBox,
                   bands: Sequence[str] = ()) -> GeoBox | None:
    """The grid to read ``geobox``'s area on, in the items' own CRS; None if it is that CRS.

    Reading on the native pixel grid (on the items' pixel lattice, with a 2-pixel margin) is a
    plain windowed read, without the per-file reprojection setup that dominates the CPU time
    of many small reads; the small cube is then warped to ``geobox`` by one index lookup
    (nearest: the same source pixels as a direct warp). Its resolution is the finest of the
    levels odc-stac would read for a direct load of each band onto ``geobox`` (a band's full
    resolution, or an overview when the output is at least twice as coarse *at that place*),
    so the values equal ``odc.stac.load(items, geobox=geobox)``'s.
    """
    from affine import Affine

    codes = [_proj_code(it) for it in items]
    code = max(set(codes), key=codes.count)
    if code in ("EPSG:None", None) or geobox.crs == code:
        return None
    res = _read_resolution(items, code, geobox, bands)
    x0, y0 = _lattice_origin(items, code)
    px, py = geobox.boundary().T  # the grid's outline, 16 points a side
    xx, yy = _transformer(str(geobox.crs), code, geobox).transform(*geobox.pix2wld(px, py))
    minx, miny, maxx, maxy = np.min(xx), np.min(yy), np.max(xx), np.max(yy)
    left = x0 + (np.floor((minx - x0) / res) - 2) * res
    top = y0 + (np.ceil((maxy - y0) / res) + 2) * res
    width = int(np.ceil((maxx - left) / res)) + 2
    height = int(np.ceil((top - miny) / res)) + 2
    return GeoBox((height, width), Affine(res, 0, left, 0, -res, top), code)


def _read_resolution(items: Sequence[pystac.Item], code: str, geobox: GeoBox,
                     bands: Sequence[str]) -> float:
    """The finest resolution odc-stac reads ``bands`` at for a direct load onto ``geobox``.

    odc-stac reads overview ``k`` of a band when the output is ``k`` times coarser at the
    feature (``compute_reproject_roi(...).read_shrink``: 1 when the local scale is a hair
    below 2); without ``proj:`` metadata, the output resolution.
    """
    from affine import Affine

    out = abs(geobox.resolution.x)
    item = next((it for it in items if _proj_code(it) == code), None)
    grids = set()  # bands on one grid (the 10 m ones...) share their level
    for band in bands:
        meta = _proj_meta(item, band) if item is not None else {}
        t, shape = meta.get("proj:transform"), meta.get("proj:shape")
        if not t or not shape or len(t) < 6:
            return out
        grids.add((tuple(shape), tuple(t[:6])))
    levels = [abs(t[0]) * read_shrink(GeoBox(shape, Affine(*t), code), geobox)
              for shape, t in grids]
    return min([*levels, out])


def read_shrink(src: GeoBox, dst: GeoBox) -> int:
    """The overview factor odc-stac reads ``src`` at for ``dst``: ``compute_reproject_roi``'s.

    When ``dst`` lies inside ``src`` (a feature inside its tile), odc-geo takes the scale at
    ``dst``'s centre through the ``dst -> src`` pixel transform only; that is computed here
    with one quickly created transformer per CRS pair (:func:`_transformer`) instead of
    odc-geo's two (50-170 ms each, holding the GIL, for every UTM zone). Anywhere else,
    ``compute_reproject_roi`` itself.

    Examples
    --------
    >>> src = GeoBox.from_bbox((600000, 5000000, 605120, 5005120), "EPSG:32632", resolution=10)
    >>> x0, y0, x1, y1 = src.extent.to_crs("EPSG:3035").boundingbox
    >>> dst = GeoBox.from_bbox((x0 + 2000, y0 + 2000, x0 + 2400, y0 + 2400), "EPSG:3035",
    ...                        resolution=20)
    >>> read_shrink(src, dst), read_shrink(src, dst.zoom_out(2))
    (1, 3)
    """
    from odc.geo import xy_
    from odc.geo.overlap import _pick_read_scale, compute_reproject_roi, get_scale_at_point
    from odc.geo.roi import roi_center

    if src.crs != dst.crs:
        back = _pixel_transform(dst, src)
        (h, w), (sh, sw) = dst.shape.yx, src.shape.yx
        corners = back([xy_(0, 0), xy_(w, 0), xy_(0, h), xy_(w, h)])
        margin = 4  # pixels: src's outline, padded, then covers all of dst
        if all(margin <= p.x <= sw - margin and margin <= p.y <= sh - margin for p in corners):
            centre = xy_(roi_center((slice(0, h), slice(0, w)))[::-1])
            return _pick_read_scale(min(get_scale_at_point(centre, back).xy))
    return compute_reproject_roi(src, dst).read_shrink


@dataclass(frozen=True)
class _CrsPair:
    """The coordinate operations between two CRSs over the area where both are used."""

    area: tuple[float, float, float, float] | None  # lon/lat bounds; None: unrestricted
    best: Any  # a pyproj Transformer of PROJ's only exact operation there, or None
    best_area: tuple[float, float, float, float] | None  # where ``best`` is PROJ's choice


@functools.lru_cache(maxsize=256)
def _crs_pair(src: str, dst: str) -> _CrsPair:
    """PROJ's candidate operations ``src -> dst``, searched once over the CRSs' common area.

    ``best`` is set when exactly one candidate is not a ballpark (EPSG:3035 and a UTM zone:
    "ETRS89 to WGS 84 (1)"; one datum: a conversion): it is then the operation PROJ (and
    GDAL) apply at every point of its area, whatever the area of interest they were given.
    A transformer from this search takes ~10 ms to create; ``Transformer.from_crs`` takes
    40-170 ms, with the GIL held.
    """
    import warnings

    import pyproj
    from pyproj.aoi import AreaOfInterest
    from pyproj.transformer import TransformerGroup

    a, b = pyproj.CRS(src), pyproj.CRS(dst)
    if a.area_of_use is None or b.area_of_use is None:
        return _CrsPair(None, None, None)
    area = _intersect(a.area_of_use.bounds, b.area_of_use.bounds)
    if area[0] >= area[2] or area[1] >= area[3]:  # (a zone across the antimeridian)
        return _CrsPair(None, None, None)
    with warnings.catch_warnings():  # "best transformation is not available"
        warnings.simplefilter("ignore")
        group = TransformerGroup(a, b, always_xy=True, area_of_interest=AreaOfInterest(*area))
    ops = group.transformers
    ballpark = [t.accuracy < 0 and "ballpark" in t.description.lower() for t in ops]
    if not ops or group.unavailable_operations or ballpark[0] or not all(ballpark[1:]):
        return _CrsPair(area, None, None)
    use = ops[0].area_of_use
    best_area = _intersect(area, use.bounds if use is not None else area)
    return _CrsPair(area, ops[0], best_area)


def _intersect(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float, float]:
    return max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])


def _inside(bbox: Sequence[float], area: Sequence[float] | None) -> bool:
    return area is not None and area[0] <= bbox[0] and area[1] <= bbox[1] and \
        bbox[2] <= area[2] and bbox[3] <= area[3]


@functools.lru_cache(maxsize=256)
def _from_crs(src: str, dst: str) -> Any:
    """``Transformer.from_crs`` restricted to the CRSs' common area (PROJ's per-point choice)."""
    import pyproj
    from pyproj.aoi import AreaOfInterest

    area = _crs_pair(src, dst).area
    return pyproj.Transformer.from_crs(src, dst, always_xy=True, area_of_interest=None
                                       if area is None else AreaOfInterest(*area))


def _lonlat_bbox(gbox: GeoBox) -> tuple[float, float, float, float]:
    """The lon/lat bounds of ``gbox``'s outline (4 points a side; odc-geo's take ~8 ms)."""
    xx, yy = gbox.pix2wld(*gbox.boundary(4).T)
    if not gbox.crs.geographic:
        pair = _crs_pair(str(gbox.crs), "EPSG:4326")
        tr = pair.best if pair.best is not None else _from_crs(str(gbox.crs), "EPSG:4326")
        xx, yy = tr.transform(xx, yy)
    return float(np.min(xx)), float(np.min(yy)), float(np.max(xx)), float(np.max(yy))


def _transformer(src: str, dst: str, where: GeoBox | None = None) -> Any:
    """A pyproj transformer ``src -> dst`` (x, y order) for read planning around ``where``.

    PROJ's only exact operation (:func:`_crs_pair`) when ``where`` lies in its area: the
    same coordinates as ``Transformer.from_crs``, for a fraction of the set-up; else
    :func:`_from_crs`. It only plans reads (bounds with a margin, overview factors): pixel
    values come from GDAL's warps.

    Examples
    --------
    >>> _transformer("EPSG:4326", "EPSG:32632").transform(9.0, 0.0)
    (500000.0, 0.0)
    """
    pair = _crs_pair(src, dst)
    if pair.best is not None and where is not None and _inside(_lonlat_bbox(where),
                                                               pair.best_area):
        return pair.best
    return _from_crs(src, dst)


def _gdal_options(src: GeoBox, dst: GeoBox) -> dict[str, str]:
    """GDAL transformer options for a warp ``src -> dst`` that cannot change its result.

    By default GDAL searches PROJ's operations again for every source extent (15-60 ms per
    warp). Only when PROJ has a single exact operation (:func:`_crs_pair`) and ``dst`` lies
    in the CRSs' common area, GDAL then applies that operation (or its ballpark outside the
    operation's area) at each point, whatever the area of interest; so it is given:

    - inside the operation's own area, the operation itself (``COORDINATE_OPERATION``,
      :func:`_gdal_pipeline`): no search at all (~3 ms a warp, against ~30 ms for the first
      warp of a CRS pair given its area);
    - elsewhere in the common area, that area (``AREA_OF_INTEREST``): one search per CRS
      pair (~2 ms for the next warps).
    """
    if src.crs == dst.crs:
        return {}
    pair = _crs_pair(str(dst.crs), str(src.crs))  # as planning: PROJ's choice is symmetric
    if pair.best is None:
        return {}
    bbox = _lonlat_bbox(dst)
    if _inside(bbox, pair.best_area):
        pipeline = _gdal_pipeline(pair.best.definition, src.crs, dst.crs)
        if pipeline is not None:
            return {"COORDINATE_OPERATION": pipeline}
    if _inside(bbox, pair.area):
        return {"AREA_OF_INTEREST": ",".join(repr(float(v)) for v in pair.area)}
    return {}


def _gdal_pipeline(definition: str, src: Any, dst: Any) -> str | None:
    """The PROJ string GDAL applies ``src -> dst``, from pyproj's ``dst -> src`` (x, y order).

    The inverse of a pipeline is its steps in reverse order, each inverted. GDAL feeds a
    given operation coordinates in the CRSs' own axis order (northing first for EPSG:3035,
    latitude first for EPSG:4326): an axis swap is added on each side where that is not x, y.
    None for steps whose inverse is not that simple (``omit_fwd``, ``push``...) and for CRSs
    whose axes are not east and north.

    Examples
    --------
    >>> _gdal_pipeline("proj=pipeline step inv proj=laea lat_0=52 step proj=utm zone=32",
    ...                "EPSG:32632", "EPSG:3035").split(" +step ")[1:]
    ['+inv +proj=utm +zone=32', '+proj=laea +lat_0=52', '+proj=axisswap +order=2,1']
    """
    words = definition.split()
    if words[:1] != ["proj=pipeline"]:  # one operation: a pipeline of one step
        words = ["proj=pipeline", "step", *words]
    if words[1:2] != ["step"]:  # parameters of the whole pipeline
        return None
    steps = [step.split() for step in " ".join(words[2:]).split(" step ")]
    simple = re.compile(r"[a-z_0-9]+(=[^=\s]+)?$")  # flags (inv, south) and parameters
    if any(w.split("=")[0] in ("omit_fwd", "omit_inv", "push", "pop") or not simple.match(w)
           for step in steps for w in step):
        return None
    inverse = [[w for w in step if w != "inv"] if "inv" in step else ["inv", *step]
               for step in reversed(steps)]
    swap = ["proj=axisswap", "order=2,1"]
    north = [_northing_first(str(src)), _northing_first(str(dst))]
    if None in north:  # (westing, southing...): left to GDAL's search
        return None
    inverse = ([swap] if north[0] else []) + inverse + ([swap] if north[1] else [])
    return " ".join(["+proj=pipeline", *("+step " + " ".join("+" + w for w in step)
                                         for step in inverse)])


@functools.lru_cache(maxsize=256)
def _northing_first(crs: str) -> bool | None:
    """Whether ``crs`` puts its north axis first (latitude, northing), None for other axes."""
    import pyproj

    axes = [a.direction.lower() for a in pyproj.CRS(crs).axis_info[:2]]
    return {("east", "north"): False, ("north", "east"): True}.get(tuple(axes))


def _pixel_transform(a: GeoBox, b: GeoBox) -> Callable[[Sequence[Any]], list[Any]]:
    """Pixel coordinates of ``a`` to those of ``b`` (odc-geo's ``GbxPointTransform(a, b)``)."""
    from odc.geo import xy_

    tr = _transformer(str(a.crs), str(b.crs), a)

    def apply(pts: Sequence[Any]) -> list[Any]:
        xx, yy = a.pix2wld(*np.asarray([p.xy for p in pts], dtype="float64").T)
        if a.crs.geographic:  # as odc-geo: pixel edges a hair outside the valid range
            xx, yy = np.clip(xx, -180, 180), np.clip(yy, -90, 90)
        xx, yy = b.wld2pix(*tr.transform(xx, yy))
        return [xy_(x, y) for x, y in zip(xx, yy, strict=True)]

    return apply


def _proj_meta(item: pystac.Item, band: str) -> dict[str, Any]:
    """The ``proj:`` metadata of one band: the item's, overridden by its asset's."""
    asset = item.assets.get(band)
    return {**item.properties, **(asset.extra_fields if asset is not None else {})}


def _lattice_origin(items: Sequence[pystac.Item], code: str) -> tuple[float, float]:
    """A pixel corner of the items' grid (``proj:transform``), else (0, 0)."""
    for it in items:
        if _proj_code(it) != code:
            continue
        for band in it.assets:
            t = _proj_meta(it, band).get("proj:transform")
            if t and len(t) >= 6:
                return float(t[2]), float(t[5])
    return 0.0, 0.0


#: Native grids up to this many pixels are warped by one index lookup (see :func:`_warp`).
GATHER_MAX_PIXELS = 2048 * 2048


def nearest_index(src: GeoBox, dst: GeoBox) -> np.ndarray:
    """For each pixel of ``dst``, the flat index of the ``src`` pixel a nearest warp takes.

    -1 outside ``src``. Computed by warping an image of pixel indices once with GDAL, so
    that applying it gives exactly the values of a nearest-neighbour warp of any band and
    date on those grids.

    Examples
    --------
    >>> from odc.geo.geobox import GeoBox
    >>> src = GeoBox.from_bbox((0, 0, 40, 40), "EPSG:32632", resolution=10)
    >>> nearest_index(src, src[1:3, 1:3]).tolist()
    [[5, 6], [9, 10]]
    """
    from odc.geo.warp import rio_reproject

    index = np.arange(src.shape[0] * src.shape[1], dtype="int32").reshape(src.shape.yx)
    out = np.empty(dst.shape.yx, dtype="int32")
    return rio_reproject(index, out, src, dst, "nearest", src_nodata=-1, dst_nodata=-1,
                         **_gdal_options(src, dst))


@functools.lru_cache(maxsize=64)
def _nearest_index_cached(src: GeoBox, dst: GeoBox) -> np.ndarray:
    """:func:`nearest_index`, once for all bands of a cube (read-only: shared)."""
    index = nearest_index(src, dst)
    index.setflags(write=False)
    return index


def _gather_fill(attrs: Mapping[str, Any], dtype: np.dtype) -> Any:
    """The value of warped pixels outside the read grid: the band's nodata attribute or 0."""
    fill = attrs.get("nodata", 0)
    return np.nan if fill is None and dtype.kind == "f" else (fill or 0)


def _gather(block: np.ndarray, index: np.ndarray, fill: Any) -> np.ndarray:
    flat = block.reshape(block.shape[0], -1)
    out = flat[:, np.maximum(index, 0)]
    out[:, index < 0] = fill
    return out


def _warp(var: xr.DataArray, native: GeoBox, geobox: GeoBox, resampling: str) -> xr.DataArray:
    """``var`` (lazy, on ``native``) warped to ``geobox``.

    A nearest warp is one index lookup per chunk (:func:`nearest_index`, computed once for
    all bands and dates); other resamplings use ``odc.geo``'s ``xr_reproject``.
    """
    data = var.data
    if resampling != "nearest" or native.shape[0] * native.shape[1] > GATHER_MAX_PIXELS \
            or len(data.chunks[1]) > 1 or len(data.chunks[2]) > 1:
        return xr_reproject(var.chunk({"time": -1}), geobox, resampling=resampling)
    index = _nearest_index_cached(native, geobox)
    fill = _gather_fill(var.attrs, data.dtype)
    out = data.map_blocks(_gather, index, fill, chunks=(data.chunks[0], *index.shape),
                          dtype=data.dtype)
    coords = {k: v for k, v in var.coords.items() if k not in ("x", "y", "spatial_ref")}
    attrs = {**var.attrs, "_FillValue": fill}  # as xr_reproject sets it
    da = xr.DataArray(out, dims=var.dims, coords=coords, attrs=attrs, name=var.name)
    return da.assign_coords(xr_coords(geobox, crs_coord_name="spatial_ref"))


def _nominal_datetime(item: pystac.Item) -> dt.datetime:
    """The item's time as odc-stac takes it: ``datetime``, else ``start_datetime`` (naive)."""
    when = item.datetime or pystac.utils.str_to_datetime(item.properties["start_datetime"])
    return when.replace(tzinfo=None)


@dataclass(frozen=True, eq=False)
class _SmallCube:
    """What one task needs to read a small cube: per date, per band, the files to fuse."""

    geobox: GeoBox  # the output grid
    native: GeoBox | None  # the grid read (items' CRS), warped to ``geobox``; None: geobox
    cfg: dict[str, RasterLoadParams]  # per band: dtype, nodata, resampling (odc-stac's)
    layers: dict[str, tuple[tuple[RasterSource, ...], ...]]  # per band, per date: sources
    env: dict[str, Any]  # GDAL settings for the rasterio fallback
    retries: int
    delay: float


def _small_cube(items: Sequence[pystac.Item], groups: list[list[pystac.Item]], geobox: GeoBox,
                native: GeoBox | None, bands: Sequence[str], resampling: Mapping[str, str],
                read_retries: int, retry_delay: float) -> _SmallCube | None:
    """The one-task reading plan of a cube, or None when odc-stac's graph must read it.

    Band metadata (dtype, nodata, units) and load settings come from odc-stac's own parser
    and :func:`odc.loader.resolve_load_cfg`, so the cube equals ``odc.stac.load``'s.
    """
    parsed = next(parse_items(items[:1], md_plugin=StacMDParser({})))
    try:
        keys = {b: parsed.collection.band_key(b) for b in bands}
        meta = parsed.collection.resolve_bands(list(bands))
    except ValueError:
        return None
    if any(k[1] != 1 or k not in parsed.bands or not isinstance(parsed.bands[k], RasterSource)
           for k in keys.values()):
        return None  # multi-band assets, auxiliary bands: odc-stac's graph
    cfg = resolve_load_cfg(meta, dict(resampling), fail_on_error=True)
    layers = {}
    for b, (asset, _) in keys.items():
        template = parsed.bands[(asset, 1)].strip()
        layers[b] = tuple(
            tuple(dataclasses.replace(template, uri=it.assets[asset].get_absolute_href()
                                      or it.assets[asset].href)
                  for it in group if asset in it.assets)
            for group in groups)
    return _SmallCube(geobox, native, cfg, layers, RetryingRioDriver().capture_env(),
                      read_retries, retry_delay)


def _band_attrs(cfg: RasterLoadParams) -> dict[str, Any]:
    """A band's attributes as odc-stac sets them: its metadata's, plus ``nodata``."""
    attrs = {**cfg.meta.attrs} if cfg.meta is not None else {}
    if cfg.fill_value is not None:
        attrs["nodata"] = cfg.fill_value
    return attrs


def _read_small_cube(plan: _SmallCube) -> dict[str, np.ndarray]:
    """Every band of a small cube on its output grid, read by one call (the cube's task).

    Each file is read with :class:`xsits.reader.CogDriver` (all the feature's windows fetched
    at once) and the items of one date are fused by odc-loader's ``_fill_nd_slice``, as
    ``odc.stac.load`` does (a date of one item is read straight into the cube: the same
    pixels); a cube read on its native grid is then warped by one index
    lookup (:func:`nearest_index`). No dask graph per date and band.
    """
    read_gbox = plan.native or plan.geobox
    driver = CogDriver([Source(src.uri, src.band, plan.cfg[b].resampling == "nearest")
                        for b, layers in plan.layers.items() for layer in layers
                        for src in layer], read_gbox, retries=plan.retries, delay=plan.delay,
                       fallback=RetryingRioDriver(plan.retries, plan.delay))
    state = driver.new_load(read_gbox)
    out: dict[str, np.ndarray] = {}
    with driver.restore_env(plan.env, state) as ctx:
        for band, layers in plan.layers.items():
            cfg = plan.cfg[band]
            empty = resolve_dst_fill_value(np.dtype(cfg.dtype), cfg,
                                           resolve_src_nodata(cfg.fill_value, cfg))
            dst = np.full((len(layers), *read_gbox.shape.yx), empty, dtype=cfg.dtype)
            for t, layer in enumerate(layers):
                if len(layer) == 1 and cfg.fuser_fqn is None:  # nothing to fuse: read in place
                    driver.open(layer[0], ctx).read(cfg, read_gbox, dst=dst[t])
                else:
                    _fill_nd_slice([driver.open(src, ctx) for src in layer], read_gbox, cfg,
                                   dst=dst[t])
            if plan.native is not None:
                index = _nearest_index_cached(plan.native, plan.geobox)
                fill = _gather_fill(_band_attrs(cfg), dst.dtype)
                dst = _gather(dst, index, fill).reshape(len(layers), *index.shape)
            out[band] = dst
    driver.finalise_load(state)
    return out


def _lazy_small_cube(plan: _SmallCube, times: list[dt.datetime]) -> xr.Dataset:
    """The lazy Dataset of a small cube: one read task, one chunk per band."""
    import dask
    import dask.array as da

    token = uuid.uuid4().hex
    # the plan as one opaque value: dask would walk every source of every date otherwise
    task = dask.delayed(_read_small_cube, pure=False)(
        dask.delayed(plan, name=f"xsits-plan-{token}", traverse=False),
        dask_key_name=f"xsits-read-{token}")
    shape = (len(times), *plan.geobox.shape.yx)
    coords = xr_coords(plan.geobox, crs_coord_name="spatial_ref")
    coords["time"] = xr.DataArray(times, dims=("time",))
    data = {}
    for band, cfg in plan.cfg.items():
        attrs = _band_attrs(cfg)
        if plan.native is not None:  # as the warped cube of odc-stac's graph
            attrs["_FillValue"] = _gather_fill(attrs, np.dtype(cfg.dtype))
        arr = da.from_delayed(task[band], shape, dtype=cfg.dtype, name=f"{band}-{token}")
        data[band] = xr.DataArray(arr, dims=("time", "y", "x"), attrs=attrs)
        if plan.native is None:  # as odc-stac's own variables
            data[band].encoding["grid_mapping"] = "spatial_ref"
    return xr.Dataset(data, coords=coords)


def load_cube(
    items: Sequence[pystac.Item],
    geobox: GeoBox,
    *,
    bands: Sequence[str],
    chunks: Mapping[str, int] | None = None,
    resampling: str | Mapping[str, str] = "nearest",
    attrs: Mapping[str, Any] | None = None,
    read_retries: int = READ_RETRIES,
    retry_delay: float = RETRY_DELAY,
    small_cube: bool = True,
) -> xr.Dataset:
    """Lazily load ``items`` onto ``geobox`` as one cube (``groupby="solar_day"``).

    Parameters
    ----------
    items
        STAC items covering the geobox (from :func:`xsits.search`).
    geobox
        Output pixel grid (from :func:`xsits.grid.feature_geobox`).
    bands
        Asset keys to load; each becomes a data variable.
    chunks
        Dask chunks. Default :data:`CHUNKS`: one band, up to 2048x2048 pixels and
        :data:`CHUNK_BYTES` per chunk (every date of a small cube in one chunk).
        A small cube (every date of a band in one such chunk, nearest resampling) is read
        by a single task, :func:`_read_small_cube`; any other cube by odc-stac's graph of
        one task per chunk.
    resampling
        Resampling when the output grid is not the native one. Default ``"nearest"``
        (``SCL`` is always nearest).
    attrs
        Provenance attributes to set.
    read_retries, retry_delay
        Retries of a failed chunk read and the first backoff (see :class:`xsits.reader.CogDriver`).
    small_cube
        Read a small cube with one task (default). ``False``: always odc-stac's graph (the
        same values; for comparisons).

    Returns
    -------
    xarray.Dataset
        Dims ``(time, y, x)``, lazy, with per-date coordinates (see :data:`TIME_PROPERTIES`).

    Examples
    --------
    >>> cube = load_cube(items, geobox, bands=["B04", "SCL"])  # doctest: +SKIP
    """
    ((lon, _),) = geobox.extent.centroid.to_crs("EPSG:4326").points
    groups = _solar_groups(items, lon)
    native = _native_geobox(items, geobox, bands)
    read_gbox = native or geobox
    if isinstance(resampling, str):
        resampling = {"*": resampling, "SCL": "nearest", "scl": "nearest"}
    ny, nx = (min(n, CHUNKS[d]) for n, d in zip(read_gbox.shape.yx, "yx", strict=True))
    per_chunk = max(1, min(len(groups), CHUNK_BYTES // (2 * ny * nx)))  # dates per chunk
    if chunks is None and small_cube and (ny, nx) == read_gbox.shape.yx and \
            per_chunk == len(groups) and \
            all(resampling.get(b, resampling["*"]) == "nearest" for b in bands):
        try:
            small = _small_cube(items, groups, geobox, native, bands, resampling,
                                read_retries, retry_delay)
        except Exception as err:
            raise LoadError(f"cannot build the cube: {err}") from err
        if small is not None:
            ds = _lazy_small_cube(small, [_nominal_datetime(g[0]) for g in groups])
            return _finish_cube(ds, groups, attrs)
    if chunks is None:
        chunks = {**CHUNKS, "time": per_chunk}
    sources = [Source(it.assets[b].get_absolute_href() or it.assets[b].href, 1,
                      resampling.get(b, resampling["*"]) == "nearest")
               for it in items for b in bands if b in it.assets]
    driver = CogDriver(sources, read_gbox, retries=read_retries, delay=retry_delay,
                       fallback=RetryingRioDriver(read_retries, retry_delay))
    try:
        ds = odc.stac.load(
            items,
            bands=list(bands),
            geobox=read_gbox,
            groupby="solar_day",
            chunks=dict(chunks),
            resampling=dict(resampling),
            fail_on_error=True,
            driver=driver,
        )
    except Exception as err:
        raise LoadError(f"cannot build the cube: {err}") from err
    if ds.sizes["time"] != len(groups):  # pragma: no cover - guards against odc-stac changes
        raise LoadError("odc-stac grouped the items differently than expected")
    if native is not None:  # the small native cube warped once to the output grid
        ds = xr.Dataset(
            {name: _warp(var, native, geobox, resampling.get(name, resampling["*"]))
             for name, var in ds.data_vars.items()},
            attrs=ds.attrs,
        )
    return _finish_cube(ds, groups, attrs)


def _finish_cube(ds: xr.Dataset, groups: list[list[pystac.Item]],
                 attrs: Mapping[str, Any] | None) -> xr.Dataset:
    """Per-date coordinates, a ``nodata`` attribute on every band and the cube's attributes."""
    ds = ds.assign_coords(_time_coords(groups))
    for name in ds.data_vars:
        ds[name].attrs.setdefault("nodata", 0)
    ds.attrs.update(attrs or {})
    return ds


def open_cubes(
    aoi: gpd.GeoDataFrame | str,
    *,
    stac: str = "planetary-computer",
    collection: str = "sentinel-2-l2a",
    bands: Sequence[str] = ("B03", "B04", "B08", "SCL"),
    start: str = "2024-01-01",
    end: str = "2024-12-31",
    query: Mapping[str, Any] | None = None,
    filter: Mapping[str, Any] | str | None = None,
    max_cloud: float | None = None,
    resolution: float = 10.0,
    crs: str | int = "utm",
    mode: str = "image",
    buffer: float = 0.0,
    size: tuple[int, int] | int = (10, 10),
    chunks: Mapping[str, int] | None = None,
    resampling: str | Mapping[str, str] = "nearest",
    id_column: str | None = None,
    search_result: SearchResult | None = None,
    client=None,
    read_retries: int = READ_RETRIES,
    retry_delay: float = RETRY_DELAY,
    on_group: Callable[[Cubes], Any] | None = None,
) -> Cubes:
    """Lazy dask-backed cubes ``{feature_id: xr.Dataset}``, one per feature, from one call.

    Parameters
    ----------
    aoi
        GeoDataFrame from :func:`xsits.read_aoi`, or a path handed to it.
    stac, collection, bands, start, end, query, filter, max_cloud
        The search: see :class:`xsits.StacQuery` (``stac`` is a preset, an API URL or a local
        ItemCollection / catalog path).
    resolution, crs, mode, buffer, size
        The grid: see :class:`xsits.GridSpec` (``size`` may be one int for a square patch).
    chunks, resampling
        Passed on to :func:`load_cube`.
    id_column
        When ``aoi`` is a path: the id column for :func:`xsits.read_aoi`.
    search_result
        Reuse an earlier :func:`xsits.search` result (e.g. Intake's ``discover()``).
    client
        A pystac-client ``Client`` to reuse.
    read_retries, retry_delay
        Retries of a failed chunk read and the first backoff (see :class:`xsits.reader.CogDriver`).
    on_group
        Called with the :class:`Cubes` of each group of nearby features as soon as its search
        returns and its cubes are built, while later groups still search: a consumer in
        another thread can start computing them (:func:`xsits.compute_all` does).

    Returns
    -------
    Cubes
        A dict of lazy Datasets; ``.missing`` says why a feature has no cube.

    Examples
    --------
    >>> import xsits
    >>> aoi = xsits.read_aoi("notebooks/data/rand_pts.geojson", id_column="pt_id")  # doctest: +SKIP
    >>> cubes = xsits.open_cubes(aoi, stac="planetary-computer", start="2024-01-01",
    ...                          end="2025-02-01", max_cloud=10, resolution=20,
    ...                          crs="EPSG:3035", mode="patch", size=(10, 10))  # doctest: +SKIP
    >>> cubes["7"]  # doctest: +SKIP
    """
    if not isinstance(aoi, gpd.GeoDataFrame):
        aoi = read_aoi(aoi, id_column=id_column)
    if isinstance(size, int):
        size = (size, size)
    q = StacQuery(stac=stac, collection=collection, start=start, end=end, bands=tuple(bands),
                  query=query, filter=filter, max_cloud=max_cloud)
    if search_result is not None:
        q = search_result.query
    grid = GridSpec(crs=crs, resolution=resolution, mode=mode, buffer=buffer, size=tuple(size))
    geoboxes = feature_geoboxes(aoi, grid)
    configure_gdal()
    base = {
        "collection": q.collection,
        "stac": q.endpoint,
        "query": q.describe(),
        "mode": grid.mode,
        "resolution": float(grid.resolution),
        "start": q.start,
        "end": q.end,
    }
    geoms = dict(zip(aoi["feature_id"], aoi.geometry, strict=True))
    # each group's cubes are built as soon as its search returns, while others still search
    parts = [search_result] if search_result is not None else iter_search(
        aoi, q, footprints=footprints_4326(geoboxes), client=client)
    built: dict[str, xr.Dataset] = {}
    missing: dict[str, str] = {}
    done: list[SearchResult] = []
    with relaxed_gc(), single_threaded_blas():  # see their docstrings
        for part in parts:
            done.append(part)
            missing.update(part.missing)
            group = Cubes(missing=dict(part.missing), search=part)
            for fid, items in part.items.items():
                if fid not in geoms:
                    continue
                gbox = geoboxes[fid]
                cx, cy = feature_centre(geoms[fid], aoi.crs, gbox.crs)
                attrs = {**base, "feature_id": fid, "crs": str(gbox.crs), "center_x": cx,
                         "center_y": cy}
                if grid.mode == "patch":
                    attrs["patch_size"] = f"{grid.size[0]}x{grid.size[1]}"
                try:
                    cube = load_cube(items, gbox, bands=list(q.assets.values()), chunks=chunks,
                                     resampling=resampling, attrs=attrs,
                                     read_retries=read_retries, retry_delay=retry_delay)
                except LoadError as err:
                    missing[fid] = group.missing[fid] = f"feature {fid!r}: {err}"
                    continue
                built[fid] = group[fid] = cube.rename({a: b for b, a in q.assets.items()
                                                       if a != b})
            if on_group is not None:
                on_group(group)
    result = search_result if search_result is not None else merge_results(done, q)
    cubes = Cubes(missing={}, search=result)
    for fid in geoms:  # the AOI's order
        if fid in built:
            cubes[fid] = built[fid]
        else:
            cubes.missing[fid] = missing.get(fid, "no item found")
    return cubes
