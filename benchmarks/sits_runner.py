"""The reference contender: ``sits`` 0.8.0 ``Multiproc`` exactly as its seed notebook uses it.

Runs with ``benchmarks/.venv-sits/bin/python`` (sits 0.8.0 installed there by ``run.py``):

    python sits_runner.py --mode {image,patch} --stac URL --aoi AOI.geojson --out DIR \
        --result RESULT.json

The one patch: ``sits.sits.StacAttack`` hard-codes Planetary Computer's API URL for its default
provider ``"mpc"``; after each ``StacAttack.__init__`` we replace ``self.stac["stac"]`` with the
local API URL (in the main process and in each dask worker process, see ``_patch_sits``).
Nothing else changes: provider ``"mpc"`` keeps its ``planetary_computer``
signing hooks (``modifier=pc.sign_inplace``, ``patch_url=pc.sign``), which leave non-Azure
hrefs untouched, and the search, load, mask, gap-fill and NetCDF export are sits' own code,
run by ``Multiproc.dask_compute()`` (dask ``processes`` scheduler, its default).
sits 0.8.0 keeps ``Vec2gdf`` and ``Multiproc`` in the submodule ``sits.sits`` (the notebook,
written for an older release, calls them as ``sits.Vec2gdf`` / ``sits.Multiproc``).
Bboxes are built like the notebook: the point buffered by 0.01 deg, its bbox in EPSG:4326 and
that bbox's bounds in EPSG:3035.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from datetime import datetime
from pathlib import Path


def _patch_sits() -> None:
    """Point ``StacAttack``'s provider at ``$XSITS_BENCH_STAC_URL`` (the local API).

    Runs at import of this module, i.e. in the main process and again in every worker of
    dask's ``processes`` scheduler (spawned workers re-import the main module), where sits'
    per-feature tasks create their ``StacAttack``.
    """
    url = os.environ.get("XSITS_BENCH_STAC_URL")
    if not url:
        return
    import sits.sits as sits_mod

    if getattr(sits_mod.StacAttack.__init__, "_xsits_bench", False):
        return
    orig_init = sits_mod.StacAttack.__init__

    def patched_init(self, *a, **kw):
        orig_init(self, *a, **kw)
        self.stac = dict(self.stac, stac=url)  # the local API instead of PC's URL

    patched_init._xsits_bench = True
    sits_mod.StacAttack.__init__ = patched_init


_patch_sits()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["image", "patch"], required=True)
    p.add_argument("--stac", required=True)
    p.add_argument("--aoi", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--result", required=True)
    p.add_argument("--size", type=int, default=10,
                   help="patch mode: dimx = dimy in pixels (the notebook's 10; 1 for a point)")
    args = p.parse_args()

    import geopandas as gpd
    import pandas as pd
    import sits as sits_pkg
    import sits.sits as sits_mod

    # sits 0.8.0 moved the notebook's top-level names (sits.Vec2gdf, sits.Multiproc) into the
    # submodule sits.sits; call them there under the notebook's spelling
    sits = sits_mod

    warnings.filterwarnings("ignore")
    os.environ["XSITS_BENCH_STAC_URL"] = args.stac  # inherited by the dask worker processes
    _patch_sits()

    data_dir = args.out
    os.makedirs(data_dir, exist_ok=True)
    t0 = time.perf_counter()
    # --- the notebook, cells 4, 26, 28 (bboxes) ------------------------------------------
    random_pts = sits.Vec2gdf(args.aoi)
    random_pts.set_buffer("gdf", 0.01)
    random_pts.set_bbox("buffer")
    bbox_latlong = pd.concat([random_pts.bbox, random_pts.bbox["geometry"].bounds], axis=1)
    bbox_latlong["bbox_4326"] = bbox_latlong[["minx", "miny", "maxx", "maxy"]].values.tolist()
    bbox_3035 = random_pts.bbox.to_crs(3035)
    test_3035_bounds = pd.concat([bbox_3035, bbox_3035["geometry"].bounds], axis=1)
    test_3035_bounds["bbox_3035"] = test_3035_bounds[
        ["minx", "miny", "maxx", "maxy"]].values.tolist()
    test_process = pd.concat([bbox_latlong["bbox_4326"], test_3035_bounds["bbox_3035"]], axis=1)
    test_process["bbox_tuple"] = test_process.apply(
        lambda row: (row["bbox_4326"], row["bbox_3035"]), axis=1)
    # --- the notebook, cells 34 (image) / 36 (patch) ---------------------------------------
    multi = sits.Multiproc(args.mode, "nc", data_dir)
    multi.addParams_stacAttack(bands=["B03", "B04", "B08", "SCL"])
    multi.addParams_searchItems(date_start=datetime(2024, 1, 1),
                                date_end=datetime(2025, 2, 1),
                                query={"eo:cloud_cover": {"lt": 10}})
    if args.mode == "image":
        multi.addParams_loadCube(resolution=20)
    else:
        multi.addParams_loadCube(dimx=args.size, dimy=args.size, resolution=20)
    multi.addParams_mask()
    for gid, i in enumerate(test_process["bbox_tuple"]):
        multi.fetch_func(i[0], i[1], gid, mask=True, gapfill=True)
    multi.dask_compute()
    seconds = time.perf_counter() - t0
    n_out = len(list(Path(data_dir).glob("*.nc")))
    del gpd
    Path(args.result).write_text(json.dumps({
        "seconds": seconds, "n_features": len(test_process), "n_outputs": n_out,
        "sits_version": sits_pkg.__version__, "pid": os.getpid()}))


if __name__ == "__main__":
    main()
