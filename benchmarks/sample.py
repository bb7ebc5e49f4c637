"""Benchmark ``xsits.sample`` (one table of point time series) on the local world.

    python benchmarks/sample.py --points 2000                 # sample vs the per-feature cubes
    python benchmarks/sample.py --points 2000 --sits-points 100   # and sits 0.8.0 on 100 points

A script, not a timed test (see benchmarks/README.md). It reuses ``run.py``'s world (24 UTM
windows, one year every 5 days, B03 B04 B08 SCL), servers (stac-fastapi-pgstac + nginx) and
peak-RSS meter. ``--points N``: the 24 points, then points scattered within +-1.2 km of them
(``world.feature_points``), each with a ``crop`` label. Workload: cloud < 10 %, EPSG:3035 at
20 m, the point's pixel (a 1x1 patch), SCL mask then linear gap-fill. Contenders, each in its
own process:

- ``sample``: ``xsits.sample(aoi, steps=..., out="points.parquet")``.
- ``processes``: the same with ``scheduler="processes"`` (one process per core).
- ``cubes``: the per-feature cube path: ``compute_all(AoiSource(aoi, mode="patch",
  size=(1, 1)), steps, format="parquet")``, then the per-feature files concatenated into one
  table (what a user does today); its values are compared with ``sample``'s.
- ``sits``: sits 0.8.0's ``Multiproc`` in patch mode with ``dimx = dimy = 1`` (one cube per
  point) on the first ``--sits-points`` points; its time per point is extrapolated to N.
- ``floor``: the block-once floor (``floor_points.py``): one search per tile, each needed
  (file, block) read once with rasterio on ``--floor-threads`` threads, the points' pixels
  picked as ``sample`` picks them, the same steps; its table is compared with ``sample``'s.

Options: ``--crs utm --resolution 10`` (each point's UTM grid at 10 m: window copies) instead
of EPSG:3035 at 20 m; ``--steps none`` (raw values); ``--world full`` (``world_full.py``:
full-size Sentinel-2 tiles, points spread over them); ``--points 20000,100000`` (one run and
one results file per size). Each run records seconds, seconds per 1,000 points, peak RSS
(process tree), STAC requests and searches, COG requests and bytes.

Results: ``benchmarks/results/sample-<N>p.json`` (or ``<tag>.json``, ``<tag>-<N>p.json`` for a
list of sizes) and a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import run as brun  # noqa: E402  (world, servers, PeakRSS, the sits venv)
import world as bworld  # noqa: E402

START, END = "2024-01-01", "2025-02-01"
BANDS = ("B03", "B04", "B08", "SCL")
OPEN = {"collection": "sentinel-2-l2a", "bands": BANDS, "start": START, "end": END,
        "query": {"eo:cloud_cover": {"lt": 10}}, "resolution": 20, "crs": "EPSG:3035"}
CROPS = ("maize", "wheat", "rapeseed", "grassland")
STEPS = "scl_mask,gapfill"


def world_module(name: str):
    """The world's module: ``world`` (default: 24 windows, one year) or ``world_full``."""
    if name == "full":
        import world_full

        return world_full
    return bworld


def open_kwargs(args) -> dict:
    """The workload's ``open_cubes`` arguments for ``--crs`` / ``--resolution``/ ``--world``."""
    crs = "utm" if str(args.crs).lower() == "utm" else args.crs
    out = {**OPEN, "crs": crs, "resolution": float(args.resolution)}
    if args.world == "full":
        import world_full

        out.update(start=world_full.START, end=world_full.END)
    return out


def write_aoi(n: int, wmod=bworld) -> Path:
    """``n`` labelled points (GeoJSON): ``pt_id``, ``crop``."""
    pts = wmod.feature_points(n)
    path = wmod.WORLD_DIR / f"sample_aoi_{n}.geojson"
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"pt_id": pid, "crop": CROPS[i % len(CROPS)]},
         "geometry": {"type": "Point", "coordinates": [lon, lat]}}
        for i, (pid, lon, lat) in enumerate(pts)]}
    path.write_text(json.dumps(doc))
    return path


# --------------------------------------------------------------------------- contenders


def _steps(args):
    from floor_points import _steps as make

    return make(args.steps)


def run_sample(args, **kwargs) -> dict:
    import xsits

    t0 = time.perf_counter()
    aoi = xsits.read_aoi(args.aoi, id_column="pt_id")
    table = xsits.sample(aoi, stac=args.stac, **open_kwargs(args), steps=_steps(args),
                         progress=False,
                         out=Path(args.out) / "points.parquet", **kwargs)
    return {"seconds": time.perf_counter() - t0, "rows": len(table),
            "points": int(table.feature_id.nunique()), "missing": len(table.attrs["missing"])}


def run_cubes(args) -> dict:
    import pandas as pd

    import xsits
    from xsits.batch import AoiSource, compute_all

    t0 = time.perf_counter()
    aoi = xsits.read_aoi(args.aoi, id_column="pt_id")
    report = compute_all(AoiSource(aoi, {"stac": args.stac, **open_kwargs(args),
                                         "mode": "patch", "size": (1, 1)}),
                         steps=_steps(args), out_dir=Path(args.out) / "cubes", format="parquet",
                         progress=False)
    t1 = time.perf_counter()
    written = report[report.status == "written"]
    labels = pd.DataFrame(aoi.drop(columns="geometry"))
    table = pd.concat([pd.read_parquet(p) for p in written.path], ignore_index=True)
    table = labels.merge(table, on="feature_id")  # the labels, as sample gives them
    table.to_parquet(Path(args.out) / "points.parquet", index=False)
    t2 = time.perf_counter()
    return {"seconds": t2 - t0, "t_compute_all": t1 - t0, "t_table": t2 - t1,
            "rows": len(table), "points": int(table.feature_id.nunique())}


# --------------------------------------------------------------------------- driver


def _compare(sample_dir: Path, other_dir: Path) -> dict:
    """``sample``'s table against another contender's: same rows (feature_id, time), same
    band values and labels; how many rows are missing on either side or differ."""
    import numpy as np
    import pandas as pd

    keys = ["feature_id", "time"]
    a = pd.read_parquet(sample_dir / "points.parquet")
    b = pd.read_parquet(other_dir / "points.parquet")
    res = {"rows_sample": len(a), "rows_other": len(b)}
    a["time"] = a["time"].astype("datetime64[ns]")
    b["time"] = b["time"].astype("datetime64[ns]")
    m = a.merge(b, on=keys, how="outer", suffixes=("_a", "_b"), indicator=True)
    res["only_sample"] = int((m._merge == "left_only").sum())
    res["only_other"] = int((m._merge == "right_only").sum())
    both = m[m._merge == "both"]
    bad = np.zeros(len(both), bool)
    per_column = {}
    for c in (*BANDS, "crop"):
        if f"{c}_a" not in both or f"{c}_b" not in both:
            continue
        va, vb = both[f"{c}_a"].to_numpy(), both[f"{c}_b"].to_numpy()
        if c == "crop":
            diff = va != vb
        else:
            va, vb = va.astype("float64"), vb.astype("float64")
            diff = ~((va == vb) | (np.isnan(va) & np.isnan(vb)))
        per_column[c] = int(diff.sum())
        bad |= diff
    res.update(compared=len(both), mismatched_rows=int(bad.sum()), per_column=per_column)
    res["equal"] = res["only_sample"] == res["only_other"] == res["mismatched_rows"] == 0
    if bad.any():
        res["examples"] = both[bad].head(5).astype(str).to_dict("records")
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", default="2000",
                   help="number of points, or a comma list (one run per size), e.g. "
                        "20000,100000")
    p.add_argument("--sits-points", type=int, default=0,
                   help="points for sits 0.8.0 (0: not run); its time is extrapolated")
    p.add_argument("--only", default="sample,cubes",
                   help="comma list: sample,cubes,processes,floor")
    p.add_argument("--crs", default="EPSG:3035", help="output CRS: EPSG:3035 or utm")
    p.add_argument("--resolution", type=float, default=20, help="output pixel size, m")
    p.add_argument("--steps", default=STEPS, help="comma list of scl_mask,gapfill, or none")
    p.add_argument("--world", choices=("default", "full"), default="default",
                   help="default: world.py's 24 windows; full: world_full.py's full tiles")
    p.add_argument("--floor-threads", type=int, default=2, help="threads of the floor")
    p.add_argument("--timeout-h", type=float, default=12,
                   help="hours after which a contender is stopped (100,000 points of today's "
                        "sample: ~5 h)")
    p.add_argument("--tag", default="", help="name of the results JSON (default sample-<N>p)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="added per COG request")
    p.add_argument("--py-spy", default="", metavar="PREFIX",
                   help="record each xsits contender with py-spy: PREFIX-<name>.txt "
                        "(collapsed stacks of all threads)")
    p.add_argument("--contender", default="", help=argparse.SUPPRESS)  # in the child
    p.add_argument("--stac", default="", help=argparse.SUPPRESS)
    p.add_argument("--aoi", default="", help=argparse.SUPPRESS)
    p.add_argument("--out", default="", help=argparse.SUPPRESS)
    p.add_argument("--result", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.contender:  # one contender, in its own process
        run = {"sample": run_sample, "cubes": run_cubes,
               "processes": lambda a: run_sample(a, scheduler="processes"),
               "floor": _run_floor}[args.contender]
        out = run(args)
        Path(args.result).write_text(json.dumps(out, default=str))
        return 0
    sizes = [int(n) for n in str(args.points).split(",") if n]
    for n in sizes:
        args.points = n
        rc = drive(args, tag=f"{args.tag}-{n}p" if args.tag and len(sizes) > 1 else args.tag)
        if rc:
            return rc
    return 0


def _run_floor(args) -> dict:
    from floor_points import run_floor

    return run_floor(args, open_kwargs(args))


def _child(name: str, stac_url: str, aoi: Path, out: Path, api, cogs, spy: str = "",
           args=None) -> dict:
    import shutil
    import subprocess

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    result = out / "result.json"
    if name == "sits":
        cmd = [str(brun.SITS_PY), str(HERE / "sits_runner.py"), "--mode", "patch",
               "--size", "1", "--stac", stac_url, "--aoi", str(aoi), "--out", str(out / "nc"),
               "--result", str(result)]
    else:
        cmd = [sys.executable, __file__, "--contender", name, "--stac", stac_url,
               "--aoi", str(aoi), "--out", str(out), "--result", str(result),
               "--crs", str(args.crs), "--resolution", f"{args.resolution:g}",
               "--steps", args.steps, "--world", args.world,
               "--floor-threads", str(args.floor_threads)]
        if spy:
            cmd = [str(Path(sys.executable).with_name("py-spy")), "record", "--format", "raw",
                   "--rate", "50", "--threads", "--output", f"{spy}-{name}.txt", "--", *cmd]
    api.reset_stats()
    cogs.reset_stats()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    mem = brun.PeakRSS(proc.pid)
    try:
        output, _ = proc.communicate(timeout=args.timeout_h * 3600)
    except subprocess.TimeoutExpired:  # record the timeout, go on with the next contender
        proc.kill()
        output, _ = proc.communicate()
        output += f"\ntimed out after {args.timeout_h:g} h"
    stac, cog = api.stats(), cogs.stats()
    rec = {"contender": name, "wall_s": time.perf_counter() - t0,
           "peak_rss_mb": mem.stop() / 2**20, "returncode": proc.returncode,
           "stac_requests": int(sum(v for v in stac.values() if isinstance(v, int))),
           "stac_searches": int(stac.get("/search", 0)),
           "cog_requests": int(cog.get("requests", 0)),
           "cog_range_requests": int(cog.get("range_requests", 0)),
           "cog_mb": cog.get("bytes_served", 0) / 1e6,
           "cog_files": len(cog.get("paths", {}))}
    if proc.returncode == 0 and result.exists():
        rec.update(json.loads(result.read_text()))
    else:
        rec["error"] = output[-3000:]
        brun.log(f"  {name} FAILED (rc={proc.returncode}): {output[-1500:]}")
    return rec


def drive(args, tag: str = "") -> int:
    import signal

    from xsits.testing.pgstac import PgstacServer

    names = [n for n in args.only.split(",") if n]
    if args.sits_points:
        brun.ensure_sits_venv()
    wmod = world_module(args.world)
    brun.log(f"building / reusing the benchmark world in {wmod.WORLD_DIR} ...")
    world = wmod.get_world()
    aoi = write_aoi(args.points, wmod)
    sits_aoi = write_aoi(args.sits_points, wmod) if args.sits_points else None
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    out_root = wmod.WORLD_DIR / "out" / f"sample-{stamp}"
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    runs = []
    with PgstacServer(api_hydrate=True) as api:
        with brun.cog_server("nginx", world.root, args.latency_ms) as cogs:
            api.load(world.collection, world.item_dicts(cogs.url))
            brun.warm_up(api, world.collection["id"])
            todo = [(n, aoi) for n in names] + ([("sits", sits_aoi)] if sits_aoi else [])
            for name, path in todo:
                rec = _child(name, api.url, path, out_root / name, api, cogs, args.py_spy,
                             args)
                rec["n_points"] = args.sits_points if name == "sits" else args.points
                rec["s_per_1000_points"] = rec.get("seconds", float("nan")) / \
                    rec["n_points"] * 1000
                runs.append(rec)
                brun.log(f"  {name:6s} {rec.get('seconds', float('nan')):8.1f} s "
                         f"(wall {rec['wall_s']:.1f}) RSS {rec['peak_rss_mb']:.0f} MB "
                         f"STAC {rec['stac_requests']} ({rec['stac_searches']} searches) "
                         f"COG {rec['cog_requests']} {rec['cog_mb']:.1f} MB "
                         f"rows {rec.get('rows')}")
    comparison = {}
    for other in ("cubes", "processes", "floor"):
        if {"sample", other} <= set(names):
            try:
                comparison[other] = _compare(out_root / "sample", out_root / other)
            except Exception as err:  # never lose the timings
                comparison[other] = {"error": repr(err), "equal": False}
            brun.log(f"  sample vs {other}: {comparison[other]}")
    by = {r["contender"]: r for r in runs}
    base = by.get("sample", {}).get("seconds")
    lines = ["| contender | points | seconds | s per 1,000 points | × sample "
             "| peak RSS MB | STAC req (searches) | COG req | COG MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        secs = r.get("seconds", float("nan"))
        per_k = secs / r["n_points"] * 1000
        ratio = f"{per_k / (base / args.points * 1000):.2f}×" if base else "–"
        lines.append(f"| {r['contender']} | {r['n_points']} | {secs:.1f} | {per_k:.1f} | "
                     f"{ratio} | {r['peak_rss_mb']:.0f} | {r['stac_requests']} "
                     f"({r['stac_searches']}) | {r['cog_requests']} | {r['cog_mb']:.1f} |")
    table = "\n".join(lines)
    doc = {"timestamp": stamp, "argv": sys.argv[1:], "open_kwargs": open_kwargs(args),
           "steps": args.steps, "world": {"name": args.world, "spec": str(wmod.spec()),
                                          "items": len(world.items_meta)},
           "runs": runs, "comparison": comparison}
    path = brun.RESULTS / f"{tag or f'sample-{args.points}p'}.json"  # latest of its kind
    path.write_text(json.dumps(doc, indent=1, default=str))
    print()
    print(table)
    for other, c in comparison.items():
        print(f"- sample vs {other}: {'EQUAL' if c.get('equal') else 'DIFFERENT'} "
              f"({c.get('compared')} rows compared, {c.get('mismatched_rows')} mismatched, "
              f"{c.get('only_sample')} only in sample, {c.get('only_other')} only in {other})")
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
