"""Sentinel-1 RTC: real items' datetimes, and the S1 test world on the local STAC API.

The world (:mod:`xsits.testing.sentinel1`) is served by a COG server and the session's
stac-fastapi-pgstac; every value is checked against GDAL (``odc.stac.load``, grouped by
solar day and orbit state) and against the files as written.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import dask
import geopandas as gpd
import numpy as np
import odc.stac
import pystac
import pytest
from shapely.geometry import Point

import xsits
from xsits.cube.dates import time_coords
from xsits.cube.plan import group_dates, plan_items, solar_lon
from xsits.errors import NoItemsError, QueryError
from xsits.ops import steps
from xsits.stac import providers
from xsits.stac.collections import lookup
from xsits.testing.scenes import WorldSpec
from xsits.testing.sentinel1 import NODATA, make_s1_world, template

from conftest import _need_servers

REAL = Path(__file__).parent / "data" / "real" / "pc-sentinel-1-rtc-2024.json"
PLACES = ((5.90, 45.20), (25.00, 60.20))
SPEC = WorldSpec(points=PLACES, start="2022-01-01", end="2022-01-31", revisit_days=10,
                 window_m=1280, blocksize=128, seed=3)
START, END = SPEC.start, SPEC.end
PC_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00:00$")


def _real_items() -> list[pystac.Item]:
    return [pystac.Item.from_dict(f) for f in json.loads(REAL.read_text())["features"]]


# --------------------------------------------------------------------------- real items


def test_real_items_datetimes_parse_and_their_slices_are_one_date():
    """PC's start / end datetimes are not RFC 3339 ("2024-04-19 04:59:04.220006+00:00"):
    pystac, odc-stac and the plan read them; one datatake's 4 slices are one date."""
    items = _real_items()
    first = items[0].properties
    assert PC_TIME.match(first["start_datetime"]) and PC_TIME.match(first["end_datetime"])
    assert items[0].common_metadata.start_datetime == dt.datetime(
        2024, 4, 19, 4, 59, 4, 220006, tzinfo=dt.UTC)
    (parsed, *_) = odc.stac.parse_items(items)
    utc = dt.UTC
    assert parsed.datetime_range == (dt.datetime(2024, 4, 19, 4, 59, 4, 220006, tzinfo=utc),
                                     dt.datetime(2024, 4, 19, 4, 59, 16, 653405, tzinfo=utc))
    plan = plan_items(items, ["vv", "vh"], stac_cfg={})
    assert plan.split_by == ("sat:orbit_state",)
    cfg = plan.load_cfg["vv"]
    assert cfg.dtype == "float32" and np.isnan(cfg.fill_value) and cfg.meta.nodata == -32768
    groups = group_dates(plan, range(len(items)), lon=15.5)
    assert [sorted(g) for g in groups] == [[0, 1, 2, 3]]
    coords = time_coords([[plan.items[i] for i in g] for g in groups])
    assert coords["orbit_state"][1].tolist() == ["descending"]
    assert coords["relative_orbit"][1].dtype == np.int64
    assert coords["relative_orbit"][1].tolist() == [51]
    assert coords["platform"][1].tolist() == ["SENTINEL-1A"]


def test_an_ascending_pass_on_the_same_day_is_a_date_of_its_own():
    """The same item as an evening ascending pass (another relative orbit): two dates of
    one solar day, in time order; dates mixing relative orbits say -1."""
    raw = json.loads(REAL.read_text())["features"][0]

    def variant(item_id: str, **props) -> pystac.Item:
        d = json.loads(json.dumps(raw))
        d["id"] = item_id
        d["properties"].update(props)
        return pystac.Item.from_dict(d)

    desc = variant(raw["id"])
    asc = variant("evening", datetime="2024-04-19T16:40:10.436706Z",
                  **{"sat:orbit_state": "ascending", "sat:relative_orbit": 117})
    plan = plan_items([asc, desc], ["vv"], stac_cfg={})
    groups = group_dates(plan, [0, 1], lon=15.5)
    assert groups == ((1,), (0,))  # the descending morning pass first
    coords = time_coords([[plan.items[i] for i in g] for g in groups])
    assert coords["orbit_state"][1].tolist() == ["descending", "ascending"]
    assert coords["relative_orbit"][1].tolist() == [51, 117]
    other = variant("next-track", **{"sat:relative_orbit": 52})
    assert time_coords([[desc, other]])["relative_orbit"][1].tolist() == [-1]


def test_cloud_mask_of_a_sentinel_1_cube_says_there_is_none():
    import xarray as xr

    from xsits.errors import BandError

    cube = xr.Dataset({"vv": (("time", "y", "x"), np.ones((1, 2, 2), "float32"))},
                      attrs={"collection": "sentinel-1-rtc", "feature_id": "f1"})
    assert lookup("sentinel-1-rtc").mask is None
    with pytest.raises(BandError, match=r"feature f1: collection 'sentinel-1-rtc' \(Sentinel-1 "
                       r"C-SAR\) has no cloud mask \(radar sees through clouds\); leave "
                       "cloud_mask out"):
        cube.sits.cloud_mask()
    with pytest.raises(BandError, match="has no cloud mask"):
        steps.cloud_mask()(cube)


def test_local_catalog_of_real_items_is_searched_by_their_datetime(tmp_path):
    path = tmp_path / "s1.json"
    path.write_text(REAL.read_text())
    aoi = xsits.read_aoi(gpd.GeoDataFrame(geometry=[Point(15.3, 30.4)], crs=4326))
    res = xsits.search(aoi, xsits.StacQuery(stac=str(path), collection="sentinel-1-rtc",
                                            start="2024-04-19", end="2024-04-19",
                                            bands=("vv", "vh")))
    assert [it.id[:48] for it in res.items["0"]] == \
        ["S1A_IW_GRDH_1SDV_20240419T045904_20240419T045916"]
    with pytest.raises(NoItemsError, match="no sentinel-1-rtc item between 2024-04-20"):
        xsits.search(aoi, xsits.StacQuery(stac=str(path), collection="sentinel-1-rtc",
                                          start="2024-04-20", end="2024-04-30"))


def _why_none(path: Path, collection: str, point: Point, **query) -> str:
    aoi = xsits.read_aoi(gpd.GeoDataFrame(geometry=[point], crs=4326))
    with pytest.raises(NoItemsError) as err:
        xsits.search(aoi, xsits.StacQuery(stac=str(path), collection=collection, **query))
    return str(err.value)


def test_no_item_hints_follow_the_collections_cloud_cover(tmp_path):
    """Sentinel-1 items have no eo:cloud_cover: no hint of clouds or max_cloud for them;
    Sentinel-2's keep theirs (both from real items, searched locally)."""
    s1 = tmp_path / "s1.json"
    s1.write_text(REAL.read_text())
    s2_item = json.loads((Path(xsits.testing.__file__).parent / "data" / "real"
                          / "es-v1-sentinel-2-l2a-2023.json").read_text())
    s2 = tmp_path / "s2.json"
    s2.write_text(json.dumps({"type": "FeatureCollection", "features": [s2_item]}))
    here_s1, here_s2 = Point(15.3, 30.4), Point(48.7, 18.5)
    for item in (json.loads(REAL.read_text())["features"][0], s2_item):  # the registry's word
        assert ("eo:cloud_cover" in item["properties"]) is lookup(item["collection"]).cloud_cover
    # nothing on those dates
    why = _why_none(s1, "sentinel-1-rtc", here_s1, start="2024-04-20", end="2024-04-30")
    assert why.endswith("matches the query here (outside every tile of those dates); widen "
                        "the dates or check the place"), why
    assert "cloud" not in why
    why = _why_none(s2, "sentinel-2-l2a", here_s2, start="2023-07-01", end="2023-07-31")
    assert why.endswith("(outside every tile, or all too cloudy); widen the dates or raise "
                        "max_cloud"), why
    # items there, but the query drops them: the values they have, and the fix
    why = _why_none(s1, "sentinel-1-rtc", here_s1, start="2024-04-19", end="2024-04-19",
                    query={"sat:orbit_state": {"eq": "ascending"}})
    assert 'sat:orbit_state is "descending"; widen the query' in why and why.endswith(
        "widen the query"), why
    assert "max_cloud" not in why
    why = _why_none(s2, "sentinel-2-l2a", here_s2, start="2023-06-28", end="2023-06-28",
                    max_cloud=1)
    cloud = s2_item["properties"]["eo:cloud_cover"]
    assert why.endswith(f"eo:cloud_cover is {cloud}; widen the query (or max_cloud)"), why
    # and max_cloud itself, which would drop every Sentinel-1 item, is refused before searching
    with pytest.raises(QueryError, match=r"max_cloud=10: sentinel-1-rtc items have no "
                                         r"eo:cloud_cover \(radar sees through clouds\)"):
        xsits.StacQuery(stac=str(s1), collection="sentinel-1-rtc", max_cloud=10)


# --------------------------------------------------------------------------- the world


@pytest.fixture(scope="module")
def s1(pg_stac, tmp_path_factory):
    """The S1 world, its files on a COG server, its items in the session's STAC API."""
    from xsits.io import reader
    from xsits.testing.servers import CogServer, ServerError

    world = make_s1_world(tmp_path_factory.mktemp("s1"), SPEC)
    try:
        cogs = CogServer(world.root).start()
    except ServerError as err:
        _need_servers(str(err))
    try:
        pg_stac.load(world.collection, world.item_dicts(cogs.url))
        yield world, pg_stac.url
    finally:
        cogs.stop()
        reader.clear_cache()


def _aoi() -> gpd.GeoDataFrame:
    return xsits.read_aoi(gpd.GeoDataFrame({"place": ["chambery", "helsinki"]},
                                           geometry=[Point(*p) for p in PLACES], crs=4326),
                          id_column="place")


def _by_orbit_state(lon: float):
    """odc-stac's groupby for the truth: solar day (as odc-stac snaps it) and orbit state."""
    return lambda item, parsed, idx: (parsed.solar_date_at(lon).date(),
                                      item.properties["sat:orbit_state"])


def _file_window(world, item_id: str, key: str, cube) -> np.ndarray:
    """The written file's pixels under a cube on its own 10 m lattice (NaN: nodata)."""
    arr = world.truth(item_id, key)
    item = next(it for it in world.items if it["id"] == item_id)
    _, _, left, _, _, top = item["properties"]["proj:transform"][:6]
    c0 = int(round((float(cube.x[0]) - 5 - left) / 10))
    r0 = int(round((top - float(cube.y[0]) - 5) / 10))
    out = np.full((cube.sizes["y"], cube.sizes["x"]), np.nan, dtype="float32")
    rs = slice(max(0, r0), min(arr.shape[0], r0 + cube.sizes["y"]))
    cs = slice(max(0, c0), min(arr.shape[1], c0 + cube.sizes["x"]))
    got = arr[rs, cs]
    out[rs.start - r0:rs.stop - r0, cs.start - c0:cs.stop - c0] = np.where(
        got == NODATA, np.nan, got)
    return out


def test_world_items_have_the_real_items_shape(s1):
    world, _ = s1
    real = template()
    assert len({p["solar_date"] for p in world.passes.values()}) == 3
    for it in world.items:
        props = it["properties"]
        assert set(props) <= set(real["properties"]), set(props) - set(real["properties"])
        assert set(it["assets"]) == set(real["assets"])
        for key in ("vv", "vh"):
            assert it["assets"][key]["raster:bands"] == real["assets"][key]["raster:bands"]
            assert it["assets"][key]["href"].endswith(f"/measurement/iw-{key}.rtc.tiff")
        assert PC_TIME.match(props["start_datetime"]) and PC_TIME.match(props["end_datetime"])
        assert len(props["proj:transform"]) == 9 and props["s1:shape"] == \
            props["proj:shape"][::-1]
        assert props["sat:orbit_state"] in ("ascending", "descending")
        assert world.truth(it["id"], "vv").dtype == np.float32


def test_vv_vh_equal_gdal_with_nodata_as_nan_and_passes_apart(s1):
    world, url = s1
    cubes = xsits.open_cubes(_aoi(), stac=url, collection="sentinel-1-rtc",
                             bands=["vv", "vh"], start=START, end=END, resolution=10,
                             mode="image", buffer=300)
    assert sorted(cubes) == ["chambery", "helsinki"], cubes.missing
    both_passes = nodata_seen = 0
    for fid, lazy in cubes.items():
        cube = lazy.compute()
        items = cubes.search.items[fid]
        # the API hands PC's datetimes back as they were indexed (pgstac reads them too)
        assert all(PC_TIME.match(it.properties["start_datetime"]) for it in items)
        lon = solar_lon(lazy.odc.geobox)
        want = odc.stac.load(items, bands=["vv", "vh"], geobox=lazy.odc.geobox, chunks=None,
                             groupby=_by_orbit_state(lon), nodata=float("nan")).sortby("time")
        np.testing.assert_array_equal(cube.time.values, want.time.values)
        for band in ("vv", "vh"):
            assert cube[band].dtype == np.float32 and np.isnan(cube[band].attrs["nodata"])
            np.testing.assert_array_equal(cube[band].values, want[band].values)
        # per date: the pass's own item, its orbit state and relative orbit, its own file
        days = [str(t)[:10] for t in (cube.time.values + np.timedelta64(
            int(lon / 15 + 0.5), "h")).astype("datetime64[D]")]
        for t, item in enumerate(sorted(items, key=lambda it: it.datetime)):
            meta = world.passes[item.id]
            assert days[t] == meta["solar_date"]
            assert str(cube.orbit_state.values[t]) == meta["orbit_state"]
            assert int(cube.relative_orbit.values[t]) == meta["relative_orbit"]
            for band in ("vv", "vh"):
                np.testing.assert_array_equal(cube[band].values[t],
                                              _file_window(world, item.id, band, cube))
            nodata_seen += int(np.isnan(cube.vv.values[t]).sum())
        both_passes += sum(days.count(d) == 2 for d in set(days))
        # two passes of one day differ: fused, the morning pass would hide the evening one
        for d in {d for d in days if days.count(d) == 2}:
            t0, t1 = (t for t, x in enumerate(days) if x == d)
            assert cube.orbit_state.values[[t0, t1]].tolist() == ["descending", "ascending"]
            assert not np.array_equal(cube.vv.values[t0], cube.vv.values[t1], equal_nan=True)
    assert both_passes >= 2 and nodata_seen > 100


def test_to_db_of_a_loaded_cube_equals_10_log10_of_the_files(s1):
    world, url = s1
    cubes = xsits.open_cubes(_aoi().iloc[:1], stac=url, collection="sentinel-1-rtc",
                             start=START, end=END, resolution=10, mode="patch", size=(40, 40))
    assert list(cubes["chambery"].data_vars) == ["vv", "vh"]  # the registry's default bands
    cube = cubes["chambery"].sits.to_db().compute()
    items = sorted(cubes.search.items["chambery"], key=lambda it: it.datetime)
    for t, item in enumerate(items):
        for band in ("vv", "vh"):
            raw = _file_window(world, item.id, band, cube).astype("float64")
            want = np.where(raw > 0, 10 * np.log10(np.where(raw > 0, raw, 1)), np.nan)
            got = cube[band].values[t]
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert cube.vv.attrs["units"] == "dB" and float(cube.vv.max()) < 0 < float(cube.vv.min()) + 30


def test_sample_on_s1_points_equals_their_cubes(s1):
    from pyproj import Transformer

    world, url = s1
    rng = np.random.default_rng(4)
    pts = [Point(x + dx, y + dy) for x, y in PLACES for dx, dy in rng.uniform(-0.004, 0.004,
                                                                               (6, 2))]
    for w in world.windows:  # in the swath-edge corner: nodata on some dates
        to = Transformer.from_crs(w.epsg, 4326, always_xy=True)
        pts.append(Point(*to.transform(w.left + 35, w.top - 35)))
    aoi = xsits.read_aoi(gpd.GeoDataFrame(geometry=pts, crs=4326))
    kw = dict(stac=url, collection="sentinel-1-rtc", bands=["vv", "vh"], start=START, end=END,
              resolution=10)
    table = xsits.sample(aoi, steps=[steps.to_db()], progress=False, **kw)
    lazy = xsits.open_cubes(aoi, mode="patch", size=1, **kw)
    cubes = dict(zip(lazy, dask.compute(*lazy.values()), strict=True))
    assert set(table.feature_id) == set(cubes) and len(cubes) == len(aoi)
    assert {"orbit_state", "relative_orbit"} <= set(table.columns)
    for fid, cube in cubes.items():
        rows = table[table.feature_id == fid].reset_index(drop=True)
        db = steps.to_db()(cube)
        assert rows.time.tolist() == list(cube.time.values)
        assert rows.orbit_state.tolist() == cube.orbit_state.values.tolist()
        assert rows.relative_orbit.tolist() == cube.relative_orbit.values.tolist()
        for band in ("vv", "vh"):
            np.testing.assert_array_equal(rows[band].to_numpy(dtype="float32"),
                                          db[band].values[:, 0, 0])
    assert (table.orbit_state == "ascending").any() and table.vv.isna().any()


def test_packaged_entry_reads_the_world_with_one_label_per_pass(s1, monkeypatch, tmp_path):
    """``intake.cat.xsits.s1_planetary_computer`` with its preset's URL pointed at the local
    API serving the world's items as Planetary Computer's: discover() labels the two passes
    of a day apart, and each date holds its own pass's pixels."""
    import intake

    world, url = s1
    monkeypatch.setitem(providers.PRESETS, "planetary-computer", url)
    path = tmp_path / "places.geojson"
    gpd.GeoDataFrame({"place": ["chambery", "helsinki"]},
                     geometry=[Point(*p) for p in PLACES], crs=4326).to_file(path)
    src = intake.cat.xsits.s1_planetary_computer(aoi=str(path), id_column="place", start=START,
                                                 end=END, mode="patch", size=24)
    info = src.discover()
    meta = info["metadata"]
    assert info["npartitions"] == 2 and info["dtype"] == {"vv": "float32", "vh": "float32"}
    assert meta["stac"] == url and meta["collection"] == "sentinel-1-rtc"
    both = 0
    for fid in ("chambery", "helsinki"):
        items = sorted(src._search.items[fid], key=lambda it: it.datetime)
        passes = [world.passes[it.id] for it in items]
        labels = meta["dates"][fid]
        assert labels == [f"{p['solar_date']} {p['orbit_state']}" for p in passes]
        assert len(set(labels)) == len(labels) == meta["n_dates"][fid]
        days = [label.split()[0] for label in labels]
        both += sum(days.count(d) == 2 for d in set(days))
    assert both >= 2  # days with both passes: once two identical labels
    cube = src.read_partition("chambery").compute()
    items = sorted(src._search.items["chambery"], key=lambda it: it.datetime)
    assert cube.sizes == {"time": len(items), "y": 24, "x": 24}
    assert cube.orbit_state.values.tolist() == [world.passes[it.id]["orbit_state"]
                                                for it in items]
    for t, item in enumerate(items):
        for band in ("vv", "vh"):
            np.testing.assert_array_equal(cube[band].values[t],
                                          _file_window(world, item.id, band, cube))
    assert np.isfinite(cube.vv.values).sum() > 0
