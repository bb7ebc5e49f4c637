"""One benchmark contender, run in its own process by ``run.py``.

    python benchmarks/contenders.py {xsits,plain,floor} --mode {image,patch} --stac URL \
        --aoi AOI.geojson --out DIR --result RESULT.json [--profile PREFIX]

Every contender reads the same AOI (``pt_id``, ``lon``, ``lat`` per point) and builds the same
workload: Sentinel-2 L2A B03 B04 B08 SCL, 2024-01-01..2025-02-01 (the seed notebook's dates),
``eo:cloud_cover < 10``, 20 m, EPSG:3035; image mode = the point's bbox buffered by 0.01 deg,
patch mode = 10x10 pixels; SCL mask then linear gap-fill, one NetCDF per feature.
It writes ``{"seconds": ..., ...}`` to ``--result``; wall time and memory are measured by the
parent. ``sits_runner.py`` is the fourth contender (runs in its own venv).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

BANDS = ["B03", "B04", "B08", "SCL"]
START, END = "2024-01-01", "2025-02-01"
QUERY = {"eo:cloud_cover": {"lt": 10}}
RESOLUTION = 20
CRS = "EPSG:3035"
BUFFER_DEG = 0.01
PATCH = (10, 10)
# xsits' default SCL classes (xsits.ops.mask.DEFAULT_CLASSES), used by the plain loop too
MASK_CLASSES = (0, 1, 3, 8, 9, 10)


def read_points(path: str) -> list[tuple[str, float, float]]:
    doc = json.loads(Path(path).read_text())
    return [(str(f["properties"]["pt_id"]), *map(float, f["geometry"]["coordinates"][:2]))
            for f in doc["features"]]


def aoi_frame(points, mode: str):
    """GeoDataFrame (EPSG:4326, ``feature_id``): 0.01 deg bbox polygons (image) or points."""
    import geopandas as gpd
    from shapely.geometry import Point, box

    if mode == "image":
        geoms = [box(lon - BUFFER_DEG, lat - BUFFER_DEG, lon + BUFFER_DEG, lat + BUFFER_DEG)
                 for _, lon, lat in points]
    else:
        geoms = [Point(lon, lat) for _, lon, lat in points]
    return gpd.GeoDataFrame({"feature_id": [p[0] for p in points]}, geometry=geoms,
                            crs="EPSG:4326")


def grid_spec(mode: str):
    from xsits.cube.grid import GridSpec

    return GridSpec(crs=CRS, resolution=RESOLUTION, mode=mode, buffer=0.0, size=PATCH)


# --------------------------------------------------------------------------- xsits


def run_xsits(args) -> dict:
    from xsits.batch import AoiSource, compute_all
    from xsits.ops import steps

    variant = _apply_xsits_variant(args)
    points = read_points(args.aoi)
    t0 = time.perf_counter()
    aoi = aoi_frame(points, args.mode)
    open_kwargs = {"stac": args.stac, "collection": "sentinel-2-l2a", "start": START,
                   "end": END, "bands": tuple(BANDS), "query": QUERY,
                   "resolution": RESOLUTION, "crs": CRS, "mode": args.mode, "size": PATCH,
                   **(json.loads(args.open_kwargs) if args.open_kwargs else {})}
    kwargs = json.loads(args.xsits_kwargs) if args.xsits_kwargs else {}
    pipeline = [steps.scl_mask(), steps.gapfill("linear")]
    # one call: the searches, the cubes and their computing overlap (xsits fetch does this)
    report = compute_all(AoiSource(aoi, open_kwargs), steps=pipeline, out_dir=args.out,
                         format="netcdf", **kwargs)
    t1 = time.perf_counter()
    status = report["status"].value_counts().to_dict() if len(report) else {}
    paths = {str(r.feature_id): str(r.path) for r in report.itertuples()
             if r.status == "written"}
    errors = [str(e) for e in report.get("error", []) if isinstance(e, str) and e][:5]
    return {
        "seconds": t1 - t0,
        "t_compute_all": t1 - t0,
        "n_features": len(points),
        "n_outputs": int(status.get("written", 0)),
        "status": {str(k): int(v) for k, v in status.items()},
        "errors": errors,
        "paths": paths,
        "variant": variant,
    }


def _apply_xsits_variant(args) -> dict:
    """Local, benchmark-only experiments on xsits' knobs (nothing in xsits/ is changed).

    ``--gdal JSON``: overrides merged into ``xsits.cube.load.GDAL_HTTP_DEFAULTS`` (in place, so
    ``configure_gdal`` and the batch engine's ``_ensure_gdal`` pick them up).
    """
    variant: dict = {}
    if args.gdal:
        import xsits.cube.load

        over = json.loads(args.gdal)
        xsits.cube.load.GDAL_HTTP_DEFAULTS.update(over)
        variant["gdal"] = over
    if args.options:
        import xsits

        over = json.loads(args.options)
        xsits.set_options(**over)
        variant["options"] = over
    if args.open_kwargs:
        variant["open_kwargs"] = json.loads(args.open_kwargs)
    if args.xsits_kwargs:
        variant["compute_all_kwargs"] = json.loads(args.xsits_kwargs)
    return variant


def run_plain(args) -> dict:
    """pystac-client search + odc.stac.load + mask + interpolate_na + to_netcdf, per feature."""
    import numpy as np
    import odc.stac
    import pystac_client
    import xarray as xr

    from xsits.cube.grid import feature_geobox

    points = read_points(args.aoi)
    t0 = time.perf_counter()
    aoi = aoi_frame(points, args.mode)
    spec = grid_spec(args.mode)
    client = pystac_client.Client.open(args.stac)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    odc.stac.configure_rio(cloud_defaults=True, GDAL_HTTP_MAX_RETRY=5)
    paths = {}
    n_searches = 0
    for fid, geom in zip(aoi["feature_id"], aoi.geometry, strict=True):
        # the same output grid as xsits, so that outputs can be compared value by value
        gbox = feature_geobox(geom, "EPSG:4326", spec)
        bbox = list(gbox.extent.to_crs("EPSG:4326").boundingbox)
        items = list(client.search(collections=["sentinel-2-l2a"], bbox=bbox,
                                   datetime=f"{START}/{END}", query=QUERY,
                                   limit=1000).items())
        n_searches += 1
        if not items:
            continue
        ds = odc.stac.load(items, bands=BANDS, geobox=gbox, groupby="solar_day",
                           chunks={"time": -1, "x": 2048, "y": 2048}, fail_on_error=True)
        bad = ds["SCL"].isin(list(MASK_CLASSES))
        refl = [b for b in BANDS if b != "SCL"]
        for b in refl:
            v = ds[b].where(~bad & (ds[b] != 0)).astype("float32")
            v = v.interpolate_na(dim="time", method="linear", use_coordinate=True)
            v = v.bfill("time").ffill("time")  # first/last dates, as sits' gapfill does
            ds[b] = v.astype("float32")
        path = out / f"fid-{fid}_{args.mode}.nc"
        ds.drop_vars([c for c in ds.coords if c not in ("time", "y", "x", "spatial_ref")]) \
          .to_netcdf(path)
        paths[str(fid)] = str(path)
    del np, xr
    return {"seconds": time.perf_counter() - t0, "n_searches": n_searches,
            "n_features": len(points), "n_outputs": len(paths), "paths": paths}


# --------------------------------------------------------------------------- floor


_GRIDS: dict = {}  # per (source grid, output grid): odc's reproject ROIs and GDAL's nearest pick


def _grid_key(gbox) -> tuple:
    return str(gbox.crs), gbox.shape.yx, tuple(gbox.affine)[:6]


def _roi(src, dst, **kwargs):
    """``compute_reproject_roi(src, dst, **kwargs)``, once per pair of grids (files of one
    tile share their grid: planning is paid per grid, not per file)."""
    from odc.geo.overlap import compute_reproject_roi

    key = ("roi", _grid_key(src), _grid_key(dst), tuple(sorted(kwargs.items())))
    hit = _GRIDS.get(key)
    if hit is None:
        hit = _GRIDS[key] = compute_reproject_roi(src, dst, **kwargs)
    return hit


def _nearest(src, dst):
    """GDAL's nearest pick of ``src`` pixels for ``dst``, as xsits' reader (``_gdal_index``):
    ``(y0, y1, x0, x1)`` a window of ``src`` (odc's ``compute_reproject_roi(..., padding=0)``
    plus a margin of 4 pixels, widened when GDAL picks on its edge) and, per ``dst`` pixel,
    the flat index into it (-1: none), from GDAL warping a raster of positions. Once per
    pair of grids."""
    import numpy as np
    from odc.geo.roi import roi_is_empty
    from rasterio.warp import Resampling, reproject

    key = ("nearest", _grid_key(src), _grid_key(dst))
    if key in _GRIDS:
        return _GRIDS[key]
    (h, w) = src.shape.yx
    rr = _roi(src, dst, padding=0)
    found = None
    margin = 4
    while not roi_is_empty(rr.roi_src):
        ys, xs = rr.roi_src
        y0, y1 = max(0, ys.start - margin), min(h, ys.stop + margin)
        x0, x1 = max(0, xs.start - margin), min(w, xs.stop + margin)
        positions = np.arange((y1 - y0) * (x1 - x0), dtype="int32").reshape(y1 - y0, x1 - x0)
        index = np.full(dst.shape.yx, -1, dtype="int32")
        reproject(positions, index, src_transform=src[y0:y1, x0:x1].transform,
                  src_crs=str(src.crs), src_nodata=None, dst_transform=dst.transform,
                  dst_crs=str(dst.crs), dst_nodata=-1, resampling=Resampling.nearest)
        rows, cols = np.divmod(index[index >= 0], x1 - x0)
        touches = rows.size and ((y0 > 0 and rows.min() == 0) or
                                 (y1 < h and rows.max() == y1 - y0 - 1) or
                                 (x0 > 0 and cols.min() == 0) or
                                 (x1 < w and cols.max() == x1 - x0 - 1))
        if not touches or margin > 256:
            found = ((y0, y1, x0, x1), index)
            break
        margin *= 4
    _GRIDS[key] = found
    return found


def _window(ds, y0: int, y1: int, x0: int, x1: int, cache: dict, key: str):
    """Rows ``y0:y1``, columns ``x0:x1`` of ``ds`` from its blocks, each read once (``cache``)
    with a windowed read of exactly that block; and how many blocks were read."""
    import numpy as np
    from rasterio.windows import Window

    (h, w), (bh, bw) = ds.shape, ds.block_shapes[0]
    window = np.zeros((y1 - y0, x1 - x0), dtype=ds.dtypes[0])
    new = 0
    # last block first: GDAL doubles its download size on reads that follow each other in the
    # file (read-ahead), which fetches blocks not needed
    for r in reversed(range(y0 // bh, -(-y1 // bh))):
        for c in reversed(range(x0 // bw, -(-x1 // bw))):
            block = cache.get((key, r, c))
            if block is None:
                block = cache[(key, r, c)] = ds.read(1, window=Window(
                    c * bw, r * bh, min(bw, w - c * bw), min(bh, h - r * bh)))
                new += 1
            ty, tx = r * bh, c * bw
            a0, a1 = max(y0, ty), min(y1, ty + block.shape[0])
            b0, b1 = max(x0, tx), min(x1, tx + block.shape[1])
            window[a0 - y0:a1 - y0, b0 - x0:b1 - x0] = block[a0 - ty:a1 - ty, b0 - tx:b1 - tx]
    return window, new


def _floor_read(ds, level_box, dst, rr, level: int, cache: dict):
    """``dst`` (a GeoBox) as odc-loader / xsits' reader fill it from one file: ``rr`` is
    ``compute_reproject_roi(file grid, dst, ttol=0.9)``; on the file's own lattice a window
    copy, else GDAL's nearest pick (:func:`_nearest`) onto ``dst[rr.roi_dst]``; nodata 0."""
    import numpy as np
    from odc.geo.roi import roi_is_empty

    out = np.zeros(dst.shape.yx, dtype=ds.dtypes[0])
    if roi_is_empty(rr.roi_dst) or roi_is_empty(rr.roi_src):
        return out, 0
    if level == 0 and rr.paste_ok and rr.read_shrink == 1:
        ys, xs = rr.roi_src
        out[rr.roi_dst], new = _window(ds, ys.start, ys.stop, xs.start, xs.stop, cache,
                                       str(level))
        return out, new
    found = _nearest(level_box, dst[rr.roi_dst])
    if found is None:
        return out, 0
    (y0, y1, x0, x1), index = found
    window, new = _window(ds, y0, y1, x0, x1, cache, str(level))
    sub = out[rr.roi_dst]
    hit = index >= 0
    sub[hit] = window.reshape(-1)[index[hit]]  # a nodata (0) source pixel stays 0
    return out, new


def _floor_file(href: str, boxes: list, gdal_env: dict):
    """One file: opened once (its header), the level odc-loader reads for each output grid
    (``read_shrink`` and its overview pick), each needed block read once, each grid warped."""
    import rasterio
    from floor_points import _pick_overview
    from odc.geo.geobox import GeoBox

    outs, blocks, cache = [], 0, {}
    with rasterio.Env(**gdal_env), rasterio.open(href) as base:
        base_box = GeoBox(base.shape, base.transform, base.crs)
        factors = base.overviews(1)
        levels = {0: (base, base_box)}
        try:
            for dst in boxes:
                rr = _roi(base_box, dst, ttol=0.9)
                level = 0
                if rr.read_shrink > 1:
                    ovr = _pick_overview(rr.read_shrink, factors)
                    level = 0 if ovr is None else ovr + 1
                if level not in levels:
                    ds = rasterio.open(href, overview_level=level - 1)
                    levels[level] = (ds, GeoBox(ds.shape, ds.transform, ds.crs))
                ds, box = levels[level]
                arr, new = _floor_read(ds, box, dst, rr, level, cache)
                outs.append(arr)
                blocks += new
        finally:
            for lv, (ds, _) in levels.items():
                if lv:
                    ds.close()
    return outs, blocks


def run_floor(args) -> dict:
    """The block-once floor of the workload, with xsits' outputs.

    One STAC search per tile; each needed (file, block) read once with rasterio on
    ``--threads`` threads (default 2), warped by GDAL's nearest onto each feature's xsits grid
    (the level odc-loader reads); ``groupby="solar_day"`` fusing as odc-stac (first valid item
    in (datetime, id) order); the same steps (SCL mask, linear gap-fill) and one NetCDF per
    feature, compared value by value with xsits' by run.py.
    """
    from collections import defaultdict
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import shapely
    import xarray as xr
    from floor_points import GDAL_ENV, _datetime64, search_tiles, tile_groups, utm_epsg
    from odc.geo.xr import xr_coords

    from xsits.cube.grid import feature_geobox
    from xsits.ops import steps

    points = read_points(args.aoi)
    t0 = time.perf_counter()
    aoi = aoi_frame(points, args.mode)
    spec = grid_spec(args.mode)
    fids = list(aoi["feature_id"])
    boxes = [feature_geobox(g, "EPSG:4326", spec) for g in aoi.geometry]
    foot = np.array([b.extent.to_crs("EPSG:4326").geom for b in boxes], dtype=object)
    lon = np.array([p[1] for p in points])
    lat = np.array([p[2] for p in points])
    groups = tile_groups(utm_epsg(lon, lat), lon, lat)
    t1 = time.perf_counter()
    found = search_tiles(args.stac, groups, foot, {"collection": "sentinel-2-l2a",
                                                   "start": START, "end": END,
                                                   "query": QUERY})
    t2 = time.perf_counter()
    per_feature = {}  # feature index -> its items
    needs = defaultdict(list)  # href -> [(feature index, item position, band)]
    for key, items in found.items():
        idx = groups[key]
        items = [it for it in items if all(b in it["assets"] for b in BANDS)]
        for i in idx:
            mine = [it for it in items if shapely.geometry.shape(it["geometry"])
                    .intersects(foot[i])]
            per_feature[i] = mine
            for k, it in enumerate(mine):
                for b in BANDS:
                    needs[it["assets"][b]["href"]].append((i, k, b))
    values = {i: {b: np.zeros((len(its), *boxes[i].shape.yx), "uint8" if b == "SCL"
                              else "uint16") for b in BANDS}
              for i, its in per_feature.items()}

    def work(href):
        got, blocks = _floor_file(href, [boxes[i] for i, _, _ in needs[href]], GDAL_ENV)
        return href, got, blocks

    n_blocks = 0
    with ThreadPoolExecutor(args.threads) as pool:
        for href, got, blocks in pool.map(work, list(needs)):
            n_blocks += blocks
            for (i, k, b), arr in zip(needs[href], got, strict=True):
                values[i][b][k] = arr
    t3 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    t_steps = t_write = 0.0
    pipeline = [steps.scl_mask(), steps.gapfill("linear")]
    for i, items in per_feature.items():
        if not items:
            continue
        gbox = boxes[i]
        ((clon, _),) = gbox.extent.centroid.to_crs("EPSG:4326").points
        off = np.timedelta64(int(clon / 15) * 3600, "s")
        when = [_datetime64(it["properties"]["datetime"]) for it in items]
        day = [(w + off).astype("datetime64[D]") for w in when]
        order = sorted(range(len(items)), key=lambda k: (day[k], when[k], items[k]["id"]))
        dates: list[list[int]] = []
        for k in order:
            if dates and day[dates[-1][0]] == day[k]:
                dates[-1].append(k)
            else:
                dates.append([k])
        data = {}
        for b in BANDS:
            v = values[i][b]
            fused = np.zeros((len(dates), *gbox.shape.yx), v.dtype)
            for t, g in enumerate(dates):
                for k in g:  # the first valid item of the day wins
                    np.copyto(fused[t], v[k], where=fused[t] == 0)
            data[b] = (("time", "y", "x"), fused, {"nodata": 0})
        coords = dict(xr_coords(gbox))
        coords["time"] = np.array([when[g[0]] for g in dates], dtype="datetime64[ns]")
        ts = time.perf_counter()
        ds = xr.Dataset(data, coords=coords)
        for step in pipeline:
            ds = step(ds)
        ds = ds.compute()
        tw = time.perf_counter()
        path = out / f"fid-{fids[i]}_{args.mode}.nc"
        ds.drop_vars([c for c in ds.coords if c not in ("time", "y", "x", "spatial_ref")]) \
          .to_netcdf(path)
        t_write += time.perf_counter() - tw
        t_steps += tw - ts
        paths[str(fids[i])] = str(path)
    t4 = time.perf_counter()
    return {"seconds": t4 - t0, "t_grid": t1 - t0, "t_search": t2 - t1, "t_read": t3 - t2,
            "t_fuse": t4 - t3 - t_steps - t_write, "t_steps": t_steps, "t_write": t_write,
            "n_searches": len(found), "n_files": len(needs), "n_blocks": n_blocks,
            "n_features": len(points), "n_outputs": len(paths), "paths": paths,
            "threads": args.threads}


# --------------------------------------------------------------------------- main


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("contender", choices=["xsits", "plain", "floor"])
    p.add_argument("--mode", choices=["image", "patch"], required=True)
    p.add_argument("--stac", required=True)
    p.add_argument("--aoi", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--result", required=True)
    p.add_argument("--cog-url", default="")
    p.add_argument("--world-root", default="")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--xsits-kwargs", default="", help="JSON of extra compute_all kwargs")
    p.add_argument("--open-kwargs", default="", help="JSON of extra open_cubes kwargs")
    p.add_argument("--gdal", default="", help="JSON merged into GDAL_HTTP_DEFAULTS")
    p.add_argument("--options", default="", help="JSON of xsits.set_options, e.g. "
                   '\'{"whole_files": false}\'')
    p.add_argument("--profile", default="", help="run under pyinstrument; write PREFIX.html/.txt")
    args = p.parse_args(argv)
    fn = {"xsits": run_xsits, "plain": run_plain, "floor": run_floor}[args.contender]
    if args.profile:
        from pyinstrument import Profiler

        prof = Profiler(interval=0.001)
        prof.start()
        out = fn(args)
        prof.stop()
        Path(args.profile + ".html").write_text(prof.output_html())
        Path(args.profile + ".txt").write_text(prof.output_text(unicode=False, color=False))
    else:
        out = fn(args)
    out["pid"] = os.getpid()
    Path(args.result).write_text(json.dumps(out, default=str))


if __name__ == "__main__":
    sys.exit(main())
