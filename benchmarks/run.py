"""Benchmark xsits against sits 0.8.0, a plain per-feature odc-stac loop and the block floor.

    python benchmarks/run.py --features 24 --latency-ms 0,50 --repeat 3
    python benchmarks/run.py --features 1000 --only xsits --latency-ms 0 --repeat 1
    python benchmarks/run.py --profile              # xsits once under pyinstrument

See benchmarks/README.md. Results go to benchmarks/results/run-<latencies>ms-<N>f.json
(or <tag>.json) and a Markdown table is printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import world as bworld  # noqa: E402

RESULTS = HERE / "results"
SITS_VENV = HERE / ".venv-sits"
SITS_PY = SITS_VENV / "bin" / "python"
OUT_ROOT = bworld.WORLD_DIR / "out"
CONTENDERS = ("xsits", "sits", "plain", "floor")

for _var in ("NO_PROXY", "no_proxy"):
    _cur = os.environ.get(_var, "")
    if "127.0.0.1" not in _cur:
        os.environ[_var] = ",".join(p for p in (_cur, "127.0.0.1", "localhost") if p)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- setup


def ensure_sits_venv() -> None:
    """Create benchmarks/.venv-sits with ``pip install sits==0.8.0`` (once)."""
    if SITS_PY.exists():
        r = subprocess.run([str(SITS_PY), "-c", "import sits, psutil"], capture_output=True)
        if r.returncode == 0:
            return
    log("creating benchmarks/.venv-sits with sits==0.8.0 (once)")
    subprocess.run([sys.executable, "-m", "venv", str(SITS_VENV)], check=True)
    subprocess.run([str(SITS_PY), "-m", "pip", "install", "-q", "sits==0.8.0", "psutil"],
                   check=True)


def world_module(name: str):
    """``world`` (default: 24 windows, one year) or ``world_full`` (2 full-size tiles)."""
    if name == "full":
        import world_full

        return world_full
    return bworld


def write_aoi(n: int, wmod=bworld) -> Path:
    pts = wmod.feature_points(n)
    path = wmod.WORLD_DIR / f"aoi_{n}.geojson"
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"id": i + 1, "pt_id": pid},
         "geometry": {"type": "Point", "coordinates": [lon, lat]}}
        for i, (pid, lon, lat) in enumerate(pts)]}
    path.write_text(json.dumps(doc))
    return path


def warm_up(api, collection: str) -> None:
    """One untimed search after (re)loading the items, so that no contender meets PostgreSQL's
    cold caches (``PgstacServer.load`` has analyzed the rows already). In session 5, before
    this, xsits' first run of a setting was 1-2 s slower than its next ones."""
    import urllib.request

    with urllib.request.urlopen(f"{api.url}/search?collections={collection}&limit=100",
                                timeout=60) as resp:
        resp.read()
    api.reset_stats()


def cog_server(kind: str, root: Path, latency_ms: float):
    """The COG server: nginx (:mod:`nginx`) or the test suite's Python ``CogServer``."""
    import nginx

    from xsits.testing.servers import CogServer

    if kind == "nginx":
        ok, why = nginx.available(latency_ms > 0)
        if ok:
            return nginx.NginxCogServer(root, latency_ms=latency_ms)
        log(f"{why}: using the Python COG server")
    return CogServer(root, latency_ms=latency_ms)


# --------------------------------------------------------------------------- measuring


class PeakRSS:
    """Poll the RSS of a process and all its descendants (summed) every ``interval`` s."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                total = 0
                for p in procs:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
                self.peak = max(self.peak, total)
            except psutil.Error:
                pass
            self._stop.wait(self.interval)

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        return self.peak


def run_contender(name: str, mode: str, *, stac_url: str, cogs, api, aoi: Path,
                  extra: list[str] | None = None, timeout: float = 3600,
                  out_root: Path = OUT_ROOT) -> dict:
    out = out_root / name / mode
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    result = out_root / f"{name}-{mode}.result.json"
    result.unlink(missing_ok=True)
    common = ["--mode", mode, "--stac", stac_url, "--aoi", str(aoi), "--out", str(out),
              "--result", str(result)]
    if name == "sits":
        cmd = [str(SITS_PY), str(HERE / "sits_runner.py"), *common]
    else:
        cmd = [sys.executable, str(HERE / "contenders.py"), name, *common,
               "--cog-url", cogs.url, "--world-root", str(bworld.WORLD_DIR)]
    cmd += extra or []
    api.reset_stats()
    cogs.reset_stats()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    mem = PeakRSS(proc.pid)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
    wall = time.perf_counter() - t0
    peak = mem.stop()
    stac = api.stats()
    cog = cogs.stats()
    rec: dict = {"contender": name, "mode": mode, "wall_s": wall, "peak_rss_mb": peak / 2**20,
                 "returncode": proc.returncode,
                 "stac_requests": int(sum(v for k, v in stac.items() if isinstance(v, int))),
                 "stac_searches": int(stac.get("/search", 0)),
                 "cog_requests": int(cog.get("requests", 0)),
                 "cog_range_requests": int(cog.get("range_requests", 0)),
                 "cog_mb": cog.get("bytes_served", 0) / 1e6,
                 "cog_files": len(cog.get("paths", {}))}
    if proc.returncode == 0 and result.exists():
        rec.update(json.loads(result.read_text()))
    else:
        rec["seconds"] = float("nan")
        rec["error"] = output[-3000:]
        log(f"  {name}/{mode} FAILED (rc={proc.returncode}): {output[-1500:]}")
    rec["out_dir"] = str(out)
    return rec


# --------------------------------------------------------------------------- comparing


def compare_outputs(xsits_rec: dict, plain_rec: dict) -> dict:
    """Open both NetCDFs of every feature and compare the band arrays (same grid, values)."""
    import numpy as np
    import xarray as xr

    xp, pp = xsits_rec.get("paths", {}), plain_rec.get("paths", {})
    common = sorted(set(xp) & set(pp))
    res = {"features_xsits": len(xp), "features_plain": len(pp), "compared": len(common),
           "equal": 0, "max_abs_diff": 0.0, "mismatches": []}
    for fid in common:
        # undecoded, as the results catalog opens them: xsits' SCL is integer with _FillValue 0
        # (NO_DATA), which default decoding would turn into NaN
        with xr.open_dataset(xp[fid], mask_and_scale=False) as a, \
                xr.open_dataset(pp[fid], mask_and_scale=False) as b:
            ok = True
            why = []
            for dim in ("time", "y", "x"):
                if a.sizes.get(dim) != b.sizes.get(dim) or not np.array_equal(
                        a[dim].values, b[dim].values):
                    ok = False
                    why.append(f"{dim} differs")
            if ok:
                for band in ("B03", "B04", "B08", "SCL"):
                    va = a[band].values.astype("float64")
                    vb = b[band].values.astype("float64")
                    if not np.array_equal(np.isnan(va), np.isnan(vb)):
                        ok = False
                        why.append(f"{band} NaN pattern differs")
                        continue
                    m = ~np.isnan(va)
                    d = float(np.max(np.abs(va[m] - vb[m]))) if m.any() else 0.0
                    res["max_abs_diff"] = max(res["max_abs_diff"], d)
                    if not np.allclose(va[m], vb[m], rtol=1e-6, atol=1e-3):
                        ok = False
                        why.append(f"{band} values differ (max {d:g})")
            if ok:
                res["equal"] += 1
            else:
                res["mismatches"].append({"feature_id": fid, "why": why})
    res["mismatches"] = res["mismatches"][:10]
    return res


# --------------------------------------------------------------------------- summary


def _median(vals):
    vals = [v for v in vals if v == v]
    return statistics.median(vals) if vals else float("nan")


def summarize(runs: list[dict]) -> list[dict]:
    rows = []
    keys = sorted({(r["latency_ms"], r["mode"], r["contender"]) for r in runs},
                  key=lambda k: (k[0], k[1], CONTENDERS.index(k[2])))
    for lat, mode, name in keys:
        rs = [r for r in runs if (r["latency_ms"], r["mode"], r["contender"]) == (lat, mode, name)]
        rows.append({
            "latency_ms": lat, "stac_latency_ms": rs[0]["stac_latency_ms"], "mode": mode,
            "contender": name, "n": len(rs), "features": rs[0].get("n_features"),
            "median_s": _median([r["seconds"] for r in rs]),
            "median_wall_s": _median([r["wall_s"] for r in rs]),
            "runs_s": [round(r["seconds"], 3) for r in rs],
            "stac_requests": _median([r["stac_requests"] for r in rs]),
            "stac_searches": _median([r["stac_searches"] for r in rs]),
            "cog_requests": _median([r["cog_requests"] for r in rs]),
            "cog_mb": _median([r["cog_mb"] for r in rs]),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
            "outputs": rs[0].get("n_outputs"),
        })

    by = {(r["latency_ms"], r["mode"], r["contender"]): r for r in rows}
    for r in rows:
        x = by.get((r["latency_ms"], r["mode"], "xsits"))
        r["vs_xsits"] = (r["median_s"] / x["median_s"]) if x and x["median_s"] else None
    return rows


def markdown(rows: list[dict]) -> str:
    head = ("| latency COG/STAC | mode | contender | median s | × xsits | STAC req (searches) "
            "| COG req | COG MB | peak RSS MB |\n|---|---|---|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in rows:
        ratio = "" if r["vs_xsits"] is None else f"{r['vs_xsits']:.1f}×"
        stac = f"{r['stac_requests']:.0f} ({r['stac_searches']:.0f})"
        lines.append(
            f"| {r['latency_ms']:g}/{r['stac_latency_ms']:g} ms | {r['mode']} | {r['contender']} "
            f"| {r['median_s']:.2f} | {ratio} | {stac} | {r['cog_requests']:.0f} "
            f"| {r['cog_mb']:.1f} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def targets(rows: list[dict]) -> list[str]:
    """The targets: xsits <= 1.0x the floor without latency, <= 1.2x its own 0 ms time with."""
    by = {(r["latency_ms"], r["mode"], r["contender"]): r for r in rows}
    out = []
    for (lat, mode, name), x in sorted(by.items()):
        if name != "xsits":
            continue
        floor, base = by.get((lat, mode, "floor")), by.get((0.0, mode, "xsits"))
        if lat == 0 and floor:
            ratio = x["median_s"] / floor["median_s"]
            out.append(f"{mode} @ 0 ms: xsits {ratio:.2f}× the floor (target ≤ 1.0×): "
                       f"{'PASS' if ratio <= 1.0 else 'MISS'}")
        elif lat > 0 and base:
            ratio = x["median_s"] / base["median_s"]
            out.append(f"{mode} @ {lat:g} ms: xsits {ratio:.2f}× its 0 ms time "
                       f"(target ≤ 1.2×): {'PASS' if ratio <= 1.2 else 'MISS'}")
        sits = by.get((lat, mode, "sits"))
        if sits:
            out.append(f"{mode} @ {lat:g} ms: xsits {sits['median_s'] / x['median_s']:.1f}× "
                       "faster than sits 0.8.0")
    return out


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--features", type=int, default=24)
    p.add_argument("--latency-ms", default="0,50", help="added latency per COG request, list")
    p.add_argument("--stac-latency-ms", type=float, default=150,
                   help="added latency per STAC request when the COG latency is > 0")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--plain-repeat", type=int, default=1,
                   help="runs of the (slow) plain loop per setting; it is mainly the "
                        "correctness reference")
    p.add_argument("--modes", default="image,patch")
    p.add_argument("--only", default="", help="comma list of contenders (xsits,sits,plain,floor)")
    p.add_argument("--floor-threads", type=int, default=2)
    p.add_argument("--xsits-kwargs", default="", help="JSON of extra compute_all kwargs")
    p.add_argument("--xsits-args", default="",
                   help="extra arguments for the xsits contender, e.g. "
                        "\"--open-kwargs '{...}' --gdal '{...}'\" (local experiments)")
    p.add_argument("--profile", action="store_true",
                   help="run xsits once per mode under pyinstrument (no other contender), "
                        "with compute_all(scheduler='synchronous') unless --xsits-kwargs")
    p.add_argument("--cog-server", choices=("nginx", "python"), default="nginx",
                   help="COG server: nginx (the issue's setup; default, falls back to python "
                        "when nginx is missing) or the test suite's threaded Python server")
    p.add_argument("--stac-hydrate", choices=("api", "db"), default="api",
                   help="where stac-fastapi-pgstac hydrates items: in Python (USE_API_HYDRATE, "
                        "default: a fifth of the server CPU, which shares the client's cores "
                        "here) or in PostgreSQL (its default; until session 4)")
    p.add_argument("--world", choices=("default", "full"), default="default",
                   help="default: world.py's 24 windows (one year); full: world_full.py's 2 "
                        "full-size tiles (4 dates), features spread over them")
    p.add_argument("--tag", default="", help="label and file name of the results JSON")
    args = p.parse_args(argv)

    latencies = [float(x) for x in args.latency_ms.split(",") if x != ""]
    modes = [m for m in args.modes.split(",") if m]
    names = [c for c in (args.only.split(",") if args.only else CONTENDERS) if c]
    if args.profile:
        # pyinstrument samples the main thread only: run the feature tasks there
        names, args.repeat = ["xsits"], 1
        args.xsits_kwargs = args.xsits_kwargs or json.dumps({"scheduler": "synchronous"})
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")

    if "sits" in names:
        ensure_sits_venv()
    t0 = time.perf_counter()
    wmod = world_module(args.world)
    log(f"building / reusing the benchmark world in {wmod.WORLD_DIR} ...")
    world = wmod.get_world()
    log(f"world ready in {time.perf_counter() - t0:.1f} s: {len(world.items_meta)} items")
    aoi = write_aoi(args.features, wmod)

    from xsits.testing.pgstac import PgstacServer
    from xsits.testing.servers import FaultProxy

    # `kill` stops the servers as Ctrl-C does (PostgreSQL and nginx would outlive us otherwise)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    runs: list[dict] = []
    comparisons: dict = {}
    out_root = wmod.WORLD_DIR / "out" / stamp  # per invocation: concurrent ones never collide
    partial = RESULTS / f"{stamp}.partial.json"
    with PgstacServer(api_hydrate=args.stac_hydrate == "api") as api:
        log(f"STAC API up at {api.url} ({api.startup_seconds:.1f} s)")
        for lat in latencies:
            stac_lat = args.stac_latency_ms if lat > 0 else 0.0
            with cog_server(args.cog_server, world.root, lat) as cogs:
                api.load(world.collection, world.item_dicts(cogs.url))
                warm_up(api, world.collection["id"])
                proxy = FaultProxy(api.url, latency_ms=stac_lat).start() if stac_lat else None
                stac_url = proxy.url if proxy else api.url
                log(f"latency COG {lat:g} ms / STAC {stac_lat:g} ms: {stac_url} {cogs.url}")
                try:
                    for rep in range(args.repeat):
                        for mode in modes:
                            order = names[rep % len(names):] + names[:rep % len(names)]
                            for name in order:
                                if name == "plain" and rep >= args.plain_repeat:
                                    continue
                                extra = []
                                if name == "floor":
                                    extra = ["--threads", str(args.floor_threads)]
                                if name == "xsits" and args.xsits_kwargs:
                                    extra = ["--xsits-kwargs", args.xsits_kwargs]
                                if name == "xsits" and args.xsits_args:
                                    extra += shlex.split(args.xsits_args)
                                if args.profile:
                                    extra += ["--profile",
                                              str(RESULTS / f"{stamp}-profile-{mode}-{lat:g}ms")]
                                rec = run_contender(name, mode, stac_url=stac_url, cogs=cogs,
                                                    api=api, aoi=aoi, extra=extra,
                                                    out_root=out_root)
                                rec.update(latency_ms=lat, stac_latency_ms=stac_lat, repeat=rep)
                                runs.append(rec)
                                partial.write_text(json.dumps(
                                    [{k: v for k, v in r.items() if k != "paths"}
                                     for r in runs], default=str))
                                log(f"  rep {rep} {mode:5s} {name:5s} {rec['seconds']:8.2f} s "
                                    f"(wall {rec['wall_s']:.1f}) STAC {rec['stac_requests']} "
                                    f"COG {rec['cog_requests']} {rec['cog_mb']:.1f} MB "
                                    f"RSS {rec['peak_rss_mb']:.0f} MB out "
                                    f"{rec.get('n_outputs')}")
                            for other in ("plain", "floor"):
                                # xsits vs plain keeps its old key; the floor's is prefixed
                                key = f"{mode}@{lat:g}ms" if other == "plain" else \
                                    f"floor {mode}@{lat:g}ms"
                                if key in comparisons or not {"xsits", other} <= set(order):
                                    continue
                                xr_ = [r for r in runs if r["contender"] == "xsits"
                                       and r["mode"] == mode and r["latency_ms"] == lat]
                                pr_ = [r for r in runs if r["contender"] == other
                                       and r["mode"] == mode and r["latency_ms"] == lat]
                                if xr_ and pr_ and "paths" in xr_[-1] and "paths" in pr_[-1]:
                                    try:
                                        comparisons[key] = compare_outputs(xr_[-1], pr_[-1])
                                    except Exception as err:  # never lose the timings
                                        comparisons[key] = {"error": repr(err), "equal": 0,
                                                            "compared": 0, "max_abs_diff": 0}
                                    c = comparisons[key]
                                    log(f"  outputs xsits vs {other} ({key}): {c['equal']}/"
                                        f"{c['compared']} equal, max |diff| "
                                        f"{c['max_abs_diff']:g}")
                finally:
                    if proxy:
                        proxy.stop()

    rows = summarize(runs)
    table = markdown(rows)
    checks = targets(rows)
    import platform

    doc = {"timestamp": stamp, "tag": args.tag, "argv": sys.argv[1:],
           "cog_server": args.cog_server, "stac_hydrate": args.stac_hydrate,
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                       "platform": platform.platform()},
           "world": {"name": args.world, "spec": str(wmod.spec()),
                     "items": len(world.items_meta)},
           "summary": rows, "targets": checks, "comparisons": comparisons,
           "runs": [{k: v for k, v in r.items() if k != "paths"} for r in runs]}
    # one file per benchmark setting, overwritten by the next run of it: git keeps the latest
    name = args.tag or (f"run-{args.latency_ms.replace(',', '+')}ms-{args.features}f"
                        f"{'-full' if args.world == 'full' else ''}")
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=1, default=str))
    partial.unlink(missing_ok=True)
    print()
    print(table)
    print()
    for c in checks:
        print("-", c)
    for k, c in comparisons.items():
        other = "floor" if k.startswith("floor ") else "plain loop"
        print(f"- outputs xsits vs {other}, {k.removeprefix('floor ')}: {c['equal']}/"
              f"{c['compared']} features equal (max |diff| {c['max_abs_diff']:g})")
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
