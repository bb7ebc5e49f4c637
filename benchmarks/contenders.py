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
# xsits' default SCL classes (xsits.mask.DEFAULT_CLASSES), used by the plain loop too
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
    from xsits.grid import GridSpec

    return GridSpec(crs=CRS, resolution=RESOLUTION, mode=mode, buffer=0.0, size=PATCH)


# --------------------------------------------------------------------------- xsits


def run_xsits(args) -> dict:
    from xsits import steps
    from xsits.batch import AoiSource, compute_all

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

    ``--gdal JSON``: overrides merged into ``xsits.load.GDAL_HTTP_DEFAULTS`` (in place, so
    ``configure_gdal`` and the batch engine's ``_ensure_gdal`` pick them up).
    """
    variant: dict = {}
    if args.gdal:
        import xsits.load

        over = json.loads(args.gdal)
        xsits.load.GDAL_HTTP_DEFAULTS.update(over)
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

    from xsits.grid import feature_geobox

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


def _tiff_levels(path: Path) -> list[dict]:
    """Per IFD of a (classic or Big) TIFF: width, height, tile size, tile offsets and counts."""
    import struct

    levels = []
    with open(path, "rb") as f:
        head = f.read(16)
        bo = "<" if head[:2] == b"II" else ">"
        big = struct.unpack(bo + "H", head[2:4])[0] == 43
        off = struct.unpack(bo + "Q", head[8:16])[0] if big else struct.unpack(bo + "I",
                                                                               head[4:8])[0]
        types = {3: ("H", 2), 4: ("I", 4), 16: ("Q", 8)}
        while off:
            f.seek(off)
            n = struct.unpack(bo + ("Q" if big else "H"), f.read(8 if big else 2))[0]
            tags = {}
            for _ in range(n):
                e = f.read(20 if big else 12)
                if big:
                    tag, typ, cnt = struct.unpack(bo + "HHQ", e[:12])
                    raw = e[12:]
                else:
                    tag, typ, cnt = struct.unpack(bo + "HHI", e[:8])
                    raw = e[8:]
                if typ not in types:
                    continue
                fmt, size = types[typ]
                if cnt * size <= len(raw):
                    vals = struct.unpack(bo + fmt * cnt, raw[: cnt * size])
                else:
                    ptr = struct.unpack(bo + ("Q" if big else "I"), raw)[0]
                    here = f.tell()
                    f.seek(ptr)
                    vals = struct.unpack(bo + fmt * cnt, f.read(cnt * size))
                    f.seek(here)
                tags[tag] = vals
            off = struct.unpack(bo + ("Q" if big else "I"), f.read(8 if big else 4))[0]
            if 324 in tags:
                levels.append({"w": tags[256][0], "h": tags[257][0], "tw": tags[322][0],
                               "th": tags[323][0], "offsets": tags[324],
                               "counts": tags[325]})
    return levels


def plan_floor(points, mode: str, world_root: Path, items: list[dict]) -> list[tuple]:
    """The set of (relative path, offset, length) of exactly the COG blocks needed.

    For each feature: its output grid (EPSG:3035, 20 m), every item intersecting it with
    cloud < 10 %, every band: the pixel window of the grid in the file at the level whose
    resolution is the coarsest not coarser than 20 m (overview 1 for 10 m bands, full
    resolution for the 20 m SCL), padded by 1 pixel, and the blocks it touches.
    """
    from odc.geo.geom import Geometry
    from shapely.geometry import shape

    from xsits.grid import feature_geobox

    aoi = aoi_frame(points, mode)
    spec = grid_spec(mode)
    levels_cache: dict[str, list[dict]] = {}
    keys: set[tuple] = set()
    good = [it for it in items if it["properties"]["eo:cloud_cover"] < 10]
    shapes = [shape(it["geometry"]) for it in good]
    for geom in aoi.geometry:
        gbox = feature_geobox(geom, "EPSG:4326", spec)
        fp = gbox.extent.to_crs("EPSG:4326").geom
        for it, shp in zip(good, shapes, strict=True):
            if not shp.intersects(fp):
                continue
            epsg = it["properties"]["proj:epsg"]
            ext = gbox.extent.to_crs(f"EPSG:{epsg}") if epsg else None
            for band in BANDS:
                a = it["assets"][band]
                rel = a["href"]
                if rel not in levels_cache:
                    levels_cache[rel] = _tiff_levels(world_root / rel)
                levels = levels_cache[rel]
                res0 = a["proj:transform"][0]
                x0, y0 = a["proj:transform"][2], a["proj:transform"][5]
                lvl = 0
                for k, lv in enumerate(levels):
                    if res0 * levels[0]["w"] / lv["w"] <= RESOLUTION + 1e-6:
                        lvl = k
                lv = levels[lvl]
                res = res0 * levels[0]["w"] / lv["w"]
                minx, miny, maxx, maxy = (ext or Geometry(fp, "EPSG:4326")).boundingbox
                c0 = max(0, int((minx - x0) // res) - 1)
                c1 = min(lv["w"] - 1, int((maxx - x0) // res) + 1)
                r0 = max(0, int((y0 - maxy) // res) - 1)
                r1 = min(lv["h"] - 1, int((y0 - miny) // res) + 1)
                if c1 < c0 or r1 < r0:
                    continue
                ntx = -(-lv["w"] // lv["tw"])
                for tr in range(r0 // lv["th"], r1 // lv["th"] + 1):
                    for tc in range(c0 // lv["tw"], c1 // lv["tw"] + 1):
                        i = tr * ntx + tc
                        keys.add((rel, lv["offsets"][i], lv["counts"][i]))
    return sorted(keys)


def run_floor(args) -> dict:
    """Fetch exactly the needed COG blocks, each once, with one Range request, thread pool."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import requests

    points = read_points(args.aoi)
    root = Path(args.world_root)
    items = json.loads((root / "items.json").read_text())
    blocks = plan_floor(points, args.mode, root, items)  # oracle knowledge: not timed
    local = threading.local()

    def fetch(b):
        s = getattr(local, "s", None)
        if s is None:
            s = local.s = requests.Session()
            s.trust_env = False
        rel, off, n = b
        r = s.get(args.cog_url + rel, headers={"Range": f"bytes={off}-{off + n - 1}"},
                  timeout=60)
        r.raise_for_status()
        return len(r.content)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.threads) as pool:
        nbytes = sum(pool.map(fetch, blocks))
    return {"seconds": time.perf_counter() - t0, "n_blocks": len(blocks), "bytes": nbytes,
            "n_features": len(points), "threads": args.threads}


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
    p.add_argument("--threads", type=int, default=32)
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
