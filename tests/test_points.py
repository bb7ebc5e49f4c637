"""xsits.cube.points against the cubes: each point's window equals its patch cube."""

from __future__ import annotations

import dask
import geopandas as gpd
import numpy as np
import pytest
from odc.loader import RasterLoadParams
from shapely.geometry import Point

import xsits
from xsits.cube import points
from xsits.cube.grid import GridSpec, feature_geoboxes
from xsits.cube.load import iter_plans
from xsits.io import reader
from xsits.io.tiff import headers

from conftest import WORLD_END, WORLD_POINTS, WORLD_START

BANDS = ("B04", "B08", "SCL")


def _aoi(n: int, spread: float, seed: int = 1) -> gpd.GeoDataFrame:
    """``n`` points around the world's points, some past their windows' edges."""
    rng = np.random.default_rng(seed)
    base = np.array(WORLD_POINTS)[rng.integers(0, len(WORLD_POINTS), n)]
    pts = base + rng.uniform(-spread, spread, (n, 2))
    return xsits.read_aoi(gpd.GeoDataFrame(geometry=[Point(x, y) for x, y in pts], crs=4326))


@pytest.mark.parametrize(("crs", "res", "size"), [
    ("utm", 10, 1), ("EPSG:3035", 20, 3), ("utm", 20, 1), ("EPSG:3035", 10, 5)])
def test_points_equal_their_patch_cubes(stac_url, crs, res, size):
    aoi = _aoi(150, 0.02)  # windows are 2.56 km: many points near or past an edge
    kw = {"stac": stac_url, "start": WORLD_START, "end": WORLD_END, "bands": BANDS}
    lazy = xsits.open_cubes(aoi, **kw, resolution=res, crs=crs, mode="patch", size=size)
    cubes = dict(zip(lazy, dask.compute(*lazy.values()), strict=True))
    q = xsits.StacQuery(stac=stac_url, start=WORLD_START, end=WORLD_END, bands=BANDS)
    boxes = feature_geoboxes(aoi, GridSpec(crs=crs, resolution=res, mode="patch",
                                           size=(size, size)))
    seen = 0
    for gp in iter_plans(aoi, q, boxes):
        fids = list(gp.positions)
        if not fids:
            continue
        batches = points.read_points(gp.items, [gp.positions[f] for f in fids],
                                     points.Windows.of([gp.geoboxes[f] for f in fids]))
        assert batches is not None, "the fast reader serves every file of the world"
        for batch in batches:
            for j, k in enumerate(batch.points):
                cube = cubes[fids[k]]
                dates = [gp.items.parsed[g[0]].nominal_datetime.replace(tzinfo=None)
                         for g in batch.groups]
                assert cube.time.values.tolist() == \
                    np.array(dates, dtype="datetime64[ns]").tolist()
                for band in BANDS:
                    got = batch.values[band][:, :, j * size:(j + 1) * size]
                    assert got.dtype == cube[band].dtype
                    np.testing.assert_array_equal(got, cube[band].values, err_msg=fids[k])
                seen += 1
    assert seen == len(cubes) > 50


@pytest.mark.parametrize("crs", ["EPSG:3035", "EPSG:4326"])
def test_vectorised_picks_equal_gdal_picks(world, crs):
    """pick() against each window planned alone by fast.plan_read (GDAL's warp)."""
    path = next(p for p in sorted(world.root.rglob("*B04*.tif")))
    (head,) = headers([str(path)])
    base = head.levels[0].geobox
    rng = np.random.default_rng(2)
    n = 400
    xs = rng.uniform(base.extent.boundingbox.left, base.extent.boundingbox.right, n)
    ys = rng.uniform(base.extent.boundingbox.bottom, base.extent.boundingbox.top, n)
    res = 20.0 if crs == "EPSG:3035" else 0.0002
    to = base.crs.transformer_to_crs(crs)
    x, y = to(xs, ys)
    x0 = np.floor(np.asarray(x) / res) * res
    y0 = np.ceil(np.asarray(y) / res) * res
    from odc.geo import CRS

    windows = points.Windows(CRS(crs), res, 1, x0, y0)
    cfg = RasterLoadParams(dtype=head.dtype, resampling="nearest")
    got = points.pick(head, cfg, windows, np.arange(n))
    assert got is not None and got.exact < n // 4
    for k in range(n):
        level, rows, cols = points._exact(head, cfg, windows, k)
        assert (got.level[k], got.rows[k].tolist(), got.cols[k].tolist()) == \
            (level, rows.tolist(), cols.tolist()), k
    reader.clear_cache()


def test_dry_run_counts_the_requests_the_server_then_logs(stac_url, cog_server):
    """xsits.dry_run reads headers only; its request count is what the server then sees."""
    aoi = _aoi(40, 0.006, seed=5)
    kw = {"stac": stac_url, "start": WORLD_START, "end": WORLD_END, "bands": BANDS,
          "resolution": 10}
    with xsits.set_options(whole_files=False):
        reader.clear_cache()
        cog_server.reset_stats()
        cost = xsits.dry_run(aoi, **kw, mode="patch", size=(1, 1))
        headers_only = cog_server.stats()["requests"]
        table = xsits.sample(aoi, **kw, progress=False)
        total = cog_server.stats()["requests"]
    assert cost.exact and cost.features == table.feature_id.nunique() == len(aoi)
    assert cost.files > 0 and cost.blocks >= cost.files
    assert headers_only == cost.files  # no pixel read by the dry run
    assert total == cost.requests
    guess = xsits.dry_run(aoi, **kw, mode="patch", size=(1, 1), read_headers=False)
    assert not guess.exact and (guess.files, guess.items) == (cost.files, cost.items)
