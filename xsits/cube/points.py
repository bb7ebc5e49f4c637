"""Point reads: the windows of many points of one search group, each COG block read once.

Owns: :func:`read_points`, the pixels that ``open_cubes(mode="patch", size=(w, w))`` would
give every point of a search group, without a cube per point: for each file, the source
pixel of every output pixel of every window at once (GDAL's nearest pick), each block
fetched and decoded once (:func:`xsits.io.fast.read_pixels`), the items of a date fused as
odc-loader fuses them (the first valid value in time, id order), the dates grouped by
:mod:`xsits.cube.plan`. Points with the same dates come back side by side in one array.

How a pick is made. odc-loader reads a file at the overview its ``compute_reproject_roi``
picks (the read scale at the window's centre) and GDAL's nearest warp takes, for each output
pixel, the source pixel that contains the exact transform of the pixel's centre. Both are
computed here for all points at once: the scale by central differences (odc-geo's
transformer, as odc-geo estimates it), the centres by GDAL's own PROJ
(``rasterio.warp.transform``). Where that cannot be trusted to the last bit (a centre within
:data:`EDGE` of a pixel edge, a scale within :data:`SCALE_GUARD` of odc-loader's
threshold, a window near the file's edge, or a file grid in another CRS than the points
with a window wider than :data:`MAX_WINDOW`), the point is planned exactly by
:func:`xsits.io.fast.plan_read`, as its cube's read would be. ``tests/test_points.py``
proves the values equal to the cubes'.

Must not: search, choose grids or dates (:mod:`xsits.cube.plan`), decode bytes
(:mod:`xsits.io.fast`), or serve what the fast reader does not (the caller then reads cubes).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyproj
import shapely
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.overlap import get_scale_from_linear_transform
from odc.loader import resolve_dst_dtype, resolve_dst_nodata, resolve_src_nodata
from rasterio.warp import transform

from xsits.cube.plan import ItemsPlan, consistent_groups, group_dates, solar_lon
from xsits.io import fast, fetch, signing
from xsits.io.tiff import Header, headers
from xsits.options import get_options

#: A centre closer than this (in source pixels) to a pixel edge is picked exactly.
EDGE = 1e-6
#: A read scale closer than this to odc-loader's overview threshold is planned exactly.
SCALE_GUARD = 1e-5
#: Widest window picked vectorised across CRSs (GDAL transforms rows of up to 5 pixels
#: exactly; wider rows it may interpolate).
MAX_WINDOW = 5
#: Source pixels of margin a window needs from the file's edge to be picked vectorised.
MARGIN = 2


@dataclass(frozen=True)
class Windows:
    """``n`` square windows of ``size`` pixels on one output grid (CRS, resolution).

    Attributes
    ----------
    crs
        The output CRS (an odc-geo CRS).
    resolution
        The pixel size.
    size
        Pixels per side.
    x0, y0
        Each window's top-left corner (``n`` values each).
    """

    crs: Any
    resolution: float
    size: int
    x0: np.ndarray
    y0: np.ndarray

    @classmethod
    def of(cls, geoboxes: Sequence[GeoBox]) -> Windows:
        """The windows of patch geoboxes (all square, of one size, grid and CRS)."""
        first = geoboxes[0]
        return cls(first.crs, float(first.affine.a), first.shape.x,
                   np.array([g.affine.c for g in geoboxes], dtype="float64"),
                   np.array([g.affine.f for g in geoboxes], dtype="float64"))

    def __len__(self) -> int:
        return len(self.x0)

    def geobox(self, k: int) -> GeoBox:
        """The ``k``-th window as a GeoBox."""
        r = self.resolution
        return GeoBox((self.size, self.size), Affine(r, 0.0, float(self.x0[k]), 0.0, -r,
                                                     float(self.y0[k])), self.crs)

    def centres(self, ks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(n, size, size)`` x and y of the pixel centres of windows ``ks`` (as GDAL)."""
        half = np.arange(self.size, dtype="float64") + 0.5
        x = self.x0[ks][:, None, None] + half[None, None, :] * self.resolution
        y = self.y0[ks][:, None, None] - half[None, :, None] * self.resolution
        return np.broadcast_to(x, (len(ks), self.size, self.size)), \
            np.broadcast_to(y, (len(ks), self.size, self.size))

    def boxes(self) -> np.ndarray:
        """The windows as shapely boxes (for footprint tests)."""
        span = self.size * self.resolution
        return shapely.box(self.x0, self.y0 - span, self.x0 + span, self.y0)


@dataclass(frozen=True)
class Picks:
    """Per window: the file level read and, per output pixel, its source pixel (or -1)."""

    level: np.ndarray  # (n,)
    rows: np.ndarray  # (n, size, size)
    cols: np.ndarray
    exact: int = 0  # windows planned one by one (fast.plan_read)


@functools.lru_cache(maxsize=64)
def _transformer_of(src: str, dst: str, thread: int) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(src, dst, always_xy=True)


def _transformer(src: str, dst: str) -> pyproj.Transformer:
    """The pyproj transformer between two CRSs, made once per thread (~50 ms each)."""
    return _transformer_of(src, dst, threading.get_ident())


def _transform(src_crs: Any, dst_crs: Any, x: np.ndarray,
               y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x, y`` from ``src_crs`` to ``dst_crs`` with GDAL's PROJ (as GDAL's warp does)."""
    if str(src_crs) == str(dst_crs):
        return x, y
    xx, yy = transform(str(src_crs), str(dst_crs), x.reshape(-1), y.reshape(-1))
    return np.asarray(xx).reshape(x.shape), np.asarray(yy).reshape(y.shape)


def _scales(windows: Windows, ks: np.ndarray, src: GeoBox) -> np.ndarray:
    """odc-geo's read scale (dst -> src pixels) at the centre of each window ``ks``."""
    c = windows.size / 2
    offsets = np.array([(0, 0), (-1, 0), (0, -1), (1, 0), (0, 1)], dtype="float64")
    r = windows.resolution
    x = windows.x0[ks][:, None] + (c + offsets[None, :, 0]) * r
    y = windows.y0[ks][:, None] - (c + offsets[None, :, 1]) * r
    sx, sy = _transformer(str(windows.crs), str(src.crs)).transform(x, y)
    inv = ~src.affine
    px = inv.a * sx + inv.b * sy + inv.c
    py = inv.d * sx + inv.e * sy + inv.f
    # odc-geo's scale of the local linear map (a b; d e): decompose_rws' S of its Cholesky
    # factor, in closed form for all windows at once
    a, b = (px[:, 3] - px[:, 1]) / 2, (px[:, 4] - px[:, 2]) / 2
    d, e = (py[:, 3] - py[:, 1]) / 2, (py[:, 4] - py[:, 2]) / 2
    p, q, r = a * a + d * d, a * b + d * e, b * b + e * e
    return np.minimum(np.sqrt(p), np.sqrt(r - q * q / p))


def _read_shrink(scale: np.ndarray) -> np.ndarray:
    """odc-geo's ``_pick_read_scale`` on many scales: an int, snapping up within 1e-3."""
    near = np.abs(scale - np.round(scale)) < 1e-3
    snapped = np.where(near, np.round(scale), np.floor(scale))
    return np.where(scale < 1, 1, snapped).astype(int)


def _level_of(shrink: int, factors: Sequence[int]) -> int:
    ovr = fast.pick_overview(shrink, factors)
    return 0 if ovr is None else ovr + 1


def _exact(head: Header, cfg: Any, windows: Windows, k: int) -> tuple[int, np.ndarray,
                                                                         np.ndarray] | None:
    """One window's picks as its cube's read makes them (:func:`xsits.io.fast.plan_read`)."""
    gbox = windows.geobox(k)
    plan = fast.plan_read(head, cfg, gbox)
    if plan is None:
        return None
    size = windows.size
    rows = np.full((size, size), -1, dtype="int64")
    cols = np.full((size, size), -1, dtype="int64")
    (ry, rx), (wy, wx) = plan.roi_dst, plan.window
    if wy.stop <= wy.start or wx.stop <= wx.start or ry.stop <= ry.start:
        return plan.level, rows, cols
    if plan.index is None:  # a window copy
        jj, ii = np.mgrid[ry, rx]
        rows[ry, rx] = wy.start + (jj - ry.start)
        cols[ry, rx] = wx.start + (ii - rx.start)
    else:
        hit = plan.index >= 0
        r, c = np.divmod(plan.index, wx.stop - wx.start)
        sub_r, sub_c = rows[ry, rx], cols[ry, rx]
        sub_r[hit], sub_c[hit] = wy.start + r[hit], wx.start + c[hit]
    return plan.level, rows, cols


def pick(head: Header, cfg: Any, windows: Windows, ks: np.ndarray) -> Picks | None:
    """The source pixels of windows ``ks`` in the file of ``head`` (see the module doc).

    Returns None when a window's read would not be the fast reader's (GDAL's then).

    Examples
    --------
    >>> import tempfile, rasterio
    >>> from rasterio.transform import from_origin
    >>> from odc.loader import RasterLoadParams
    >>> path = tempfile.mktemp(suffix=".tif")
    >>> with rasterio.open(path, "w", driver="COG", width=300, height=300, count=1,
    ...                    dtype="uint16", crs="EPSG:32632",
    ...                    transform=from_origin(600000, 5600000, 10, 10)) as f:
    ...     f.write(np.ones((1, 300, 300), "uint16"))
    >>> (h,) = headers([path])
    >>> w = Windows.of([h.levels[0].geobox[10:11, 30:31], h.levels[0].geobox[20:21, 5:6]])
    >>> p = pick(h, RasterLoadParams(dtype="uint16"), w, np.arange(2))
    >>> p.level.tolist(), p.rows.ravel().tolist(), p.cols.ravel().tolist()
    ([0, 0], [10, 20], [30, 5])
    """
    base = head.levels[0].geobox
    n, size = len(ks), windows.size
    same = str(base.crs) == str(windows.crs)
    exact = np.zeros(n, dtype=bool)
    if head.factors:
        if same:
            a = ~base.affine * Affine(windows.resolution, 0, 0, 0, -windows.resolution, 0)
            scale = np.full(n, min(get_scale_from_linear_transform(a).xy))
        else:
            scale = _scales(windows, ks, base)
        shrink = _read_shrink(scale)
        # odc-geo's read scale jumps from k - 1 to k at k - 1e-3 (its snapping tolerance)
        exact |= np.abs(scale + 1e-3 - np.round(scale + 1e-3)) < SCALE_GUARD
        levels = np.array([_level_of(int(s), head.factors) for s in shrink])
    else:
        levels = np.zeros(n, dtype=int)
    if not same and size > MAX_WINDOW:
        exact[:] = True
    rows = np.full((n, size, size), -1, dtype="int64")
    cols = np.full((n, size, size), -1, dtype="int64")
    x, y = windows.centres(ks)
    for level in np.unique(levels):
        at = np.flatnonzero(levels == level)
        lv = head.levels[int(level)].geobox
        sx, sy = _transform(windows.crs, lv.crs, x[at], y[at])
        inv = ~lv.affine
        px = inv.a * sx + inv.b * sy + inv.c
        py = inv.d * sx + inv.e * sy + inv.f
        fx, fy = np.floor(px), np.floor(py)
        h, w = lv.shape.yx
        edgy = ((np.minimum(px - fx, fx + 1 - px) < EDGE) |
                (np.minimum(py - fy, fy + 1 - py) < EDGE)).any(axis=(1, 2))
        inside = ((fx >= MARGIN) & (fx < w - MARGIN) & (fy >= MARGIN) &
                  (fy < h - MARGIN)).all(axis=(1, 2))
        outside = ((fx < -MARGIN) | (fx >= w + MARGIN) | (fy < -MARGIN) |
                   (fy >= h + MARGIN)).all(axis=(1, 2))
        exact[at] |= edgy | ~(inside | outside)
        ok = at[inside]
        rows[ok], cols[ok] = fy[inside].astype("int64"), fx[inside].astype("int64")
    for j in np.flatnonzero(exact):
        found = _exact(head, cfg, windows, int(ks[j]))
        if found is None:
            return None
        levels[j], rows[j], cols[j] = found
    return Picks(levels, rows, cols, int(exact.sum()))


@dataclass(frozen=True)
class Batch:
    """Points with the same dates, side by side: ``values[band]`` is ``(time, size, n*size)``.

    Attributes
    ----------
    points
        Indices of the points (into the ``windows`` read).
    groups
        The dates: per date, the item positions fused into it.
    values
        Per band, the windows along ``x`` in the order of ``points``.
    """

    points: tuple[int, ...]
    groups: tuple[tuple[int, ...], ...]
    values: Mapping[str, np.ndarray]


def _lons(windows: Windows) -> np.ndarray:
    """The longitude of each window's centre (odc-stac's solar-day longitude)."""
    half = windows.size * windows.resolution / 2
    lon, _ = _transformer(str(windows.crs), "EPSG:4326").transform(windows.x0 + half,
                                                                  windows.y0 - half)
    return np.asarray(lon, dtype="float64")


def _footprint_key(plan: ItemsPlan, i: int) -> tuple:
    """Items with equal keys have one footprint (odc-stac's: their image grid's)."""
    grids = [g for g in plan.parsed[i].geoboxes() if g.crs is not None]
    return fast.grid_key(grids[0]) if grids else (i,)


def _meets(plan: ItemsPlan, i: int, windows: Windows, ks: np.ndarray) -> np.ndarray:
    """Whether item ``i``'s footprint (odc-stac's ``safe_geometry``) meets windows ``ks``.

    That footprint is the item's image grid, reprojected: a window :data:`MARGIN` pixels
    inside or outside the grid meets it or not for sure; only the others are tested against
    the footprint itself (reprojected once per grid and CRS, :meth:`ItemsPlan.footprint`).
    """
    grids = [g for g in plan.parsed[i].geoboxes() if g.crs is not None]
    out = np.zeros(len(ks), dtype=bool)
    todo = np.ones(len(ks), dtype=bool)
    if grids:
        grid = grids[0]
        x, y = windows.centres(ks)
        corners = (x[:, [0, 0, -1, -1], [0, -1, 0, -1]], y[:, [0, 0, -1, -1], [0, -1, 0, -1]])
        cx, cy = _transform(windows.crs, grid.crs, *corners)
        inv = ~grid.affine
        px = inv.a * cx + inv.b * cy + inv.c
        py = inv.d * cx + inv.e * cy + inv.f
        h, w = grid.shape.yx
        m = MARGIN + windows.resolution / abs(grid.resolution.x)  # centres: half a pixel in
        inside = ((px >= m) & (px <= w - m) & (py >= m) & (py <= h - m)).all(axis=1)
        outside = (px < -m).all(axis=1) | (px > w + m).all(axis=1) | \
            (py < -m).all(axis=1) | (py > h + m).all(axis=1)
        out[inside] = True
        todo = ~(inside | outside)
    if todo.any():
        footprint = plan.footprint(i, windows.crs)
        if footprint is None:
            raise ValueError(f"item {plan.items[i].id!r} has no footprint")
        out[todo] = shapely.intersects(footprint.geom, windows.boxes()[ks[todo]])
    return out


def _serves(head: Any, src: Any, cfg: Any) -> bool:
    """Whether the fast reader serves this file and band as a nearest read."""
    if not isinstance(head, Header) or head.refusal is not None or not cfg.nearest:
        return False
    if not 1 <= src.band <= head.count:
        return False
    dst = resolve_dst_dtype(head.dtype, cfg)
    return fast.exact_cast(np.dtype(head.dtype), dst) and fast.warp_nodata_ok(head, cfg)


def read_points(plan: ItemsPlan, positions: Sequence[Sequence[int]],
                windows: Windows) -> list[Batch] | None:
    """Every window's pixels, dates and bands, as their cubes would give them.

    Parameters
    ----------
    plan
        The search group's :class:`~xsits.cube.plan.ItemsPlan`.
    positions
        Per window (point), its items' positions in ``plan``.
    windows
        The points' windows (:meth:`Windows.of` their patch geoboxes).

    Returns
    -------
    list of Batch, or None
        Points grouped by their dates; None when a file is not the fast reader's (or it is
        off): read cubes instead.
    """
    if not get_options().fast_reader:
        return None
    n = len(windows)
    used = sorted({i for pos in positions for i in pos})
    files = {(i, b): plan.srcs[i][b] for i in used for b in plan.bands
             if plan.srcs[i].get(b) is not None}
    if not all(fetch.fetchable(src.uri) for src in files.values()):
        return None
    # a file that needs a SAS token is signed now (its reads use the signed href)
    heads = dict(zip(files, headers([signing.sign(s.uri) for s in files.values()]),
                     strict=True))
    if not all(_serves(heads[f], files[f], plan.load_cfg[f[1]]) for f in files):
        return None
    # dates: per point, odc-stac's solar-day groups (shared by points of one tile and hour)
    lons = _lons(windows)
    near = np.abs(lons / 15 - np.round(lons / 15)) < 1e-6  # trust only the exact longitude
    groups_of: dict[tuple, tuple[tuple[int, ...], ...]] = {}
    point_groups = []
    for k in range(n):
        lon = float(lons[k])
        if near[k]:
            lon = solar_lon(windows.geobox(k))
        key = (tuple(sorted(positions[k])), int(lon / 15))
        if key not in groups_of:
            groups_of[key] = consistent_groups(plan, group_dates(plan, positions[k], lon))
        point_groups.append(groups_of[key])
    # which items each point reads: its own, whose footprint meets its window
    member = np.zeros((len(plan.items), n), dtype=bool)
    for k, pos in enumerate(positions):
        member[list(pos), k] = True
    meets: dict[tuple, np.ndarray] = {}
    for i in used:
        key = _footprint_key(plan, i)
        if key not in meets:
            meets[key] = _meets(plan, i, windows, np.arange(n))
        member[i] &= meets[key]
    # each file's pixels for its points; picks shared by the files of one grid
    values: dict[tuple[int, str], np.ndarray] = {}
    fills: dict[str, Any] = {}
    picks_of: dict[tuple, Picks] = {}
    for (i, band), src in files.items():
        cfg, head = plan.load_cfg[band], heads[(i, band)]
        dst_dtype = resolve_dst_dtype(head.dtype, cfg)
        src_nodata = resolve_src_nodata(head.nodata, cfg)
        fill = resolve_dst_nodata(dst_dtype, cfg, resolve_src_nodata(cfg.fill_value, cfg))
        fills[band] = dst_dtype.type(0) if fill is None else fill
        ks = np.flatnonzero(member[i])
        out = np.full((len(ks), windows.size, windows.size), fills[band], dtype=dst_dtype)
        if len(ks):
            key = (tuple(fast.grid_key(lv.geobox) for lv in head.levels), cfg.use_overviews)
            if key not in picks_of:
                every = pick(head, cfg, windows, np.arange(n))
                if every is None:
                    return None
                picks_of[key] = every
            p = picks_of[key]
            rows, cols, lev = p.rows[ks], p.cols[ks], p.level[ks]
            for level in np.unique(lev):
                sel = (lev == level)[:, None, None] & (rows >= 0)
                pix = fast.read_pixels(head, int(level), src.band, rows[sel], cols[sel])
                keep = ~fast.nodata_mask(pix, src_nodata) if src_nodata is not None else \
                    np.ones(pix.shape, dtype=bool)
                dst_nodata = resolve_dst_nodata(dst_dtype, cfg, src_nodata)
                conv = pix.astype(dst_dtype)
                if dst_nodata is not None:
                    conv[~keep] = dst_nodata
                else:
                    conv = np.where(keep, conv, fills[band])
                out[sel] = conv
        values[(i, band)] = _scatter(out, ks, n, fills[band])
    return _fuse(plan, point_groups, values, fills, windows.size, n)


def _scatter(out: np.ndarray, ks: np.ndarray, n: int, fill: Any) -> np.ndarray:
    full = np.full((n, *out.shape[1:]), fill, dtype=out.dtype)
    full[ks] = out
    return full


def _fuse(plan: ItemsPlan, point_groups: list[tuple[tuple[int, ...], ...]],
          values: Mapping[tuple[int, str], np.ndarray], fills: Mapping[str, Any], size: int,
          n: int) -> list[Batch]:
    """Points by dates; per date, the first valid value of its items (odc-loader's fuser)."""
    by_dates: dict[tuple, list[int]] = {}
    for k, groups in enumerate(point_groups):
        by_dates.setdefault(groups, []).append(k)
    dtypes = {band: got.dtype for (_, band), got in values.items()}
    batches = []
    for groups, ks in by_dates.items():
        idx = np.array(ks)
        out = {}
        for band, dtype in dtypes.items():
            fill = fills[band]
            arr = np.full((len(groups), len(idx), size, size), fill, dtype=dtype)
            for t, group in enumerate(groups):
                dst = arr[t]
                for i in group:
                    got = values.get((i, band))
                    if got is not None:
                        np.copyto(dst, got[idx], where=fast.nodata_mask(dst, fill))
            # (time, point, y, x) -> (time, y, point * x): windows side by side along x
            out[band] = arr.transpose(0, 2, 1, 3).reshape(len(groups), size, len(idx) * size)
        batches.append(Batch(tuple(ks), groups, out))
    return batches


__all__ = ["Windows", "Picks", "Batch", "pick", "read_points"]
