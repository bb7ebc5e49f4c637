"""The embedded offline demo: bundled points, cached world, outputs of ``run_demo``."""

from __future__ import annotations

import contextlib
import io
import json
import time
from pathlib import Path

import intake
import numpy as np
import pytest
import xarray as xr
from PIL import Image

import xsits
from xsits import demo
from xsits.ops.mask import DEFAULT_CLASSES

REPO = Path(__file__).resolve().parents[1]
POINTS = REPO / "notebooks" / "data" / "rand_pts.geojson"

SEED_FIRST_10 = {
    1: (8.49138, 49.85437), 2: (8.41277, 53.14555), 3: (11.17678, 50.01380),
    4: (23.79724, 40.06894), 5: (16.80020, 48.98809), 6: (22.49204, 42.36324),
    7: (-6.51812, 39.32035), 8: (27.54503, 40.23213), 9: (22.84505, 41.47664),
    10: (1.29386, 44.31059),
}


# a hang (never seen in a normal run: ~20 s) fails in minutes, with thread stacks
pytestmark = pytest.mark.timeout(300)

@pytest.fixture(scope="module")
def run(demo_items, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo-out")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        table = demo.run_demo(out, progress=False)
    table.attrs["printed"] = buf.getvalue()
    return table, out


def test_bundled_points_file_matches_the_seed_and_the_constant():
    doc = json.loads(POINTS.read_text())
    feats = doc["features"]
    assert [f["properties"]["pt_id"] for f in feats] == list(range(1, 25))
    assert [f["properties"]["id"] for f in feats] == list(range(1, 25))
    coords = {f["properties"]["pt_id"]: tuple(f["geometry"]["coordinates"]) for f in feats}
    assert coords == demo.BUNDLED_POINTS
    assert {k: coords[k] for k in SEED_FIRST_10} == SEED_FIRST_10
    assert len(set(coords.values())) == 24
    assert all(-10 < lon < 30 and 36 < lat < 61 for lon, lat in coords.values())  # Europe
    aoi = xsits.read_aoi(POINTS, id_column="pt_id")
    assert aoi.crs.to_epsg() == 4326 and aoi["feature_id"].tolist() == [str(i) for i in
                                                                        range(1, 25)]


def test_cache_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("XSITS_CACHE_DIR", str(tmp_path / "c"))
    assert demo.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("XSITS_CACHE_DIR")
    from platformdirs import user_cache_dir

    assert demo.cache_dir() == Path(user_cache_dir("xsits"))


def test_demo_world_is_generated_once_and_reused(demo_items):
    path = demo.demo_catalog_path()
    assert path == demo_items and path.parent == demo.cache_dir() / "demo-world"
    assert path.exists()
    items = json.loads(path.read_text())["features"]
    assert {tuple(it["assets"]) for it in items} == {demo.DEMO_BANDS}
    assert all(Path(a["href"]).is_absolute() and Path(a["href"]).exists()
               for a in items[0]["assets"].values())
    stamp = path.stat().st_mtime_ns
    t0 = time.perf_counter()
    assert demo.demo_catalog_path() == path
    assert time.perf_counter() - t0 < 2 and path.stat().st_mtime_ns == stamp
    world = demo.demo_world()
    assert len(world.windows) == len(demo.DEMO_PT_IDS)
    assert min(m["solar_date"] for m in world.items_meta) == demo.DEMO_START


def test_run_demo_summary(run):
    table, out = run
    assert table["feature_id"].tolist() == [str(i) for i in demo.DEMO_PT_IDS]
    assert (table["status"] == "written").all()
    res = xsits.search(demo.demo_aoi(), stac=str(demo.demo_catalog_path()),
                       start=demo.DEMO_START, end=demo.DEMO_END, bands=demo.DEMO_BANDS,
                       max_cloud=demo.DEMO_MAX_CLOUD)
    for _, row in table.iterrows():
        assert 0 < row["dates"] <= len(res.items[row["feature_id"]])
        assert 0 < row["masked_pct"] < 100
    assert table.attrs["seconds"] < 120
    assert set(table.attrs["timings"]) == {"scenes", "search", "compute_all", "gif"}


def test_run_demo_prints_a_table(run):
    text = run[0].attrs["printed"]
    assert "masked_pct" in text and "GIF:" in text and "catalog:" in text
    assert all(f" {i} " in text for i in demo.DEMO_PT_IDS)


def test_demo_netcdf_outputs_are_masked_then_gapfilled(run):
    table, out = run
    row = table.set_index("feature_id").loc["7"]
    # as the results catalog opens it: SCL stays integer, 0 (NO_DATA) a class, not NaN
    with xr.open_dataset(row["path"], mask_and_scale=False) as ds:
        ds = ds.load()
    assert ds.sizes["time"] == row["dates"] and ds.attrs["feature_id"] == "7"
    cube = xsits.open_cubes(demo.demo_aoi(), stac=str(demo.demo_catalog_path()),
                            bands=demo.DEMO_BANDS, start=demo.DEMO_START, end=demo.DEMO_END,
                            max_cloud=demo.DEMO_MAX_CLOUD, **demo.DEMO_GRID)["7"]
    masked = xsits.ops.mask.scl_mask(xsits.ops.harmonize.harmonize(cube)).compute()
    cloudy = masked.SCL.isin(list(DEFAULT_CLASSES))
    assert bool(cloudy.any())
    # before gap-fill: NaN exactly where SCL was cloudy / nodata (or reflectance nodata)
    assert bool(masked.B04.isnull().where(cloudy, True).all())
    # after gap-fill: SCL unchanged; valid pixels keep their values; no NaN left where the
    # pixel has a valid value at some date
    np.testing.assert_array_equal(ds.SCL.values, masked.SCL.values)
    valid = masked.B04.notnull()
    np.testing.assert_array_equal(ds.B04.values[valid.values], masked.B04.values[valid.values])
    fillable = valid.any("time")
    assert not bool(ds.B04.isnull().where(fillable, False).any())
    assert ds.B04.dtype == np.float32 and "gapfill" in ds.attrs["history"]


def test_demo_gif_has_one_frame_per_date_and_catalog_reopens(run):
    table, out = run
    gif = Path(table.attrs["gif"])
    first = table.iloc[0]
    assert gif == out / f"{first['feature_id']}.gif"
    with Image.open(gif) as im:
        assert im.n_frames == first["dates"]
    cat = intake.open_catalog(table.attrs["catalog"])
    assert list(cat) == table["feature_id"].tolist()
    got = cat["7"].read()
    with xr.open_dataset(table.set_index("feature_id").loc["7", "path"],
                         mask_and_scale=False) as ref:
        xr.testing.assert_identical(got.load(), ref.load())


def test_reading_a_query_endpoint_never_builds_the_demo_world(tmp_path):
    """Issue 29: a property read (the manifest, describe) must not generate the demo world."""
    import xsits
    from xsits.stac.query import StacQuery

    with xsits.set_options(cache_dir=str(tmp_path)):
        q = StacQuery(stac="demo", start="2024-04-01", end="2024-04-30")
        assert q.endpoint == "demo"
        assert not list(tmp_path.iterdir())  # nothing generated
        assert q.locate().endswith(".geojson")  # made when the items are needed
        assert (tmp_path / "demo-world").is_dir()
