"""The fast reader: reads of proven GeoTIFF layouts, equal to GDAL's, without GDAL.

For a read on its allow-list (:func:`xsits.io.tiff.fast_refusal`, :func:`plan_read`), each
one proven equal to GDAL by ``tests/test_conformance.py``: a tiled or striped GeoTIFF,
uncompressed / DEFLATE / LZW / ZSTD, predictor 1-3, integer or float samples, pixel or band
interleave, no mask or alpha band, EPSG georeferencing; nearest resampling (a warp only when
the file's and the output's nodata agree, see :func:`warp_nodata_ok`). Bytes are fetched
many files at a time (:mod:`xsits.io.fetch`), headers parsed (:mod:`xsits.io.tiff`) and
tiles decoded by tifffile / imagecodecs. A read on the file's own lattice is a window copy;
any other is a lookup through the source pixel GDAL's own nearest warp picks for each output
pixel (:func:`_gdal_index`), computed once per grid pair.

Owns: read plans (:class:`Plan`, :func:`plan_read`: the level and windows odc-loader would
choose), the byte ranges of a plan (:func:`block_ranges`), decoding tiles, the pixels of a
read (:func:`fast_read`, :func:`read_pixels`) and this process's plan, index and tile caches
(:func:`clear`).
Must not: read through GDAL or implement odc-loader's driver (:mod:`xsits.io.reader`),
choose output grids, dtypes or nodata.

Examples
--------
>>> pick_overview(4, [2, 4, 8])
1
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
from odc.geo.geobox import GeoBox
from odc.geo.overlap import compute_reproject_roi
from odc.geo.roi import roi_is_empty, roi_shape
from odc.loader import (
    RasterLoadParams,
    RasterSource,
    resolve_dst_dtype,
    resolve_dst_nodata,
    resolve_src_nodata,
)
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import Resampling, reproject

from xsits._common import ContextThreadPool, Lru
from xsits.io import fetch
from xsits.io.tiff import Header, Level
from xsits.options import get_options

__all__ = ["FAST_WARP_PIXELS", "Plan", "block_ranges", "clear", "exact_cast", "fast_read",
           "grid_key", "nodata_mask", "pick_overview", "plan_read", "read_pixels",
           "warp_nodata_ok"]

#: Output windows larger than this (pixels) are warped by GDAL directly.
FAST_WARP_PIXELS = 1024 * 1024

# Caches of this process (features of one tile share grids, plans and tiles):
_PLANS: Lru[Any] = Lru(keep=4096)  # read plans, by (file grids, output grid)
_INDICES: Lru[Any] = Lru(keep=4096)  # GDAL's nearest pick, by grid pair
_TILES: Lru[np.ndarray] = Lru(  # decoded tiles, by (href, level, segment)
    max_bytes=lambda: get_options().cache_bytes // 2)
# pyproj makes a transformer per thread (~50 ms a CRS pair): plans are made on one thread
_planner = fetch.per_process(lambda: ContextThreadPool(1, thread_name_prefix="xsits-plan"))
# tiles of one read are decoded side by side, one thread per core
_decoder = fetch.per_process(lambda: ContextThreadPool(max(2, os.cpu_count() or 2),
                                                        thread_name_prefix="xsits-decode"))


def clear() -> None:
    """Forget this process's read plans, GDAL nearest indices and decoded tiles.

    Examples
    --------
    >>> clear()
    """
    for cache in (_PLANS, _INDICES, _TILES):
        cache.clear()


@dataclass(frozen=True)
class Plan:
    """How the fast reader answers one read: which level, which source window, how."""

    level: int
    roi_dst: tuple[slice, slice]
    window: tuple[slice, slice]  # source pixels read, on ``level``
    index: np.ndarray | None  # per output pixel of roi_dst: flat position in window, or -1


def pick_overview(read_shrink: int, factors: Sequence[int]) -> int | None:
    """The overview odc-loader reads for a shrink factor (its rule, on rasterio's factors)."""
    if not factors or read_shrink < factors[0]:
        return None
    best = 0
    for i, f in enumerate(factors):
        if f > read_shrink:
            break
        best = i
    return best


def plan_read(head: Header, cfg: RasterLoadParams, dst_geobox: GeoBox) -> Plan | None:
    """The fast reader's plan for one read, or None when GDAL must do it.

    The level and the output window are odc-loader's choice (``compute_reproject_roi`` with
    its tolerance; an overview when the output is coarser). A read on the level's own lattice
    is a window copy; any other nearest read looks up the source pixel that GDAL's nearest
    warp picks for each output pixel (:func:`_gdal_index`).

    Examples
    --------
    >>> import tempfile, numpy as np, rasterio
    >>> from rasterio.transform import from_origin
    >>> from odc.loader import RasterLoadParams
    >>> path = tempfile.mktemp(suffix=".tif")
    >>> with rasterio.open(path, "w", driver="COG", width=300, height=300, count=1,
    ...                    dtype="uint16", crs="EPSG:32632", nodata=0,
    ...                    transform=from_origin(600000, 5600000, 10, 10)) as f:
    ...     f.write(np.ones((1, 300, 300), "uint16"))
    >>> from xsits.io.tiff import headers
    >>> (h,) = headers([path])
    >>> window = h.levels[0].geobox[10:20, 30:50]
    >>> p = plan_read(h, RasterLoadParams(dtype="uint16"), window)
    >>> p.level, p.window, p.index is None
    (0, (slice(10, 20, None), slice(30, 50, None)), True)
    """
    if head.refusal is not None or not cfg.nearest:
        return None
    key = (*(grid_key(lv.geobox) for lv in head.levels), grid_key(dst_geobox),
           cfg.use_overviews)
    hit = _PLANS.get(key)
    if hit is None:
        hit = _PLANS.put(key, _planner().submit(_plan_read, head, cfg, dst_geobox).result()
                         or False)
    return hit or None


def grid_key(gbox: GeoBox) -> tuple:
    """A cheap cache key of a grid (hashing a GeoBox writes its CRS as WKT every time)."""
    return str(gbox.crs), gbox.shape.yx, tuple(gbox.affine)[:6]


def _plan_read(head: Header, cfg: RasterLoadParams, dst_geobox: GeoBox) -> Plan | None:
    base = head.levels[0].geobox
    rr = compute_reproject_roi(base, dst_geobox, ttol=0.9 if cfg.nearest else 0.05)
    roi_dst = rr.roi_dst
    level = 0
    if cfg.use_overviews and rr.read_shrink > 1:
        ovr = pick_overview(rr.read_shrink, head.factors)
        level = 0 if ovr is None else ovr + 1
    if roi_is_empty(roi_dst) or roi_is_empty(rr.roi_src):
        return Plan(level, roi_dst, (slice(0, 0), slice(0, 0)), None)
    if level == 0 and rr.paste_ok and rr.read_shrink == 1:
        return Plan(0, roi_dst, tuple(rr.roi_src), None)
    if math.prod(roi_shape(roi_dst)) > FAST_WARP_PIXELS:
        return None
    found = _gdal_index(head.levels[level].geobox, dst_geobox[roi_dst])
    if found is None:
        return None
    window, index = found
    return Plan(level, roi_dst, window, index)


def _gdal_index(src: GeoBox, dst: GeoBox) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """For each pixel of ``dst``, the ``src`` pixel GDAL's nearest warp takes (or -1).

    GDAL itself warps a raster of source positions (a window of ``src`` with a margin) onto
    ``dst``, so every output pixel comes from exactly the source pixel a direct GDAL warp of
    the file would take. Cached per grid pair.
    """
    key = (grid_key(src), grid_key(dst))
    hit = _INDICES.get(key)
    if hit is not None:
        return hit

    (h, w) = src.shape.yx
    rr = compute_reproject_roi(src, dst, padding=0)
    if roi_is_empty(rr.roi_src):
        return None
    margin = 4
    while True:
        ys, xs = rr.roi_src
        y0, y1 = max(0, ys.start - margin), min(h, ys.stop + margin)
        x0, x1 = max(0, xs.start - margin), min(w, xs.stop + margin)
        positions = np.arange((y1 - y0) * (x1 - x0), dtype="int32").reshape(y1 - y0, x1 - x0)
        index = np.full(dst.shape.yx, -1, dtype="int32")
        with warnings.catch_warnings():  # rasterio: "no geotransform" of its in-memory copy
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            reproject(positions, index, src_transform=src[y0:y1, x0:x1].transform,
                      src_crs=str(src.crs), src_nodata=None, dst_transform=dst.transform,
                      dst_crs=str(dst.crs), dst_nodata=-1, resampling=Resampling.nearest)
        rows, cols = np.divmod(index[index >= 0], x1 - x0)
        touches = rows.size and ((y0 > 0 and rows.min() == 0) or
                                 (y1 < h and rows.max() == y1 - y0 - 1) or
                                 (x0 > 0 and cols.min() == 0) or
                                 (x1 < w and cols.max() == x1 - x0 - 1))
        if not touches:
            break
        if margin > 256:
            return None
        margin *= 4  # the window was too tight for GDAL's choice: widen it and warp again
    found = ((slice(y0, y1), slice(x0, x1)), index)
    return _INDICES.put(key, found)


def _blocks(level: Level, window: tuple[slice, slice]) -> list[tuple[int, int]]:
    """``(row, col)`` of the blocks (tiles or strips) that ``window`` touches."""
    (bh, bw), (ys, xs) = level.block, window
    return [(r, c) for r in range(ys.start // bh, -(-ys.stop // bh))
            for c in range(xs.start // bw, -(-xs.stop // bw))]


def _segment(head: Header, level: Level, r: int, c: int, band: int) -> int:
    down, across = level.grid
    plane = band - 1 if head.planar else 0
    return plane * down * across + r * across + c


def block_ranges(head: Header, plan: Plan, band: int) -> list[tuple[str, int, int]]:
    """The byte ranges ``(uri, start, end)`` a plan needs.

    Examples
    --------
    >>> block_ranges(Header("a.tif", "uint8", 1, False, None, (), "x"),
    ...              Plan(0, (slice(0, 0), slice(0, 0)), (slice(0, 0), slice(0, 0)), None), 1)
    []
    """
    if roi_is_empty(plan.window):
        return []
    level = head.levels[plan.level]
    out = []
    for r, c in _blocks(level, plan.window):
        k = _segment(head, level, r, c, band)
        start = int(level.offsets[k])
        out.append((head.uri, start, start + int(level.counts[k])))
    return out


def _decode(head: Header, level: int, k: int, data: Future) -> np.ndarray:
    """Tile ``k`` of ``level`` decoded from its fetched bytes, and cached."""
    segment, _, _ = head.levels[level].page.decode(bytes(data.result()), k)
    return _TILES.put((head.uri, level, k), segment.reshape(segment.shape[-3:]),  # rows, cols,
                      segment.nbytes)  # samples


def _tiles(head: Header, level: int, segments: Sequence[int]) -> dict[int, np.ndarray]:
    """The decoded tiles ``segments`` of ``level``: cached, or fetched at once and decoded.

    Several tiles are decoded side by side (imagecodecs releases the GIL while it inflates).
    """
    lv = head.levels[level]
    tiles = {k: _TILES.get((head.uri, level, k)) for k in segments}
    futures = {k: fetch.submit(head.uri, int(lv.offsets[k]), int(lv.offsets[k] + lv.counts[k]))
               for k, tile in tiles.items() if tile is None}
    if len(futures) > 1:
        pool = _decoder()
        decoded = {k: pool.submit(_decode, head, level, k, fut) for k, fut in futures.items()}
        tiles.update({k: fut.result() for k, fut in decoded.items()})
    else:
        tiles.update({k: _decode(head, level, k, fut) for k, fut in futures.items()})
    return tiles


def _window_pixels(head: Header, plan: Plan, band: int) -> np.ndarray:
    """The source window of a plan, decoded (native byte order)."""
    level = head.levels[plan.level]
    ys, xs = plan.window
    out = np.empty((ys.stop - ys.start, xs.stop - xs.start), dtype=head.dtype)
    (bh, bw) = level.block
    blocks = _blocks(level, plan.window)
    tiles = _tiles(head, plan.level, [_segment(head, level, r, c, band) for r, c in blocks])
    sample = 0 if head.planar else band - 1
    for r, c in blocks:
        tile = tiles[_segment(head, level, r, c, band)]
        ty, tx = r * bh, c * bw
        y0, y1 = max(ys.start, ty), min(ys.stop, ty + bh, level.geobox.shape.y)
        x0, x1 = max(xs.start, tx), min(xs.stop, tx + bw, level.geobox.shape.x)
        out[y0 - ys.start:y1 - ys.start, x0 - xs.start:x1 - xs.start] = \
            tile[y0 - ty:y1 - ty, x0 - tx:x1 - tx, sample]
    return out


def read_pixels(head: Header, level: int, band: int, rows: np.ndarray,
                cols: np.ndarray) -> np.ndarray:
    """The pixels at ``(rows, cols)`` of a file's ``level``, each block fetched and decoded once.

    What :func:`xsits.cube.points.read_points` reads for many points at once (native byte order,
    the file's dtype).

    Examples
    --------
    >>> import tempfile, rasterio
    >>> from rasterio.transform import from_origin
    >>> path = tempfile.mktemp(suffix=".tif")
    >>> with rasterio.open(path, "w", driver="COG", width=600, height=600, count=1,
    ...                    dtype="uint16", crs="EPSG:32632", blocksize=256,
    ...                    transform=from_origin(600000, 5600000, 10, 10)) as f:
    ...     f.write(np.arange(360000, dtype="uint32").astype("uint16").reshape(1, 600, 600))
    >>> from xsits.io.tiff import headers
    >>> (h,) = headers([path])
    >>> read_pixels(h, 0, 1, np.array([0, 1, 599]), np.array([5, 0, 599])).tolist()
    [5, 600, 32319]
    """
    lv = head.levels[level]
    bh, bw = lv.block
    down, across = lv.grid
    plane = (band - 1) * down * across if head.planar else 0
    segs = plane + (rows // bh) * across + cols // bw
    out = np.empty(rows.shape, dtype=head.dtype)
    if not rows.size:
        return out
    flat = segs.reshape(-1)
    order = np.argsort(flat, kind="stable")
    ordered = flat[order]
    uniq, starts = np.unique(ordered, return_index=True)
    tiles = _tiles(head, level, [int(k) for k in uniq])
    sample = 0 if head.planar else band - 1
    rr, cc, res = rows.reshape(-1), cols.reshape(-1), out.reshape(-1)
    for k, a, b in zip(uniq, starts, [*starts[1:], len(order)], strict=True):
        at = order[a:b]
        k0 = int(k) - plane
        res[at] = tiles[int(k)][rr[at] - (k0 // across) * bh, cc[at] - (k0 % across) * bw,
                                sample]
    return out


def nodata_mask(pix: np.ndarray, nodata: float | None) -> np.ndarray:
    """Where ``pix`` is nodata (NaN counts for floats), as odc-loader's fuser sees it.

    Examples
    --------
    >>> nodata_mask(np.array([0, 5], "uint16"), 0).tolist()
    [True, False]
    """
    if pix.dtype.kind == "f":
        return np.isnan(pix) if nodata is None or math.isnan(nodata) else \
            np.isnan(pix) | (pix == nodata)
    return np.zeros(pix.shape, bool) if nodata is None else pix == nodata


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return (math.isnan(a) and math.isnan(b)) or a == b


def exact_cast(src: np.dtype, dst: np.dtype) -> bool:
    """Whether every ``src`` value converts to ``dst`` as GDAL converts it (no clamping)."""
    return src == dst or np.can_cast(src, dst, "safe")


def warp_nodata_ok(head: Header, cfg: RasterLoadParams) -> bool:
    """Whether a warped read's nodata pair is one the fast reader is proven on.

    GDAL's nearest warp (as odc's rasterio reader calls it) copies source nodata pixels as
    values when the output nodata is 0 and the source's is another value (e.g. STAC's
    ``raster:bands`` nodata 0 for a file whose nodata is 65535). Served: no source nodata,
    the same nodata, or a NaN output nodata; any other pair goes to GDAL.
    """
    src_nodata = resolve_src_nodata(head.nodata, cfg)
    dst_nodata = resolve_dst_nodata(resolve_dst_dtype(head.dtype, cfg), cfg, src_nodata)
    return src_nodata is None or dst_nodata is None or _same(src_nodata, dst_nodata) or \
        math.isnan(dst_nodata)


def fast_read(head: Header, plan: Plan, src: RasterSource, cfg: RasterLoadParams,
              dst_geobox: GeoBox, dst: np.ndarray | None) -> tuple[tuple[slice, slice],
                                                                 np.ndarray]:
    """Pixels of one read by the fast reader, as odc-loader's rasterio reader writes them."""
    dst_dtype = resolve_dst_dtype(head.dtype, cfg)
    src_nodata = resolve_src_nodata(head.nodata, cfg)
    dst_nodata = resolve_dst_nodata(dst_dtype, cfg, src_nodata)
    roi = plan.roi_dst
    out = dst[roi] if dst is not None else np.empty(roi_shape(roi), dtype=dst_dtype)
    if roi_is_empty(roi):
        return roi, out
    if roi_is_empty(plan.window):
        if dst_nodata is not None:
            np.copyto(out, dst_nodata)
        return roi, out
    pixels = _window_pixels(head, plan, src.band)
    if plan.index is None:  # a window copy, then nodata remapped (odc's paste)
        out[...] = pixels
        if dst_nodata is not None and not _same(src_nodata, dst_nodata):
            np.copyto(out, dst_nodata, where=nodata_mask(out, src_nodata))
        return roi, out
    # GDAL's nearest warp (INIT_DEST=NO_DATA): the output starts as nodata, or 0 without one;
    # then valid source pixels are copied
    np.copyto(out, 0 if dst_nodata is None else dst_nodata)
    hit = plan.index >= 0
    values = pixels.reshape(-1)[plan.index[hit]]
    if src_nodata is not None:
        keep = ~nodata_mask(values, src_nodata)
        hit[hit] = keep
        values = values[keep]
    out[hit] = values
    return roi, out
