"""The block-once floor of ``xsits.sample``: each needed COG block read once, pixels picked.

    python benchmarks/floor_points.py --points 2000                      # EPSG:3035, 20 m
    python benchmarks/floor_points.py --points 2000 --crs utm --resolution 10   # window copy
    python benchmarks/floor_points.py --points 100 --check               # and xsits.sample
    python benchmarks/sample.py --points 2000 --only sample,floor        # as a contender

A script, not a timed test. It runs through ``sample.py``'s driver (the same world, servers,
peak-RSS meter and request counts; results in ``benchmarks/results/floor-<N>p-....json``),
as the contender ``floor``:

1. one STAC search per tile (pystac-client; the points grouped by UTM zone and 100 km cell of
   the Sentinel-2 tiling, searched with the bbox of their pixels), the items given to the
   points whose pixel they intersect (as ``xsits.search`` does);
2. each point's output pixel: the 1x1 patch of ``xsits.cube.grid.feature_geobox`` (its centre, in
   the output CRS, computed for all points at once and checked against ``feature_geobox``);
3. per file, on ``--threads`` threads (default 2): open it with rasterio (its header); for
   each point the level odc-loader reads (``compute_reproject_roi(...).read_shrink`` of its
   1x1 grid, vectorized in :func:`read_shrinks`, and odc-loader's overview pick, as
   :func:`xsits.io.fast.pick_overview`); move the pixel centres to the file's CRS with GDAL's
   PROJ (``rasterio.warp.transform``), take the source pixel that contains each (GDAL's
   nearest: the floor of the fractional pixel position), read each needed block once (a
   windowed read of exactly that block, last block first) and pick the pixels;
4. ``groupby="solar_day"`` as odc-stac: solar day at the pixel centre's longitude
   (``int(lon / 15) * 3600`` s, ``ParsedItem.solar_date_at``), items of a day in
   (datetime, id) order, the first valid (non-nodata) value of each band wins, the day's
   time is its first item's;
5. the same steps as the ``sample`` contender (``--steps``; run on one side-by-side cube
   per set of dates, as ``sample`` does for pixelwise steps), then ``points.parquet``.

``seconds`` covers 1-5; ``t_search``, ``t_plan``, ``t_read``, ``t_steps``, ``t_write`` split
it. With ``--check`` the ``sample`` contender runs on the same points and the two tables are
compared row by row (same rows, same values; the number of mismatching rows is reported).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

#: GDAL settings of the floor's reads (xsits.cube.load.GDAL_HTTP_DEFAULTS' request shaping).
GDAL_ENV = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_INGESTED_BYTES_AT_OPEN": 32768,
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_VERSION": 2,
    "GDAL_CACHEMAX": 64,
}
CLASS_BANDS = ("SCL",)


# --------------------------------------------------------------------------- the grid


def utm_epsg(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """EPSG code of each point's UTM zone (``odc.geo.crs.CRS.utm``'s rule)."""
    zone = np.clip(np.floor((np.asarray(lon) + 180.0) / 6.0).astype(int) + 1, 1, 60)
    return np.where(np.asarray(lat) >= 0, 32600, 32700) + zone


def pixel_centres(lon: np.ndarray, lat: np.ndarray, crs: str, res: float):
    """Per point: output CRS (EPSG int) and the centre of its 1x1 patch pixel in that CRS.

    :func:`xsits.cube.grid.feature_geobox` for ``GridSpec(crs, res, mode="patch", size=(1, 1))``
    (:func:`xsits.cube.grid.patch_geobox` on the global grid of ``res`` multiples), vectorized.
    """
    from pyproj import Transformer

    lon, lat = np.asarray(lon, float), np.asarray(lat, float)
    if str(crs).lower() == "utm":
        epsg = utm_epsg(lon, lat)
    else:
        from odc.geo.crs import CRS

        epsg = np.full(lon.shape, CRS(crs).epsg, dtype=int)
    cx = np.empty(lon.shape)
    cy = np.empty(lon.shape)
    for code in np.unique(epsg):
        sel = epsg == code
        tr = Transformer.from_crs("EPSG:4326", f"EPSG:{code}", always_xy=True)
        x, y = tr.transform(lon[sel], lat[sel])
        col_f, row_f = np.asarray(x) / res, -np.asarray(y) / res
        # patch_geobox: floor(round(f - size / 2, 6) + 0.5), size 1
        col0 = np.floor(np.round(col_f - 0.5, 6) + 0.5)
        row0 = np.floor(np.round(row_f - 0.5, 6) + 0.5)
        cx[sel] = col0 * res + res / 2
        cy[sel] = -row0 * res - res / 2
    return epsg, cx, cy


def check_centres(lon, lat, crs, res, epsg, cx, cy, n: int = 200) -> int:
    """How many of the first ``n`` points' pixels differ from ``xsits.cube.grid.feature_geobox``."""
    from shapely.geometry import Point

    from xsits.cube.grid import GridSpec, feature_geobox

    spec = GridSpec(crs=crs, resolution=res, mode="patch", size=(1, 1))
    bad = 0
    for i in range(min(n, len(lon))):
        gb = feature_geobox(Point(lon[i], lat[i]), "EPSG:4326", spec)
        x, y = gb.affine * (0.5, 0.5)
        bad += (gb.crs.epsg != epsg[i]) or x != cx[i] or y != cy[i]
    return int(bad)


# --------------------------------------------------------------------------- search


def tile_groups(epsg_utm: np.ndarray, lon: np.ndarray, lat: np.ndarray) -> dict:
    """Points grouped by Sentinel-2 tile (one search per group): UTM zone and tile.

    Tiles are 109.8 km squares at ``k * 100 km - 40 m`` (west) and ``m * 100 km`` (north):
    neighbours overlap by 9.8 km. A point in an overlap goes to the western / northern tile,
    so that the points around one place fall in one group (one search, each file read once).
    """
    from pyproj import Transformer

    groups: dict[tuple, list[int]] = defaultdict(list)
    for code in np.unique(epsg_utm):
        idx = np.flatnonzero(epsg_utm == code)
        tr = Transformer.from_crs("EPSG:4326", f"EPSG:{code}", always_xy=True)
        e, n = tr.transform(lon[idx], lat[idx])
        e, n = np.asarray(e), np.asarray(n)
        kx = np.floor((e + 40.0) / 100000.0).astype(int)
        kx = np.where((kx > 1) & (e < (kx - 1) * 100000.0 - 40.0 + 109800.0), kx - 1, kx)
        ky = np.floor(n / 100000.0).astype(int) + 1  # the tile's top, in 100 km
        ky = np.where(n >= ky * 100000.0 - 9800.0, ky + 1, ky)
        for i, a, b in zip(idx, kx, ky, strict=True):
            groups[(int(code), int(a), int(b))].append(int(i))
    return groups


def pixel_footprints(epsg, cx, cy, res):
    """Each point's output pixel as a lon/lat polygon (what ``xsits.search`` matches)."""
    import shapely
    from pyproj import Transformer

    polys = np.empty(len(cx), dtype=object)
    h = res / 2
    for code in np.unique(epsg):
        idx = np.flatnonzero(epsg == code)
        tr = Transformer.from_crs(f"EPSG:{code}", "EPSG:4326", always_xy=True)
        xs = np.stack([cx[idx] - h, cx[idx] + h, cx[idx] + h, cx[idx] - h], axis=1)
        ys = np.stack([cy[idx] - h, cy[idx] - h, cy[idx] + h, cy[idx] + h], axis=1)
        lo, la = tr.transform(xs.ravel(), ys.ravel())
        ring = np.stack([np.asarray(lo), np.asarray(la)], axis=1).reshape(len(idx), 4, 2)
        polys[idx] = shapely.polygons(ring)
    return polys


def search_tiles(stac: str, groups: dict, footprints, open_kwargs: dict):
    """One search per tile group: ``{group key: [item dict]}`` and the number of searches."""
    import pystac_client
    import shapely

    client = pystac_client.Client.open(stac)
    out = {}
    for key, idx in groups.items():
        bounds = shapely.bounds(footprints[idx])
        bbox = [float(bounds[:, 0].min()), float(bounds[:, 1].min()),
                float(bounds[:, 2].max()), float(bounds[:, 3].max())]
        search = client.search(collections=[open_kwargs["collection"]], bbox=bbox,
                               datetime=f"{open_kwargs['start']}/{open_kwargs['end']}",
                               query=open_kwargs.get("query"), limit=1000)
        out[key] = list(search.items_as_dicts())
    return out


# --------------------------------------------------------------------------- reading


def _pick_overview(read_shrink: int, factors) -> int | None:
    """odc-loader's overview for a shrink factor (as xsits.io.fast.pick_overview)."""
    if not factors or read_shrink < factors[0]:
        return None
    best = 0
    for i, f in enumerate(factors):
        if f > read_shrink:
            break
        best = i
    return best


def read_shrinks(src_crs, src_res: tuple[float, float], dst_epsg: int, cx: np.ndarray,
                 cy: np.ndarray, res: float) -> np.ndarray:
    """odc-loader's ``compute_reproject_roi(src, dst, ...).read_shrink`` for the 1x1 grid of
    each point (centre ``cx, cy`` in ``dst_epsg``), vectorized.

    odc-geo estimates the dst -> src pixel scale at the output pixel's centre from 5 points
    (the centre and +-1 pixel in x and y, ``get_scale_at_point``: least squares, which for
    this symmetric pattern is the central difference), takes the smaller scale of its
    rotation / shear / scale decomposition and rounds it down (``_pick_read_scale``: up
    when within 1e-3 of an integer). EPSG:3035 at 20 m from 10 m UTM pixels is a scale of
    ~2 +- a few 1e-4: where it falls below 1.999 odc reads full resolution, elsewhere the
    first overview; so the level is decided per point. The translation of the file's grid
    does not matter, only its CRS and resolution.
    """
    from pyproj import Transformer

    tr = Transformer.from_crs(f"EPSG:{dst_epsg}", str(src_crs), always_xy=True)
    offsets = ((-1, 0), (1, 0), (0, -1), (0, 1))  # in dst pixels, around the centre
    xs = np.concatenate([cx + dx * res for dx, _ in offsets])
    ys = np.concatenate([cy - dy * res for _, dy in offsets])
    sx, sy = (np.asarray(v).reshape(4, -1) for v in tr.transform(xs, ys))
    px, py = sx / src_res[0], sy / src_res[1]  # source pixel coordinates (no translation)
    a, d = (px[1] - px[0]) / 2, (py[1] - py[0]) / 2  # d(src)/d(dst x)
    b, e = (px[3] - px[2]) / 2, (py[3] - py[2]) / 2  # d(src)/d(dst y)
    # get_scale_from_linear_transform: the diagonal of the Cholesky factor of A^T A, i.e.
    # |first column| and |det| / |first column|
    col = np.hypot(a, d)
    scale = np.minimum(col, np.abs(a * e - b * d) / col)
    # _pick_read_scale: 1 below 1; an integer when within 1e-3 of it; else rounded down
    near = np.round(scale)
    shrink = np.where(np.abs(scale - near) < 1e-3, near, np.floor(scale))
    return np.where(scale < 1, 1, shrink).astype(int)


class Files:
    """Reads files: per file, each point's level, its source pixel and each block once."""

    def __init__(self, res: float, epsg: np.ndarray, cx: np.ndarray, cy: np.ndarray):
        self.res = res
        self.epsg, self.cx, self.cy = epsg, cx, cy
        self._shrink: dict[tuple, np.ndarray] = {}
        self._lock = threading.Lock()
        self.blocks = 0
        self.opened = 0
        self.levels: dict[int, int] = defaultdict(int)

    def _shrinks(self, src_crs, transform, dst_epsg: int, pts: np.ndarray) -> np.ndarray:
        """read_shrink of points ``pts`` for files of this CRS and resolution (each point
        computed once per CRS and resolution)."""
        key = (str(src_crs), transform.a, transform.e, dst_epsg)
        known = self._shrink.setdefault(key, np.zeros(len(self.cx), dtype=int))
        todo = pts[known[pts] == 0]
        if len(todo):
            known[todo] = read_shrinks(src_crs, (transform.a, transform.e), dst_epsg,
                                       self.cx[todo], self.cy[todo], self.res)
        return known[pts]

    def read(self, href: str, dst_epsg: int, pts: np.ndarray, nodata: int = 0) -> np.ndarray:
        """The value of the source pixel under each point's pixel centre, or ``nodata``."""
        import rasterio
        from rasterio.warp import transform as warp_transform
        from rasterio.windows import Window

        xs, ys = self.cx[pts], self.cy[pts]
        out = np.full(len(xs), nodata, dtype="uint16")
        blocks = 0
        with rasterio.open(href) as base:
            with self._lock:
                shrink = self._shrinks(base.crs, base.transform, dst_epsg, pts)
            factors = base.overviews(1)
            level = np.zeros(len(pts), dtype=int)
            for s in np.unique(shrink[shrink > 1]):
                ovr = _pick_overview(int(s), factors)
                level[shrink == s] = 0 if ovr is None else ovr + 1
            if base.crs.to_epsg() == dst_epsg:
                sx, sy = xs, ys
            else:
                sx, sy = warp_transform(f"EPSG:{dst_epsg}", base.crs, xs, ys)
                sx, sy = np.asarray(sx), np.asarray(sy)
            for lv in np.unique(level):
                at = level == lv
                ds = base if lv == 0 else rasterio.open(href, overview_level=int(lv) - 1)
                try:
                    t = ds.transform
                    cols = np.floor((sx - t.c) / t.a).astype(np.int64)
                    rows = np.floor((sy - t.f) / t.e).astype(np.int64)
                    inside = at & (cols >= 0) & (cols < ds.width) & (rows >= 0) & \
                        (rows < ds.height)
                    bh, bw = ds.block_shapes[0]
                    keys = (rows // bh) * 1_000_000 + cols // bw
                    # last block first: GDAL doubles its download size on reads that follow
                    # each other in the file (read-ahead), which fetches blocks not needed
                    for key in np.unique(keys[inside])[::-1]:
                        sel = inside & (keys == key)
                        r, c = divmod(int(key), 1_000_000)
                        win = Window(c * bw, r * bh, min(bw, ds.width - c * bw),
                                     min(bh, ds.height - r * bh))
                        block = ds.read(1, window=win)
                        out[sel] = block[rows[sel] - r * bh, cols[sel] - c * bw]
                        blocks += 1
                finally:
                    if ds is not base:
                        ds.close()
                with self._lock:
                    self.levels[int(lv)] += int(at.sum())
        with self._lock:
            self.blocks += blocks
            self.opened += 1
        return out


# --------------------------------------------------------------------------- the floor


def _datetime64(s: str) -> np.datetime64:
    import pandas as pd

    return pd.Timestamp(s).tz_convert(None).to_datetime64().astype("datetime64[ns]")


def _steps(names: str):
    from xsits.ops import steps

    made = {"scl_mask": steps.scl_mask, "gapfill": lambda: steps.gapfill("linear")}
    return [made[n]() for n in names.split(",") if n and n != "none"]


def floor_table(points, stac: str, open_kwargs: dict, *, threads: int = 2,
                steps: str = "scl_mask,gapfill", check_grid: bool = True):
    """The table ``xsits.sample(points, steps=..., **open_kwargs)`` gives, by the floor's reads.

    ``points``: ``[(feature_id, lon, lat, {label: value})]``. Returns ``(DataFrame, stats)``.
    """
    import pandas as pd
    import shapely
    import xarray as xr
    from rasterio.env import Env

    bands = list(open_kwargs["bands"])
    crs, res = open_kwargs["crs"], float(open_kwargs["resolution"])
    stats: dict = {}
    t0 = time.perf_counter()
    fids = [p[0] for p in points]
    lon = np.array([p[1] for p in points], float)
    lat = np.array([p[2] for p in points], float)
    epsg, cx, cy = pixel_centres(lon, lat, crs, res)
    if check_grid:  # not timed
        tc = time.perf_counter()
        stats["grid_mismatches"] = check_centres(lon, lat, crs, res, epsg, cx, cy)
        t0 += time.perf_counter() - tc
    foot = pixel_footprints(epsg, cx, cy, res)
    groups = tile_groups(utm_epsg(lon, lat), lon, lat)
    t1 = time.perf_counter()
    found = search_tiles(stac, groups, foot, open_kwargs)
    t2 = time.perf_counter()
    stats.update(t_grid=t1 - t0, t_search=t2 - t1, searches=len(found))

    # which items each point gets (its pixel intersects the item's footprint), per tile group
    tasks: dict[str, list] = defaultdict(list)  # href -> [(group key, item, band, points)]
    plans = {}
    for key, items in found.items():
        idx = np.asarray(groups[key])
        items = [it for it in items if all(b in it["assets"] for b in bands)]
        if not items:
            continue
        tree = shapely.STRtree(foot[idx])
        member = np.zeros((len(items), len(idx)), bool)
        for k, it in enumerate(items):
            hit = tree.query(shapely.geometry.shape(it["geometry"]), predicate="intersects")
            member[k, hit] = True
        plans[key] = (idx, items, member)
        for k, it in enumerate(items):
            pts = idx[member[k]]
            if not len(pts):
                continue
            for b in bands:
                tasks[it["assets"][b]["href"]].append((key, k, b, pts))
    values = {key: {b: np.zeros((len(items), len(idx)), "uint16") for b in bands}
              for key, (idx, items, _) in plans.items()}
    pos = {key: {int(p): j for j, p in enumerate(idx)} for key, (idx, _, _) in plans.items()}
    t3 = time.perf_counter()

    files = Files(res, epsg, cx, cy)

    def run(href):  # one file (an item's band, maybe found by several groups): read once
        uses = tasks[href]
        pts = np.concatenate([u[3] for u in uses])
        vals = np.zeros(len(pts), "uint16")
        for code in np.unique(epsg[pts]):
            sel = epsg[pts] == code
            vals[sel] = files.read(href, int(code), pts[sel])
        return href, vals

    with Env(**GDAL_ENV), ThreadPoolExecutor(threads) as pool:
        for href, vals in pool.map(run, list(tasks)):
            start = 0
            for key, k, b, ps in tasks[href]:
                cols = [pos[key][int(p)] for p in ps]
                values[key][b][k, cols] = vals[start:start + len(ps)]
                start += len(ps)
    t4 = time.perf_counter()
    stats.update(t_plan=t3 - t2, t_read=t4 - t3, files=len(tasks), opened=files.opened,
                 blocks=files.blocks, picks_per_level=dict(files.levels))

    # groupby="solar_day" and fusing, per tile group and per set of (items, solar offset)
    pixel_lon = np.empty(len(points))
    for code in np.unique(epsg):
        from pyproj import Transformer

        sel = epsg == code
        tr = Transformer.from_crs(f"EPSG:{code}", "EPSG:4326", always_xy=True)
        pixel_lon[sel] = np.asarray(tr.transform(cx[sel], cy[sel])[0])
    step_list = _steps(steps)
    rows: dict[int, tuple] = {}
    t_steps = 0.0
    for key, (idx, items, member) in plans.items():
        when = [_datetime64(it["properties"]["datetime"]) for it in items]
        offset = (pixel_lon[idx] / 15).astype(int)  # int() truncates towards zero
        patterns: dict[tuple, list[int]] = defaultdict(list)
        for j in range(len(idx)):
            patterns[(member[:, j].tobytes(), int(offset[j]))].append(j)
        for (_, off), js in patterns.items():
            ks = np.flatnonzero(member[:, js[0]])
            if not len(ks):
                continue
            day = {k: (when[k] + np.timedelta64(off * 3600, "s")).astype("datetime64[D]")
                   for k in ks}
            order = sorted(ks, key=lambda k: (day[k], when[k], items[k]["id"]))
            dates: list[list[int]] = []
            for k in order:
                if dates and day[dates[-1][0]] == day[k]:
                    dates[-1].append(k)
                else:
                    dates.append([k])
            times = np.array([when[g[0]] for g in dates], dtype="datetime64[ns]")
            cube = {}
            for b in bands:
                v = values[key][b][:, js]
                fused = np.zeros((len(dates), len(js)), "uint8" if b in CLASS_BANDS
                                 else "uint16")
                for t, g in enumerate(dates):
                    sub = v[g]
                    first = np.argmax(sub != 0, axis=0)
                    fused[t] = sub[first, np.arange(len(js))]
                cube[b] = fused
            ts = time.perf_counter()
            if step_list:
                ds = xr.Dataset({b: (("time", "y", "x"), a[:, None, :], {"nodata": 0})
                                 for b, a in cube.items()}, coords={"time": times})
                for step in step_list:
                    ds = step(ds)
                ds = ds.compute()
                times = ds["time"].values
                cube = {b: ds[b].values[:, 0, :] for b in bands}
            t_steps += time.perf_counter() - ts
            for n, j in enumerate(js):
                rows[int(idx[j])] = (times, {b: a[:, n] for b, a in cube.items()})
    t5 = time.perf_counter()
    order = [i for i in range(len(points)) if i in rows]  # the AOI's order
    counts = np.array([len(rows[i][0]) for i in order], dtype=int)
    pick = np.repeat(np.asarray(order, dtype=int), counts)
    cols: dict = {"feature_id": np.asarray(fids, dtype=object)[pick]}
    for label in (points[0][3] if points else {}):
        cols[label] = np.asarray([p[3][label] for p in points], dtype=object)[pick]
    if order:
        cols["time"] = np.concatenate([rows[i][0] for i in order])
        for b in bands:
            cols[b] = np.concatenate([rows[i][1][b] for i in order])
    cols["lon"], cols["lat"] = lon[pick], lat[pick]
    table = pd.DataFrame(cols)
    t6 = time.perf_counter()
    stats["seconds"] = t6 - t0
    stats.update(t_fuse=t5 - t4 - t_steps, t_steps=t_steps, t_table=t6 - t5,
                 missing=len(points) - len(rows))
    return table, stats


def read_points(path: str):
    doc = json.loads(Path(path).read_text())
    out = []
    for f in doc["features"]:
        props = dict(f["properties"])
        fid = str(props.pop("pt_id"))
        lon, lat = f["geometry"]["coordinates"][:2]
        out.append((fid, float(lon), float(lat), props))
    return out


def run_floor(args, open_kwargs: dict) -> dict:
    """The ``floor`` contender of ``sample.py`` (in its own process): writes points.parquet."""
    points = read_points(args.aoi)
    table, stats = floor_table(points, args.stac, open_kwargs, threads=args.floor_threads,
                               steps=args.steps)
    t1 = time.perf_counter()
    out = Path(args.out) / "points.parquet"
    table.to_parquet(out, index=False)
    t2 = time.perf_counter()
    stats["seconds"] += t2 - t1
    return {**stats, "t_write": t2 - t1, "rows": len(table),
            "points": int(table.feature_id.nunique()) if len(table) else 0,
            "threads": args.floor_threads}


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", default="2000", help="number of points, or a comma list")
    p.add_argument("--crs", default="EPSG:3035", help="output CRS: EPSG:3035 (default) or utm")
    p.add_argument("--resolution", type=float, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", default="scl_mask,gapfill", help="steps, or 'none'")
    p.add_argument("--world", choices=("default", "full"), default="default")
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--check", action="store_true",
                   help="also run xsits.sample on the same points and compare the tables")
    p.add_argument("--tag", default="")
    args = p.parse_args(argv)
    import sample as bsample

    crs = "utm" if args.crs.lower() == "utm" else args.crs
    tag = args.tag or (f"floor-{args.points.replace(',', '+')}p-"
                       f"{'utm' if crs == 'utm' else crs.replace(':', '').lower()}-"
                       f"{args.resolution:g}m{'-full' if args.world == 'full' else ''}"
                       f"{'-check' if args.check else ''}")
    return bsample.main(["--points", args.points, "--only", "floor" + (",sample" if args.check
                                                                       else ""),
                         "--crs", crs, "--resolution", f"{args.resolution:g}",
                         "--floor-threads", str(args.threads), "--steps", args.steps,
                         "--world", args.world, "--latency-ms", str(args.latency_ms),
                         "--tag", tag])


if __name__ == "__main__":
    sys.exit(main())
