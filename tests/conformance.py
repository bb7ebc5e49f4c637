"""Reader conformance: xsits' loads against ``odc.stac.load`` with its default (GDAL) reader.

Cases are generated in ``conformance_cases.py`` (:func:`cases`), their files and items made
by ``conformance_files.py``; each writes its raster with rasterio / GDAL at run
time (files are shared between cases with the same layout), serves it from a
:class:`~xsits.testing.servers.CogServer`, indexes PC-shaped STAC items (no ``raster:bands``
unless the case asks) in the test STAC API, then loads the same items on the same geobox:

- the truth: ``odc.stac.load(items, ..., chunks=None)`` with its default reader (no driver),
  the band's dtype / nodata from ``rasterio`` for items without ``raster:bands``
  (floating-point bands with ``nodata=nan``: xsits loads their missing pixels as NaN);
- xsits' driver path: :func:`xsits.cube.load.load_cube` (``odc.stac.load(driver=CogDriver(...))``,
  dtypes from :func:`xsits.cube.load.band_config`), and for the ``api`` cases
  :func:`xsits.open_cubes` in image or patch mode on the STAC API;
- for the cases with ``points``: the points reader (:func:`xsits.cube.points.read_points`)
  on windows across the file, each against ``odc.stac.load`` on that window.

Equal means the same dtype, the same nodata attribute, identical values and identical NaN
positions. There is no tolerance anywhere. Each case records whether the fast reader served
its reads, GDAL did, or both (``reader.last_load_stats()``).

Fault cases inject per-path faults in the COG server: 500 / 503, a truncated body or a
dropped connection, on the header's requests or on the reads after it, then success, must
come back equal (retried); 404 / 403 must raise a :class:`LoadError` naming the href
(without its query string) within seconds. Through ``open_cubes`` (with features of good files
in the same call) the bad feature is in ``cubes.missing`` with that reason when open_cubes read
its header (the first file of the call's band and collection), else its lazy cube raises that
LoadError at once when computed; the other features' cubes are equal either way.

``python tests/conformance.py --table`` runs the whole suite (starting its own servers) and
prints the table of cases per axis.
"""

from __future__ import annotations

import math
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from conformance_cases import (
    END,
    ORIGINS,
    START,
    SUITE,
    Case,
    Layout,
    Result,
    cases,
)
from conformance_files import (
    case_footprint,
    case_geobox,
    item_id,
    make_collection,
    make_item,
    write_raster,
)

# --------------------------------------------------------------------------- comparing


def _nodata_attr(da: Any) -> Any:
    nd = da.attrs.get("nodata", da.encoding.get("_FillValue"))
    return None if nd is None else float(nd)


def compare(got: Any, want: Any, bands: Sequence[str]) -> str:
    """Why two Datasets differ ('' when equal): dtype, nodata, values, NaN positions."""
    for band in bands:
        g, w = got[band], want[band]
        if g.dtype != w.dtype:
            return f"{band}: dtype {g.dtype} != {w.dtype}"
        gn, wn = _nodata_attr(g), _nodata_attr(w)
        if not (gn == wn or (gn is not None and wn is not None and math.isnan(gn)
                             and math.isnan(wn))):
            return f"{band}: nodata {gn} != {wn}"
        if g.shape != w.shape:
            return f"{band}: shape {g.shape} != {w.shape}"
        gv, wv = g.values, w.values
        valid = ~np.isnan(wv) if wv.dtype.kind == "f" else np.ones(wv.shape, bool)
        if wn is not None and not math.isnan(wn):
            valid &= wv != wn
        if valid.mean() < 0.2:  # a case must compare pixels, not an empty window
            return f"{band}: only {100 * valid.mean():.1f} % of the truth is valid"
        if not np.array_equal(gv, wv, equal_nan=gv.dtype.kind == "f"):
            if gv.dtype.kind == "f":
                nan = np.isnan(gv) != np.isnan(wv)
                diff = nan | (~np.isnan(gv) & (gv != wv))
            else:
                diff = gv != wv
            return f"{band}: {int(diff.sum())} of {diff.size} pixels differ " \
                f"({100 * diff.mean():.1f} %)"
    return ""


def truth_cfg(items: Sequence[Any], band: str) -> dict:
    """The band's dtype / nodata from rasterio when the items have no raster:bands."""
    import rasterio

    asset = band.split(".")[0]
    it = items[0]
    if it.assets[asset].extra_fields.get("raster:bands"):
        return {}
    with rasterio.open(it.assets[asset].href) as f:
        dtype, nodata = f.dtypes[0], f.nodata
    if nodata is not None and np.dtype(dtype).kind in "iu":
        nodata = int(nodata)
    return {"*": {"assets": {f"{asset}.*": {"data_type": dtype, "nodata": nodata}}}}


def truth_dtype(items: Sequence[Any], band: str) -> str:
    """The band's dtype as odc-stac loads it (its raster:bands', else the file's)."""
    import rasterio

    asset, _, index = band.partition(".")
    rbs = items[0].assets[asset].extra_fields.get("raster:bands")
    if rbs:
        return rbs[int(index or 1) - 1].get("data_type", "float32")
    with rasterio.open(items[0].assets[asset].href) as f:
        return f.dtypes[0]


def load_truth(items: Sequence[Any], gbox: Any, band: str, resampling: str) -> Any:
    """odc-stac + GDAL; a floating-point band with NaN for missing pixels, as xsits loads it
    (``nodata=nan``: the files' nodata is still what GDAL reads as missing)."""
    import odc.stac

    nodata = {"nodata": float("nan")} if np.dtype(truth_dtype(items, band)).kind == "f" else {}
    return odc.stac.load(items, bands=[band], geobox=gbox, groupby="solar_day",
                         resampling=resampling, chunks=None,
                         stac_cfg=truth_cfg(items, band), **nodata)


def point_windows(gbox: Any, size: int, n: int = 9, seed: int = 7) -> list[Any]:
    """``n`` square windows of ``size`` output pixels on ``gbox``: over its nodata corner,
    across the file's edges and inside it (the file and 2 pixels around fill ``gbox``)."""
    rng = np.random.default_rng(seed)
    ny, nx = gbox.shape.yx
    top = [(2, 2), (3, nx // 8), (ny // 8, 3), (0, nx // 2), (ny // 2, 0),
           (ny - size, nx - size), (ny // 2 + 1, nx // 3)]
    spots = top + [(int(rng.integers(0, ny - size)), int(rng.integers(0, nx - size)))
                   for _ in range(n - len(top))]
    return [gbox[r:r + size, c:c + size] for r, c in spots]


def check_points(items: Sequence[Any], gbox: Any, band: str, size: int) -> str:
    """The points reader (``xsits.cube.points.read_points``) against GDAL per window.

    Each window's truth is ``odc.stac.load`` on that window (what its patch cube reads).
    '' when equal; else why not. The windows together must hold valid and nodata pixels.
    """
    from xsits.cube import points
    from xsits.cube.load import band_config
    from xsits.cube.plan import plan_items

    wins = point_windows(gbox, size)
    plan = plan_items(items, [band], stac_cfg=band_config(items, [band]))
    batches = points.read_points(plan, [list(range(len(items)))] * len(wins),
                                 points.Windows.of(wins))
    if batches is None:
        return "the points reader refused the files"
    seen_valid = seen_missing = 0
    for batch in batches:
        for j, k in enumerate(batch.points):
            want = load_truth(items, wins[k], band, "nearest")[band]
            got = batch.values[band][:, :, j * size:(j + 1) * size]
            if len(batch.groups) != want.sizes["time"] or got.dtype != want.dtype:
                return f"points: window {k}: {len(batch.groups)} dates of {got.dtype}, " \
                    f"GDAL {want.sizes['time']} of {want.dtype}"
            wv = want.values
            if not np.array_equal(got, wv, equal_nan=wv.dtype.kind == "f"):
                return f"points: window {k}: {int((got != wv).sum())} pixels differ"
            nd = _nodata_attr(want)
            missing = np.isnan(wv) if nd is None or math.isnan(nd) else wv == nd
            seen_missing += int(missing.sum())
            seen_valid += int((~missing).sum())
    if not seen_valid or not seen_missing:
        return f"points: {seen_valid} valid and {seen_missing} nodata pixels compared"
    return ""


def load_driver(items: Sequence[Any], gbox: Any, band: str, resampling: str) -> Any:
    """xsits' driver path: :func:`xsits.cube.load.load_cube` (its plan, ``chunked_load`` and
    ``CogDriver``), computed (a small cube is one task that loads without dask)."""
    from xsits.cube.load import load_cube
    from xsits.errors import LoadError

    try:
        return load_cube(items, gbox, bands=[band], resampling=resampling).compute()
    except LoadError:
        raise
    except Exception as err:  # as before: every failure to read is a LoadError
        raise LoadError(f"cannot read the cube: {err}") from err


def _reader_of(stats: dict[str, int]) -> str:
    f, g = stats["fast"], stats["gdal"]
    return "mixed" if f and g else "fast" if f else "gdal" if g else "none"


# --------------------------------------------------------------------------- running


class Suite:
    """The suite's files, server, items and results.

    Parameters
    ----------
    root
        A directory for the files (emptied).
    cog_server
        A started CogServer over ``root``.
    stac
        A started PgstacServer (its ``load`` indexes the items).
    """

    def __init__(self, root: Path, cog_server: Any, stac: Any,
                 selected: Sequence[Case] | None = None) -> None:
        self.root, self.cogs, self.stac = Path(root), cog_server, stac
        self.cases = list(selected if selected is not None else cases())
        self.results: dict[str, Result] = {}
        self.items: dict[str, Any] = {}
        self.hrefs: dict[str, str] = {}
        self.paths: dict[str, str] = {}  # case -> path on the server

    def href(self, case: Case) -> str:
        layout = case.layout
        rel = f"files/{layout.key}.tif"
        if case.request.fault:
            rel = f"faults/{case.name}.tif"
        self.paths[case.name] = rel
        href = self.cogs.url + rel
        if case.request.fault in ("404", "403"):
            href += "?sig=SECRET"
        if case.request.fault == "404":
            href = self.cogs.url + f"faults/missing-{case.name}.tif?sig=SECRET"
            self.paths[case.name] = f"faults/missing-{case.name}.tif"
        return href

    def prepare(self) -> None:
        """Write every file, index every item (one collection per group), read them back."""
        import pystac_client

        def file(layout: Layout) -> Path:  # each distinct layout written once
            path = self.root / "files" / f"{layout.key}.tif"
            if not path.exists():
                write_raster(layout, path)
            return path

        by_collection: dict[str, list[dict]] = defaultdict(list)
        for i, case in enumerate(self.cases):
            path = file(case.layout)
            href = self.href(case)
            if case.request.fault and case.request.fault != "404":
                dst = self.root / self.paths[case.name]
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, dst)
            self.hrefs[case.name] = href
            cid = self.collection(case)
            by_collection[cid].append(make_item(case, href, cid, i))
            for k, extra in enumerate(case.mosaic, 1):
                file(extra)
                by_collection[cid].append(make_item(replace(case, layout=extra),
                                                    self.cogs.url + f"files/{extra.key}.tif",
                                                    cid, i, k))
        for cid, items in by_collection.items():
            self.stac.load(make_collection(cid), items)
        client = pystac_client.Client.open(self.stac.url)
        found = {}
        for cid in by_collection:
            for it in client.search(collections=[cid], limit=500).items():
                found[it.id] = it
        for i, case in enumerate(self.cases):
            cid = self.collection(case)
            self.items[case.name] = [found[item_id(case, i, k)]
                                     for k in range(len(case.mosaic) + 1)]

    @staticmethod
    def collection(case: Case) -> str:
        """Driver cases share one collection; open_cubes cases one per dtype and nodata.

        (open_cubes takes a band's dtype / nodata from the first file of its collection.)
        """
        req = case.request
        if req.api is None:
            return f"{SUITE}-driver"
        return f"{SUITE}-api-{case.layout.dtype}-{case.layout.nodata}"

    def run(self) -> dict[str, Result]:
        """Run every case (open_cubes cases by group, one open_cubes call per group)."""
        import xsits

        with xsits.set_options(retry_delay=0.01, progress=False):
            for case in self.cases:
                self.results[case.name] = self.run_driver(case)
            groups: dict[tuple, list[Case]] = defaultdict(list)
            for case in self.cases:
                if case.request.api is not None:
                    groups[api_group(case)].append(case)
            for group in groups.values():
                self.run_api(group)
        return self.results

    # -- the driver path
    def run_driver(self, case: Case) -> Result:
        from xsits.errors import LoadError
        from xsits.io import reader
        t0 = time.monotonic()
        res = Result(case)
        items = self.items[case.name]  # more than one: a mosaic
        band = "B04" if case.request.band == 1 else f"B04.{case.request.band}"
        gbox = case_geobox(case)
        req = case.request
        try:
            if req.fault in ("404", "403"):
                res.equal, res.detail, res.reader = self._client_fault(case, items, band, gbox)
                return res
            want = load_truth(items, gbox, band, req.resampling)
            reader.clear_cache()
            if req.fault:
                kind, _, when = req.fault.partition("@")
                if when == "read":
                    from xsits.io import tiff

                    tiff.headers([self.hrefs[case.name]])
                self.cogs.reset_stats()
                # 2: a HEAD (GDAL's first request) has no body to truncate
                self.cogs.set_fault(self.paths[case.name], kind, times=2)
            try:
                got = load_driver(items, gbox, band, req.resampling)
            finally:
                if req.fault:
                    self.cogs.clear_faults()
            res.reader = _reader_of(reader.last_load_stats())
            res.detail = compare(got, want, [band])
            if req.points and not res.detail:
                res.detail = check_points(items, gbox, band, req.points)
            if req.fault and not res.detail and not self.cogs.stats()["faults"]:
                res.detail = "the fault was never served (nothing was asked of the file)"
            res.equal = not res.detail
        except LoadError as err:
            res.equal, res.detail = False, f"LoadError: {err}"
        except Exception as err:  # a crash is a failed case, with its reason
            res.equal, res.detail = False, f"{type(err).__name__}: {err}"
        finally:
            res.seconds = time.monotonic() - t0
        return res

    def _client_fault(self, case: Case, items: Any, band: str, gbox: Any) -> tuple:
        """404 / 403: a LoadError naming the href without its query, within seconds."""
        from xsits.errors import LoadError
        from xsits.io import reader

        reader.clear_cache()
        path = self.paths[case.name]
        if case.request.fault == "403":
            self.cogs.set_fault(path, "403", times=-1)
        t0 = time.monotonic()
        try:
            load_driver(items, gbox, band, "nearest")
        except LoadError as err:
            took = time.monotonic() - t0
            msg = str(err)
            bare = self.hrefs[case.name].split("?")[0]
            if bare not in msg or "SECRET" in msg:
                return False, f"the error does not name {bare} (or shows the query): {msg}", \
                    "none"
            if f"HTTP {case.request.fault}" not in msg:
                return False, f"the error does not say HTTP {case.request.fault}: {msg}", "none"
            if took > 3:
                return False, f"raised after {took:.1f} s (retried?)", "none"
            return True, "", "none"
        except Exception as err:
            return False, f"{type(err).__name__} instead of LoadError: {err}", "none"
        finally:
            self.cogs.clear_faults()
        return False, "no error", "none"

    # -- open_cubes
    def run_api(self, group: list[Case]) -> None:
        import geopandas as gpd

        import xsits
        from xsits.errors import LoadError
        from xsits.io import reader

        first = group[0]
        req = first.request
        points, fids = [], []
        for i, case in enumerate(group):
            _, fp = case_footprint(case.layout)
            points.append(fp.centroid.geom)
            fids.append(f"f{i}")
        aoi = xsits.read_aoi(gpd.GeoDataFrame({"id": fids}, geometry=points, crs=4326),
                             id_column="id")
        id_of = {case.name: fid for case, fid in zip(group, aoi["feature_id"], strict=True)}
        res_m = ORIGINS[first.layout.crs][2] * req.factor
        mode_kw = dict(mode="patch", size=(23, 17)) if req.api == "patch" else \
            dict(mode="image", buffer=res_m * 40 + 3.0)
        for case in group:
            if case.request.fault:
                path = self.paths[case.name]
                kind = case.request.fault
                self.cogs.set_fault(path, kind, times=-1 if kind in ("403", "404") else 2)
        reader.clear_cache()
        try:
            cubes = xsits.open_cubes(
                aoi, stac=self.stac.url, collection=self.collection(first), bands=["B04"],
                start=START, end=END, resolution=res_m, crs=req.crs or "utm",
                resampling=req.resampling, **mode_kw)
            computed: dict[str, Any] = {}
            for fid, cube in cubes.items():
                t0 = time.monotonic()
                try:
                    computed[fid] = cube.compute()
                except LoadError as err:  # a feature whose file fails when it is read
                    computed[fid] = (err, time.monotonic() - t0)
        except Exception as err:
            for case in group:
                self._api_result(case, False, f"open_cubes: {type(err).__name__}: {err}")
            return
        finally:
            self.cogs.clear_faults()
        stats = reader.last_load_stats()
        for case in group:
            fid = id_of[case.name]
            if case.request.fault in ("404", "403"):
                # cubes are lazy: a file whose header open_cubes read (the first of its
                # collection's band) leaves its feature in .missing; any other fails when
                # its cube is computed, at once, with the same LoadError
                bare = self.hrefs[case.name].split("?")[0]
                if fid in cubes:
                    err, took = computed[fid] if isinstance(computed.get(fid), tuple) else \
                        (None, 0.0)
                    why = str(err) if err is not None else "computed without an error"
                    ok = err is not None and took < 3
                    where = "compute"
                else:
                    why, ok, where = cubes.missing.get(fid, ""), True, "missing"
                ok = ok and bare in why and "SECRET" not in why and \
                    f"HTTP {case.request.fault}" in why
                self.results[case.name].api_out["fault"] = (where,)
                self._api_result(case, ok, "" if ok else f"{where}: {why!r}")
                continue
            if fid not in computed:
                self._api_result(case, False, f"no cube: {cubes.missing.get(fid)}")
                continue
            if isinstance(computed[fid], tuple):
                self._api_result(case, False, f"compute: {computed[fid][0]}")
                continue
            got = computed[fid]
            self.results[case.name].api_out[case.request.api] = (
                got["B04"].dtype.name, got["B04"].attrs.get("nodata"),
                got["B04"].encoding.get("_FillValue"))
            items = cubes.search.items[fid]
            if [it.id for it in items] != [it.id for it in self.items[case.name]]:
                self._api_result(case, False, f"items {[it.id for it in items]}")
                continue
            want = load_truth(items, cubes[fid].odc.geobox, "B04", case.request.resampling)
            detail = compare(got, want, ["B04"])
            self._api_result(case, not detail, detail)
        del stats

    def _api_result(self, case: Case, ok: bool, detail: str) -> None:
        res = self.results[case.name]
        res.api_equal[case.request.api] = ok
        if not ok:
            res.equal = False
            res.detail = (res.detail + "; " if res.detail else "") + \
                f"open_cubes {case.request.api}: {detail}"


def api_group(case: Case) -> tuple:
    """open_cubes cases loaded by one call: same dtype / nodata / metadata / grid request."""
    lay, req = case.layout, case.request
    alone = req.fault if req.meta == "proj_code" else None  # fault cases alone in a call
    return (lay.dtype, lay.nodata, lay.crs, req.meta, req.api, req.crs, req.factor,
            req.resampling, req.band, alone)


# --------------------------------------------------------------------------- table


def table(results: dict[str, Result]) -> str:
    """Cases per axis: how many the fast reader served, how many went to GDAL, equal or not."""
    rows: dict[str, Counter] = defaultdict(Counter)
    for r in results.values():
        for key in (r.case.axis, "TOTAL"):
            c = rows[key]
            c["cases"] += 1
            c[r.reader] += 1
            c["equal" if r.equal else "not equal"] += 1
            if r.case.request.api:
                c["open_cubes"] += 1
    cols = ("cases", "fast", "gdal", "mixed", "none", "open_cubes", "equal", "not equal")
    width = max(len(k) for k in rows) + 2
    lines = ["axis".ljust(width) + "".join(c.rjust(11) for c in cols)]
    for axis in [*sorted(k for k in rows if k != "TOTAL"), "TOTAL"]:
        lines.append(axis.ljust(width) + "".join(str(rows[axis][c]).rjust(11) for c in cols))
    bad = [r for r in results.values() if not r.equal]
    for r in bad:
        lines.append(f"NOT EQUAL {r.case.name}: {r.detail}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python tests/conformance.py --table [--only SUBSTRING]``: run the suite, print it."""
    import argparse
    import tempfile

    from xsits.testing.pgstac import PgstacServer
    from xsits.testing.servers import CogServer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="print the table of cases")
    parser.add_argument("--only", default="", help="run the cases whose name has this")
    parser.add_argument("--list", action="store_true", help="list the cases, run nothing")
    args = parser.parse_args(argv)
    selected = [c for c in cases() if args.only in c.name]
    if args.list:
        for c in selected:
            print(c.axis, "|", c.name)
        print(len(selected), "cases")
        return 0
    root = Path(tempfile.mkdtemp(prefix="xsits-conformance-"))
    t0 = time.monotonic()
    with CogServer(root) as cogs, PgstacServer() as stac:
        suite = Suite(root, cogs, stac, selected)
        suite.prepare()
        t1 = time.monotonic()
        results = suite.run()
    t2 = time.monotonic()
    shutil.rmtree(root, ignore_errors=True)
    print(table(results))
    print(f"{len(results)} cases; files and items {t1 - t0:.1f} s, loads {t2 - t1:.1f} s")
    return 0 if all(r.equal for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
