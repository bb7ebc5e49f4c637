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

Results: ``benchmarks/results/sample-<N>p.json`` (or ``<tag>.json``) and a Markdown table.
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


def write_aoi(n: int) -> Path:
    """``n`` labelled points (GeoJSON): ``pt_id``, ``crop``."""
    pts = bworld.feature_points(n)
    path = bworld.WORLD_DIR / f"sample_aoi_{n}.geojson"
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"pt_id": pid, "crop": CROPS[i % len(CROPS)]},
         "geometry": {"type": "Point", "coordinates": [lon, lat]}}
        for i, (pid, lon, lat) in enumerate(pts)]}
    path.write_text(json.dumps(doc))
    return path


# --------------------------------------------------------------------------- contenders


def _steps():
    from xsits import steps

    return [steps.scl_mask(), steps.gapfill("linear")]


def run_sample(args, **kwargs) -> dict:
    import xsits

    t0 = time.perf_counter()
    aoi = xsits.read_aoi(args.aoi, id_column="pt_id")
    table = xsits.sample(aoi, stac=args.stac, **OPEN, steps=_steps(), progress=False,
                         out=Path(args.out) / "points.parquet", **kwargs)
    return {"seconds": time.perf_counter() - t0, "rows": len(table),
            "points": int(table.feature_id.nunique()), "missing": len(table.attrs["missing"])}


def run_cubes(args) -> dict:
    import pandas as pd

    import xsits
    from xsits.batch import AoiSource, compute_all

    t0 = time.perf_counter()
    aoi = xsits.read_aoi(args.aoi, id_column="pt_id")
    report = compute_all(AoiSource(aoi, {"stac": args.stac, **OPEN, "mode": "patch",
                                         "size": (1, 1)}),
                         steps=_steps(), out_dir=Path(args.out) / "cubes", format="parquet",
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


def _compare(sample_dir: Path, cubes_dir: Path) -> dict:
    """``sample``'s table against another contender's (same rows, same band values)."""
    import numpy as np
    import pandas as pd

    a = pd.read_parquet(sample_dir / "points.parquet").sort_values(["feature_id", "time"])
    b = pd.read_parquet(cubes_dir / "points.parquet").sort_values(["feature_id", "time"])
    res = {"rows_sample": len(a), "rows_cubes": len(b), "equal": False}
    if len(a) == len(b) and (a.feature_id.values == b.feature_id.values).all() and \
            (a.time.values == b.time.values).all():
        res["equal"] = all(np.array_equal(a[c].to_numpy(), b[c].to_numpy(), equal_nan=True)
                           for c in ("B03", "B04", "B08", "SCL")) and \
            (a.crop.values == b.crop.values).all()
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", type=int, default=2000)
    p.add_argument("--sits-points", type=int, default=0,
                   help="points for sits 0.8.0 (0: not run); its time is extrapolated")
    p.add_argument("--only", default="sample,cubes",
                   help="comma list: sample,cubes,processes")
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
               "processes": lambda a: run_sample(a, scheduler="processes")}[args.contender]
        out = run(args)
        Path(args.result).write_text(json.dumps(out))
        return 0
    return drive(args)


def _child(name: str, stac_url: str, aoi: Path, out: Path, api, cogs, spy: str = "") -> dict:
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
               "--aoi", str(aoi), "--out", str(out), "--result", str(result)]
        if spy:
            cmd = [str(Path(sys.executable).with_name("py-spy")), "record", "--format", "raw",
                   "--rate", "50", "--threads", "--output", f"{spy}-{name}.txt", "--", *cmd]
    api.reset_stats()
    cogs.reset_stats()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    mem = brun.PeakRSS(proc.pid)
    output, _ = proc.communicate(timeout=6 * 3600)
    rec = {"contender": name, "wall_s": time.perf_counter() - t0,
           "peak_rss_mb": mem.stop() / 2**20, "returncode": proc.returncode,
           "stac_requests": int(sum(v for v in api.stats().values() if isinstance(v, int))),
           "cog_requests": int(cogs.stats().get("requests", 0))}
    if proc.returncode == 0 and result.exists():
        rec.update(json.loads(result.read_text()))
    else:
        rec["error"] = output[-3000:]
        brun.log(f"  {name} FAILED (rc={proc.returncode}): {output[-1500:]}")
    return rec


def drive(args) -> int:
    import signal

    from xsits.testing.servers import PgstacServer

    names = [n for n in args.only.split(",") if n]
    if args.sits_points:
        brun.ensure_sits_venv()
    brun.log(f"building / reusing the benchmark world in {bworld.WORLD_DIR} ...")
    world = bworld.get_world()
    aoi = write_aoi(args.points)
    sits_aoi = write_aoi(args.sits_points) if args.sits_points else None
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    out_root = bworld.WORLD_DIR / "out" / f"sample-{stamp}"
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    runs = []
    with PgstacServer(api_hydrate=True) as api:
        with brun.cog_server("nginx", world.root, args.latency_ms) as cogs:
            api.load(world.collection, world.item_dicts(cogs.url))
            brun.warm_up(api, world.collection["id"])
            todo = [(n, aoi) for n in names] + ([("sits", sits_aoi)] if sits_aoi else [])
            for name, path in todo:
                rec = _child(name, api.url, path, out_root / name, api, cogs, args.py_spy)
                rec["n_points"] = args.sits_points if name == "sits" else args.points
                runs.append(rec)
                brun.log(f"  {name:6s} {rec.get('seconds', float('nan')):8.1f} s "
                         f"(wall {rec['wall_s']:.1f}) RSS {rec['peak_rss_mb']:.0f} MB "
                         f"STAC {rec['stac_requests']} COG {rec['cog_requests']} "
                         f"rows {rec.get('rows')}")
    comparison = {}
    for other in ("cubes", "processes"):
        if {"sample", other} <= set(names):
            comparison[other] = _compare(out_root / "sample", out_root / other)
            brun.log(f"  sample vs {other}: {comparison[other]}")
    by = {r["contender"]: r for r in runs}
    base = by.get("sample", {}).get("seconds")
    lines = ["| contender | points | seconds | s per 1,000 points | × sample "
             "| peak RSS MB | STAC req | COG req |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        secs = r.get("seconds", float("nan"))
        per_k = secs / r["n_points"] * 1000
        ratio = per_k / (base / args.points * 1000) if base else float("nan")
        lines.append(f"| {r['contender']} | {r['n_points']} | {secs:.1f} | {per_k:.1f} | "
                     f"{ratio:.1f}× | {r['peak_rss_mb']:.0f} | {r['stac_requests']} | "
                     f"{r['cog_requests']} |")
    table = "\n".join(lines)
    doc = {"timestamp": stamp, "argv": sys.argv[1:], "open_kwargs": OPEN,
           "world": {"spec": str(bworld.spec()), "items": len(world.items_meta)},
           "runs": runs, "comparison": comparison}
    path = brun.RESULTS / f"{args.tag or f'sample-{args.points}p'}.json"  # latest of its kind
    path.write_text(json.dumps(doc, indent=1, default=str))
    print()
    print(table)
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
