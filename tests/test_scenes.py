"""Tests of the synthetic Sentinel-2 L2A world generator (xsits.testing.scenes, pixels, world)."""

from __future__ import annotations

import json
import pathlib
import re

import numpy as np
import pytest
import rasterio

from xsits.testing.scenes import WorldSpec
from xsits.testing.world import make_world

DATA = pathlib.Path(__file__).parent / "data"

# Munich (32U), Denver (13T), Paris (31U), Sydney (56H, south), Manaus (21M, south)
POINTS = ((11.35, 48.05), (-105.1, 40.0), (2.35, 48.85), (151.2, -33.9), (-60.0, -3.1))
SPEC = WorldSpec(
    points=POINTS,
    start="2022-01-05",  # straddles baseline_switch 2022-01-25
    end="2022-03-01",
    revisit_days=5,
    bands=("B02", "B04", "B08", "B11", "SCL"),
)
PC_ID = re.compile(r"^S2[AB]_MSIL2A_\d{8}T\d{6}_R\d{3}_T\d{2}[C-X][A-Z]{2}_\d{8}T\d{6}$")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"), SPEC)


@pytest.fixture(scope="module")
def items(world):
    return world.item_dicts("http://127.0.0.1:8123/")


@pytest.fixture(scope="module")
def pc_item():
    return json.loads((DATA / "pc-item-example.json").read_text())


def _read(world, item_id, band):
    with rasterio.open(world.asset_path(item_id, band)) as ds:
        return ds.read(1)


def test_layout_ids_tiles_and_zones(world, items):
    n_dates = 12  # 2022-01-05 .. 2022-03-01 every 5 days
    assert len(items) == len(POINTS) * n_dates
    ids = [it["id"] for it in items]
    assert len(set(ids)) == len(ids)
    assert all(PC_ID.match(i) for i in ids)
    tiles = [w["tile"] for w in world.windows]
    # real MGRS tiles of these places
    assert tiles == ["32UPU", "13TDE", "31UDQ", "56HLH", "21MSS"]
    epsgs = [w["epsg"] for w in world.windows]
    assert epsgs == [32632, 32613, 32631, 32756, 32721]
    by_id = {it["id"]: it for it in items}
    for m in world.items_meta:
        p = by_id[m["id"]]["properties"]
        assert p["proj:epsg"] == m["epsg"] and p["proj:code"] == f"EPSG:{m['epsg']}"
        assert p["s2:mgrs_tile"] == m["tile"] and m["id"].split("_")[4] == "T" + m["tile"]


def test_window_on_20m_grid_of_tile_and_contains_point(world, items):
    from pyproj import Transformer

    for w, (lon, lat) in zip(world.windows, POINTS, strict=True):
        left, bottom, right, top = w["bounds"]
        assert right - left == top - bottom == SPEC.window_m
        # S2 tile origin: x = k*100000 - 40 (99960, 199960...), y = multiple of 100000
        assert (left + 40) % 20 == 0 and top % 20 == 0
        x, y = Transformer.from_crs(4326, w["epsg"], always_xy=True).transform(lon, lat)
        assert left < x < right and bottom < y < top
    for it in items:
        a10, a20 = it["assets"]["B04"], it["assets"]["SCL"]
        n = SPEC.window_m
        assert a10["proj:shape"] == [n // 10, n // 10] and a20["proj:shape"] == [n // 20, n // 20]
        assert a10["proj:transform"][0] == 10.0 and a20["proj:transform"][0] == 20.0
        # point inside the lon/lat footprint
        lon0, lat0, lon1, lat1 = it["bbox"]
        win = world.windows[[m["id"] for m in world.items_meta].index(it["id"]) // 12]
        lon, lat = POINTS[win["points"][0]]
        assert lon0 < lon < lon1 and lat0 < lat < lat1


def test_nearby_points_share_a_window(tmp_path):
    # third point 4 km east: same tile, own window, still unique PC-like ids
    pts = ((11.35, 48.05), (11.351, 48.0505), (11.40, 48.05))
    spec = WorldSpec(points=pts, end="2024-01-06", bands=("B04", "SCL"))
    w = make_world(tmp_path, spec)
    assert [win["points"] for win in w.windows] == [(0, 1), (2,)]
    assert w.windows[0]["tile"] == w.windows[1]["tile"]
    ids = [m["id"] for m in w.items_meta]
    assert len(ids) == 4 and len(set(ids)) == 4 and all(PC_ID.match(i) for i in ids)


def test_cloud_cover_and_percentages_match_written_scl(world, items):
    for it in items:
        scl = _read(world, it["id"], "SCL")
        p = it["properties"]
        valid = int((scl != 0).sum())
        cloudy = int(np.isin(scl, (8, 9, 10)).sum())
        assert p["eo:cloud_cover"] == pytest.approx(100.0 * cloudy / valid, abs=1e-9)
        assert p["s2:nodata_pixel_percentage"] == pytest.approx(
            100.0 * (scl == 0).sum() / scl.size, abs=1e-9
        )
        for key, cls in [
            ("s2:vegetation_percentage", 4),
            ("s2:water_percentage", 6),
            ("s2:cloud_shadow_percentage", 3),
            ("s2:high_proba_clouds_percentage", 9),
            ("s2:medium_proba_clouds_percentage", 8),
            ("s2:thin_cirrus_percentage", 10),
            ("s2:snow_ice_percentage", 11),
        ]:
            assert p[key] == pytest.approx(100.0 * (scl == cls).sum() / valid, abs=1e-9), key


def test_cloud_distribution_is_realistic(world):
    cc = np.array([m["cloud_cover"] for m in world.items_meta])
    assert 0.25 <= (cc < 10).mean() <= 0.7
    assert (cc > 99.9).any()
    assert ((cc >= 10) & (cc <= 60)).any()


def test_scl_classes_and_pixel_realism(world):
    seen = set()
    for m in world.items_meta:
        seen |= set(np.unique(_read(world, m["id"], "SCL")).tolist())
    assert {0, 3, 4, 5, 6, 8, 9, 10} <= seen
    # a clear summer-like check: water has low NIR, clouds are bright, shadows dark
    m = next(m for m in world.items_meta if m["cloud_cover"] > 20 and not m["partial_swath"])
    scl = _read(world, m["id"], "SCL")
    b08 = _read(world, m["id"], "B08").astype(float) - m["offset"]
    b08_20 = b08[::2, ::2]
    assert np.median(b08_20[scl == 9]) > 4000
    if (scl == 6).any():
        assert np.median(b08_20[scl == 6]) < 500
    if (scl == 3).any() and (scl == 4).any():
        assert np.median(b08_20[scl == 3]) < np.median(b08_20[scl == 4])
    # a picture, not flat, and changing over time
    ids = [m["id"] for m in world.items_meta if m["window"] == 0]
    b04 = _read(world, ids[0], "B04")
    assert b04.std() > 100
    assert not np.array_equal(b04, _read(world, ids[1], "B04"))


def test_seasonal_ndvi_at_centre(tmp_path):
    spec = WorldSpec(points=((11.35, 48.05),), revisit_days=20, bands=("B04", "B08", "SCL"))
    w = make_world(tmp_path, spec)
    ndvi = {}
    for m in w.items_meta:
        scl = w.truth(m["id"], "SCL")
        if scl[64, 64] not in (4, 5):
            continue
        r = float(w.truth(m["id"], "B04")[128, 128]) - m["offset"]
        n = float(w.truth(m["id"], "B08")[128, 128]) - m["offset"]
        ndvi[m["solar_date"][5:7]] = (n - r) / (n + r)
    summer = [v for k, v in ndvi.items() if k in ("06", "07")]
    winter = [v for k, v in ndvi.items() if k in ("01", "02", "11", "12")]
    assert summer and winter
    assert min(summer) > 0.6 and max(winter) < 0.4


def test_baseline_offset_and_truth(world, items):
    by_id = {it["id"]: it for it in items}
    pre = [m for m in world.items_meta if m["solar_date"] < "2022-01-25"]
    post = [m for m in world.items_meta if m["solar_date"] >= "2022-01-25"]
    assert pre and post
    assert {m["processing_baseline"] for m in pre} <= {"03.00", "03.01"}
    assert {m["processing_baseline"] for m in post} <= {"04.00"}
    assert all(m["offset"] == 0 for m in pre) and all(m["offset"] == 1000 for m in post)
    for m in post[:10]:
        b = _read(world, m["id"], "B02")
        assert b[b != 0].min() >= 1000
        assert by_id[m["id"]]["properties"]["s2:processing_baseline"] == "04.00"
    # clear-sky pre-switch scenes have many DNs below 1000 (dark blue over vegetation)
    clear_pre = [m for m in pre if m["cloud_cover"] < 5]
    assert any((_read(world, m["id"], "B02") < 1000).mean() > 0.2 for m in clear_pre)
    # truth() is what was written
    m = post[0]
    t = world.truth(m["id"], "B08")
    assert t.dtype == np.uint16 and t.shape == (SPEC.window_m // 10,) * 2
    assert t[100, 37] == _read(world, m["id"], "B08")[100, 37]


def test_cog_structure(world):
    m = world.items_meta[0]
    for band, dtype in [("B04", "uint16"), ("B11", "uint16"), ("SCL", "uint8")]:
        with rasterio.open(world.asset_path(m["id"], band)) as ds:
            assert ds.dtypes[0] == dtype and ds.nodata == 0
            assert ds.block_shapes[0] == (SPEC.blocksize, SPEC.blocksize)
            assert len(ds.overviews(1)) >= 1
            assert ds.compression.name.upper() == "DEFLATE"
            assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            assert ds.crs.to_epsg() == m["epsg"]
            left, bottom, right, top = m["bounds"]
            assert tuple(ds.bounds) == (left, bottom, right, top)


def test_partial_swath_nodata(world):
    partial = [m for m in world.items_meta if m["partial_swath"]]
    full = [m for m in world.items_meta if not m["partial_swath"]]
    assert partial and full
    for w in world.windows:
        orbits = {m["relative_orbit"] for m in partial if m["window"] == w["index"]}
        assert orbits == {w["partial_orbit"]}
    for m in partial:
        scl = _read(world, m["id"], "SCL")
        b04 = _read(world, m["id"], "B04")
        nod = scl == 0
        assert 3 < nod.mean() * 100 < 30
        assert (b04[::2, ::2][nod] == 0).all() and (b04[1::2, 1::2][nod] == 0).all()
        assert (b04[::2, ::2][~nod] > 0).all()
        n = scl.shape[0]
        assert scl[n // 2, n // 2] != 0  # window centre always valid
        # a straight diagonal edge: nodata is one corner triangle
        corners = [nod[0, 0], nod[0, -1], nod[-1, 0], nod[-1, -1]]
        assert sum(corners) == 1
    for m in full[:10]:
        assert m["nodata_percentage"] == 0.0


def test_time_platform_solar_day(world, items):
    for w in world.windows:
        ms = [m for m in world.items_meta if m["window"] == w["index"]]
        assert [m["platform"] for m in ms[:2]] == ["Sentinel-2A", "Sentinel-2B"]
        assert len({m["solar_date"] for m in ms}) == len(ms)
    for it in items:
        lon = (it["bbox"][0] + it["bbox"][2]) / 2
        t = it["properties"]["datetime"]
        hh, mm = int(t[11:13]), int(t[14:16])
        local = (hh + mm / 60 + lon / 15) % 24
        assert 10.0 < local < 11.0, (t, lon)


def test_keys_like_planetary_computer(items, pc_item):
    it = items[0]
    assert set(it) == set(pc_item)
    missing = set(pc_item["properties"]) - set(it["properties"])
    assert not missing
    pc_data_assets = {k for k, a in pc_item["assets"].items() if "data" in a["roles"]}
    assert set(it["assets"]) <= pc_data_assets
    for band, a in it["assets"].items():
        assert set(pc_item["assets"][band]) <= set(a)
        assert a["type"] == pc_item["assets"][band]["type"]
        assert a["title"] == pc_item["assets"][band]["title"]
        assert a["raster:bands"][0]["nodata"] == 0
        assert a["href"].startswith("http://127.0.0.1:8123/") and a["href"].endswith(".tif")
    assert {ln["rel"] for ln in it["links"]} >= {"collection", "parent", "root", "self"}
    assert all("planetarycomputer" not in ln["href"] for ln in it["links"])
    assert set(pc_item["stac_extensions"]) <= set(it["stac_extensions"])


def test_items_parse_with_pystac(items, world):
    import pystac

    for d in items[:5]:
        it = pystac.Item.from_dict(d)
        assert it.datetime is not None and it.geometry["type"] == "Polygon"
        ring = it.geometry["coordinates"][0]
        assert ring[0] == ring[-1]
        # counter-clockwise exterior ring (RFC 7946)
        area2 = sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(ring, ring[1:], strict=False))
        assert area2 > 0
        for a in it.assets.values():
            assert a.media_type == pystac.MediaType.COG
    coll = pystac.Collection.from_dict(world.collection)
    assert coll.id == "sentinel-2-l2a"
    (b0,) = world.collection["extent"]["spatial"]["bbox"]
    assert b0[0] < -100 and b0[2] > 150


def test_write_item_collection_and_odc_load(world, tmp_path):
    import odc.stac
    import pystac

    path = world.write_item_collection(tmp_path / "items.geojson")
    ic = pystac.ItemCollection.from_file(str(path))
    assert len(ic) == len(world.items_meta)
    href = ic.items[0].assets["SCL"].href
    assert pathlib.Path(href).is_absolute() and pathlib.Path(href).exists()
    sel = [it for it in ic.items if it.properties["s2:mgrs_tile"] == "32UPU"][:3]
    ds = odc.stac.load(sel, bands=["B04", "SCL"], groupby="solar_day", chunks={})
    assert ds.sizes["time"] == 3 and ds.B04.dtype == np.uint16
    got = ds.B04.isel(time=0).values
    assert np.array_equal(got, world.truth(sel[0].id, "B04"))


def test_determinism_and_reuse(tmp_path):
    spec = WorldSpec(points=((11.35, 48.05), (-3.7, 40.4)), end="2024-01-20", seed=7)
    a = make_world(tmp_path / "a", spec)
    b = make_world(tmp_path / "b", spec)
    ia, ib = a.item_dicts("http://x/"), b.item_dicts("http://x/")
    assert json.dumps(ia) == json.dumps(ib)
    m = a.items_meta[3]["id"]
    assert a.asset_path(m, "B08").read_bytes() == b.asset_path(m, "B08").read_bytes()
    assert a.asset_path(m, "SCL").read_bytes() == b.asset_path(m, "SCL").read_bytes()
    pa = a.write_item_collection(tmp_path / "a.json", href_base="http://x/")
    pb = b.write_item_collection(tmp_path / "b.json", href_base="http://x/")
    assert pa.read_bytes() == pb.read_bytes()
    # reuse: nothing rewritten
    cog = a.asset_path(m, "B08")
    before = (cog.stat().st_mtime_ns, (tmp_path / "a" / "world.json").stat().st_mtime_ns)
    again = make_world(tmp_path / "a", spec)
    after = (cog.stat().st_mtime_ns, (tmp_path / "a" / "world.json").stat().st_mtime_ns)
    assert before == after and again.item_dicts("http://x/") == ia
    # another seed: different pixels, regenerated in place, stale files removed
    spec2 = WorldSpec(points=spec.points, end="2024-01-10", seed=8)
    c = make_world(tmp_path / "a", spec2)
    assert not np.array_equal(c.truth(c.items_meta[0]["id"], "B08"), b.truth(m, "B08"))
    files = {p for p in (tmp_path / "a").rglob("*.tif")}
    assert files == {c.asset_path(x["id"], band) for x in c.items_meta for band in spec.bands}
    assert not cog.exists()


def test_spec_validation():
    with pytest.raises(ValueError, match="window_m"):
        WorldSpec(points=((0.0, 45.0),), window_m=2550)
    with pytest.raises(ValueError, match="bands"):
        WorldSpec(points=((0.0, 45.0),), bands=("B99",))
    with pytest.raises(ValueError, match="empty"):
        WorldSpec(points=())
