"""Provider-shaped test worlds: Earth Search v1 / C1 / v0 items, loaded and harmonized by value.

Two synthetic worlds of the same landscape: ``raw`` holds DN without the +1000 offset (what
Earth Search serves once it removed it), ``offset`` the same DN + 1000 (ESA's DN since
baseline 04.00). Their items are given the exact shapes of real Earth Search items
(:mod:`xsits.testing.shapes`), written as local ItemCollections whose hrefs are on a local
Range server, and loaded through :func:`xsits.open_cubes`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import xsits
from xsits.cube import offset
from xsits.errors import HarmonizeWarning
from xsits.ops.harmonize import harmonize
from xsits.stac import providers
from xsits.testing.scenes import WorldSpec
from xsits.testing.shapes import SHAPES, reshape, template
from xsits.testing.world import make_world

POINT = (11.35, 48.05)
SPEC = dict(points=(POINT,), start="2024-05-01", end="2024-07-29", revisit_days=5,
            bands=("B02", "B03", "B04", "B08", "SCL"), window_m=1280, blocksize=128)
BANDS = ["B02", "B03", "B04", "SCL"]


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    raw = make_world(root / "raw", WorldSpec(**SPEC, baseline_switch="2100-01-01"))
    off = make_world(root / "offset", WorldSpec(**SPEC))
    return root, raw, off


@pytest.fixture(scope="module")
def server(worlds):
    from xsits.testing.launch import ServerError
    from xsits.testing.servers import CogServer

    try:
        cogs = CogServer(worlds[0]).start()
    except ServerError as err:  # pragma: no cover - the machine cannot run the server
        pytest.fail(f"local COG server unavailable: {err}") if __import__("os").environ.get(
            "CI") == "true" else pytest.skip(str(err))
    yield cogs
    cogs.stop()


@pytest.fixture(autouse=True)
def _fresh_offsets():
    offset.clear_cache()
    yield
    offset.clear_cache()


def _catalog(tmp_path: Path, items: list[dict]) -> str:
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return str(path)


def _shaped(world, server, sub, shape, **kw) -> list[dict]:
    return [reshape(it, shape, **kw) for it in world.item_dicts(server.url + sub)]


def _open(stac: str, collection: str):
    import geopandas as gpd
    from shapely.geometry import Point

    aoi = gpd.GeoDataFrame({"feature_id": ["p"]}, geometry=[Point(*POINT)], crs=4326)
    return xsits.open_cubes(aoi, stac=stac, collection=collection, bands=BANDS,
                            start=SPEC["start"], end=SPEC["end"], resolution=10,
                            mode="patch", size=(24, 24))


def _truth(world, cube, band: str) -> np.ndarray:
    """The world's DN at each cube pixel centre, per date (nearest: the pixel holding it)."""
    by_day = {m["solar_date"]: m for m in world.items_meta}
    res = 20 if band == "SCL" else 10
    out = []
    for t in cube.time.values:
        meta = by_day[str(np.datetime_as_string(t, unit="D"))]
        left, _, _, top = meta["bounds"]
        arr = world.truth(meta["id"], band)
        rows = np.floor((top - cube.y.values) / res).astype(int)
        cols = np.floor((cube.x.values - left) / res).astype(int)
        out.append(arr[np.ix_(rows, cols)])
    return np.stack(out)


def _shifted(dn: np.ndarray) -> np.ndarray:
    """What harmonize makes of offset DN: nodata 0 stays 0, valid DN -> max(DN, 1001) - 1000."""
    return np.where(dn == 0, 0, np.maximum(dn.astype(int), 1001) - 1000).astype(dn.dtype)


def _check(world, cube, *, removed: bool, names: dict[str, str]):
    """Values loaded equal the files'; harmonized equal the offset-free DN."""
    assert cube.offset_removed.values.tolist() == [removed] * cube.sizes["time"]
    out = harmonize(cube).compute()
    for band in BANDS:
        var = names.get(band, band)
        truth = _truth(world, cube, band)
        assert cube[var].dtype == truth.dtype  # the file's dtype
        loaded = cube[var].values
        np.testing.assert_array_equal(loaded, truth)
        want = truth if removed or band == "SCL" else _shifted(truth)
        np.testing.assert_array_equal(out[var].values, want)
    return out


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_reshape_copies_the_template_shape(worlds, shape):
    _, raw, _ = worlds
    item = reshape(raw.item_dicts("https://x.invalid/")[0], shape)
    tmpl = template(shape)
    assert set(item["properties"]) <= set(tmpl["properties"])  # nothing the template lacks
    assert item["stac_version"] == tmpl["stac_version"]
    assert item.get("collection") == tmpl.get("collection")
    for key, asset in item["assets"].items():
        want = {k for k in tmpl["assets"][key] if not k.startswith("file:")}
        assert set(asset) == want, key
        assert asset.get("raster:bands") == tmpl["assets"][key].get("raster:bands")
        if "proj:transform" in asset:
            assert len(asset["proj:transform"]) == len(tmpl["assets"][key]["proj:transform"])


# --------------------------------------------------------------------------- values


def test_pc_shape_is_shifted(worlds, server, tmp_path):
    _, _, off = worlds
    cubes = _open(_catalog(tmp_path, off.item_dicts(server.url + "offset/")), "sentinel-2-l2a")
    cube = cubes["p"]
    assert cube.processing_baseline.values[0] == "05.10"
    assert set(cube.platform.values) == {"Sentinel-2A", "Sentinel-2B"}
    _check(off, cube, removed=False, names={})


@pytest.mark.parametrize("shape", ["es-v1-2025", "es-v1-2023"])
def test_earth_search_v1_flag_true_is_not_shifted(worlds, server, tmp_path, shape):
    _, raw, _ = worlds
    items = _shaped(raw, server, "raw/", shape, offset_applied=True)
    cube = _open(_catalog(tmp_path, items), "sentinel-2-l2a")["p"]
    assert cube.platform.values[0] in ("Sentinel-2A", "Sentinel-2B")
    assert cube.mgrs_tile.values[0] == "32UPU"  # from grid:code
    _check(raw, cube, removed=True, names={"B02": "B02"})


def test_earth_search_v1_flag_false_on_offset_data_is_shifted(worlds, server, tmp_path):
    _, _, off = worlds
    items = _shaped(off, server, "offset/", "es-v1-2025", offset_applied=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", HarmonizeWarning)  # the guard does not fire
        cube = _open(_catalog(tmp_path, items), "sentinel-2-l2a")["p"]
    _check(off, cube, removed=False, names={})


def test_earth_search_v1_flag_false_on_removed_data_is_caught(worlds, server, tmp_path):
    """Element84/earth-search#66 / #71: the flag says false, the COG has no offset."""
    _, raw, _ = worlds
    items = _shaped(raw, server, "raw/", "es-v1-2025", offset_applied=False)
    with pytest.warns(HarmonizeWarning) as record:
        cube = _open(_catalog(tmp_path, items), "sentinel-2-l2a")["p"]
    flagged = [str(w.message).split("'")[1] for w in record
               if issubclass(w.category, HarmonizeWarning)]
    assert flagged and set(flagged) <= {it["id"] for it in items}  # each names its item
    assert len(flagged) == len(set(flagged))  # one warning per item
    # every date the guard saw through is left as it is, the others (all cloud) are not
    removed = cube.offset_removed.values
    assert removed.mean() >= 0.8
    out = harmonize(cube).compute()
    truth = _truth(raw, cube, "B04")
    np.testing.assert_array_equal(out.B04.values[removed], truth[removed])


def test_earth_search_c1_keeps_the_offset(worlds, server, tmp_path):
    """Collection 1 keeps ESA's DN (Element84/earth-search#41): shifted when harmonized."""
    _, _, off = worlds
    items = _shaped(off, server, "offset/", "es-c1-2025")
    assert "earthsearch:boa_offset_applied" not in items[0]["properties"]
    cube = _open(_catalog(tmp_path, items), "sentinel-2-c1-l2a")["p"]
    assert cube.processing_baseline.values[0] == "05.11"
    _check(off, cube, removed=False, names={})


def test_earth_search_v0_2025_flag_true(worlds, server, tmp_path):
    _, raw, _ = worlds
    items = _shaped(raw, server, "raw/", "es-v0-2025")
    assert items[0]["properties"]["sentinel:boa_offset_applied"] is True
    cube = _open(_catalog(tmp_path, items), "sentinel-s2-l2a-cogs")["p"]
    assert cube.processing_baseline.values[0] == "05.11"  # sentinel:processing_baseline
    assert cube.boa_offset_applied.values.all()
    _check(raw, cube, removed=True, names={})


def test_earth_search_v0_2025_flag_false_is_shifted(worlds, server, tmp_path):
    _, _, off = worlds
    items = _shaped(off, server, "offset/", "es-v0-2025", offset_applied=False)
    cube = _open(_catalog(tmp_path, items), "sentinel-s2-l2a-cogs")["p"]
    _check(off, cube, removed=False, names={})


def test_earth_search_v0_2020_old_baseline(worlds, server, tmp_path):
    """No baseline property: 02.14 from the product id, never shifted."""
    _, raw, _ = worlds
    items = _shaped(raw, server, "raw/", "es-v0-2020")
    cube = _open(_catalog(tmp_path, items), "sentinel-s2-l2a-cogs")["p"]
    assert cube.processing_baseline.values[0] == "02.14"
    assert cube.mgrs_tile.values[0] == "32UPU"  # zone from proj:epsg
    _check(raw, cube, removed=True, names={})


# --------------------------------------------------------------------------- the guard


def test_guard_rates(worlds, server):
    """The data guard's false-alarm and detection rates on the test worlds (documented in
    xsits.cube.offset): no item carrying the offset is taken for offset-free."""
    import pystac

    _, raw, off = worlds
    shares_off = [offset.guard_share(offset.visible_hrefs(pystac.Item.from_dict(it)))
                  for it in off.item_dicts(server.url + "offset/")]
    shares_raw = [offset.guard_share(offset.visible_hrefs(pystac.Item.from_dict(it)))
                  for it in raw.item_dicts(server.url + "raw/")]
    false_alarms = sum(s >= offset.GUARD_SHARE for s in shares_off)
    detected = sum(s >= offset.GUARD_SHARE for s in shares_raw)
    assert len(shares_off) == len(shares_raw) == 18
    # measured (documented in xsits.cube.offset and the README): no false alarm, the largest share
    # of an item carrying the offset is 0; every offset-free item caught, the smallest 7 %
    assert false_alarms == 0 and max(shares_off) == 0.0
    assert detected == len(shares_raw) and min(shares_raw) > 0.07


def test_guard_off_trusts_the_flag(worlds, server, tmp_path):
    _, raw, _ = worlds
    items = _shaped(raw, server, "raw/", "es-v1-2025", offset_applied=False)
    with xsits.set_options(offset_guard="off"), warnings.catch_warnings():
        warnings.simplefilter("error", HarmonizeWarning)
        cube = _open(_catalog(tmp_path, items), "sentinel-2-l2a")["p"]
    assert not cube.offset_removed.values.any()


def test_mixed_date_keeps_one_decision(worlds, server):
    """Items of one date that disagree: the minority is dropped, with a warning naming it."""
    import pystac

    _, raw, off = worlds
    a = pystac.Item.from_dict(reshape(raw.item_dicts(server.url + "raw/")[0], "es-v1-2025",
                                      offset_applied=True))
    b = pystac.Item.from_dict(reshape(off.item_dicts(server.url + "offset/")[0], "es-c1-2025"))
    with pytest.warns(HarmonizeWarning, match=b.id):
        kept = offset.consistent_dates([[a, b]], offset.item_offsets([a, b]))
    assert [[it.id for it in g] for g in kept] == [[a.id]]


# --------------------------------------------------------------------------- band names


def test_landsat_bands_keep_their_names():
    """Planetary Computer landsat-c2-l2: 'red' is the item's own band, never renamed B04."""
    q = xsits.StacQuery(stac="planetary-computer", collection="landsat-c2-l2",
                        bands=("red", "nir08", "qa_pixel"))
    assert q.assets == {"red": "red", "nir08": "nir08", "qa_pixel": "qa_pixel"}
    q = xsits.StacQuery(stac="planetary-computer", collection="sentinel-2-l2a",
                        bands=("red", "SCL"))
    assert q.assets == {"red": "B04", "SCL": "SCL"}
    es = xsits.StacQuery(stac="earth-search", collection="landsat-c2-l2", bands=("red",))
    assert es.assets == {"red": "red"}


def test_local_landsat_items_are_found_by_their_own_band_names():
    import geopandas as gpd
    from shapely.geometry import Point

    path = str(Path(__file__).parent / "data" / "real" / "pc-landsat-c2-l2-2024.json")
    aoi = gpd.GeoDataFrame({"feature_id": ["tas"]}, geometry=[Point(148.7, -43.2)], crs=4326)
    res = xsits.search(aoi, stac=path, collection="landsat-c2-l2", bands=["red", "nir08"],
                       start="2024-04-17", end="2024-04-18")
    assert [it.id for it in res.items["tas"]] == ["LC09_L2SP_089090_20240417_02_T1"]
    assert res.query.assets == {"red": "red", "nir08": "nir08"}


def test_reflectance_bands_only():
    assert [providers.is_reflectance(b) for b in ("B01", "B8A", "swir22", "coastal")] == [True] * 4
    assert not any(providers.is_reflectance(b) for b in ("AOT", "aot", "WVP", "wvp", "SCL",
                                                          "scl", "qa_pixel", "visual"))


# --------------------------------------------------------------------------- one meaning


def _aoi():
    import geopandas as gpd
    from shapely.geometry import Point

    return gpd.GeoDataFrame({"feature_id": ["p"]}, geometry=[Point(*POINT)], crs=4326)


def _dates(res) -> list[str]:
    return sorted(it.properties["datetime"][:10] for it in res.items.get("p", []))


@pytest.mark.parametrize("how", [{"query": {"platform": {"eq": "Sentinel-2A"}}},
                                 {"filter": "platform = 'sentinel-2a'"},
                                 {"query": {"platform": {"in": ["SENTINEL-2A"]}}}])
def test_platform_means_the_same_on_every_provider(worlds, tmp_path, how):
    _, raw, _ = worlds
    s2a = sorted(m["datetime"][:10] for m in raw.items_meta if m["platform"] == "Sentinel-2A")
    catalogs = {"sentinel-2-l2a": raw.item_dicts("/x/"),
                "sentinel-s2-l2a-cogs": [reshape(it, "es-v0-2025")
                                         for it in raw.item_dicts("/x/")]}
    es = [reshape(it, "es-v1-2025") for it in raw.item_dicts("/x/")]
    for name, items in [*catalogs.items(), ("sentinel-2-l2a", es)]:
        path = tmp_path / f"{name}-{len(items[0]['properties'])}.json"
        path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
        res = xsits.search(_aoi(), stac=str(path), collection=name, bands=["B04"],
                           start=SPEC["start"], end=SPEC["end"], **how)
        assert _dates(res) == s2a, name


@pytest.mark.parametrize("shape", ["es-v1-2025", "es-c1-2025", "es-v0-2025"])
def test_mgrs_tile_means_the_same_on_earth_search(worlds, tmp_path, shape):
    _, raw, _ = worlds
    items = [reshape(it, shape) for it in raw.item_dicts("/x/")]
    assert "s2:mgrs_tile" not in items[0]["properties"]
    stac = _catalog(tmp_path, items)
    collection = items[0]["collection"]
    kw = dict(stac=stac, collection=collection, bands=["B04"], start=SPEC["start"],
              end=SPEC["end"])
    res = xsits.search(_aoi(), query={"s2:mgrs_tile": {"eq": "32UPU"}}, **kw)
    assert len(res.items["p"]) == 18
    cubes = xsits.open_cubes(_aoi(), query={"s2:mgrs_tile": {"eq": "31UDQ"}}, **kw)
    why = cubes.missing["p"]
    assert why.startswith(f"18 {collection} items cover this feature")
    assert "none matches the query" in why and "32" in why  # the tile it does have


def test_v0_tile_pattern_is_refused_with_the_fix(worlds, tmp_path):
    from xsits.errors import QueryError

    _, raw, _ = worlds
    stac = _catalog(tmp_path, [reshape(it, "es-v0-2025") for it in raw.item_dicts("/x/")])
    with pytest.raises(QueryError, match="sentinel:utm_zone.*'='"):
        xsits.search(_aoi(), stac=stac, collection="sentinel-s2-l2a-cogs", bands=["B04"],
                     start=SPEC["start"], end=SPEC["end"],
                     query={"s2:mgrs_tile": {"startsWith": "32"}})


def test_api_platform_either_spelling_and_why_nothing(stac_url, world_items):
    """Against the local pgstac API: Earth Search's spelling finds Planetary Computer's
    items, and a feature the query leaves empty says why in cubes.missing."""
    import geopandas as gpd
    from shapely.geometry import Point

    from conftest import WORLD_END, WORLD_POINTS, WORLD_START

    aoi = gpd.GeoDataFrame({"feature_id": ["a", "sea"]},
                           geometry=[Point(WORLD_POINTS[0]), Point(0.0, 0.0)], crs=4326)
    kw = dict(stac=stac_url, bands=["B04"], start=WORLD_START, end=WORLD_END)
    one = xsits.search(aoi, filter="platform = 'sentinel-2b'", **kw)
    other = xsits.search(aoi, query={"platform": {"eq": "Sentinel-2B"}}, **kw)
    assert [it.id for it in one.items["a"]] == [it.id for it in other.items["a"]]
    assert {it.properties["platform"] for it in one.items["a"]} == {"Sentinel-2B"}
    cubes = xsits.open_cubes(aoi, query={"s2:mgrs_tile": {"eq": "99ZZZ"}}, **kw)
    assert "items cover this feature" in cubes.missing["a"]
    assert 'on them s2:mgrs_tile is "31TGL"' in cubes.missing["a"]
    assert cubes.missing["sea"].startswith("no sentinel-2-l2a item covers this feature")


# --------------------------------------------------------------------------- broken scenes


def _broken_world(worlds, server, tmp_path):
    """The offset world's items; 2 items' files answer 404, 1 item's B04 is a truncated copy."""
    from xsits.io import reader

    reader.clear_cache()  # bytes and headers the other tests fetched are kept per process
    root, _, off = worlds
    items = off.item_dicts(server.url + "offset/")
    missing = [items[2], items[7]]
    for it in missing:
        for asset in it["assets"].values():
            server.set_fault(asset["href"][len(server.url):], 404, times=-1)
    short = items[11]
    src = off.asset_path(short["id"], "B04")
    dst = root / "broken" / src.name
    dst.parent.mkdir(exist_ok=True)
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    short["assets"]["B04"]["href"] = server.url + f"broken/{src.name}"
    return items, [it["id"] for it in missing], short["id"]


def test_broken_scenes_cost_a_date_not_the_feature(worlds, server, tmp_path):
    from xsits.ops import steps

    _, _, off = worlds
    items, missing, short = _broken_world(worlds, server, tmp_path)
    try:
        stac = _catalog(tmp_path, items)
        kw = dict(stac=stac, bands=BANDS, start=SPEC["start"], end=SPEC["end"], resolution=10,
                  mode="patch", size=(24, 24))
        report = xsits.compute_all(xsits.batch.AoiSource(_aoi(), kw), [steps.harmonize()],
                                   out_dir=tmp_path / "out", progress=False)
        (r,) = report.itertuples()
        assert r.status == "written" and r.n_dates == 18, report.to_string()
        lost = {(f["item"], f["href"].rsplit("/", 1)[1]) for f in r.failed_reads}
        assert {i for i, _ in lost} == {*missing, short}
        assert all("?" not in f["href"] and f["reason"] for f in r.failed_reads)
        assert any("404" in f["reason"] for f in r.failed_reads)
        doc = json.loads((tmp_path / "out" / "manifest.json").read_text())
        assert doc["features"]["p"]["failed_reads"] == r.failed_reads
        import xarray as xr

        out = xr.open_dataset(r.path, mask_and_scale=False)
        assert json.loads(out.attrs["failed_reads"]) == r.failed_reads
        assert "xsits_reads" not in out.attrs
        by_day = {m["id"]: m["solar_date"] for m in off.items_meta}
        days = [str(np.datetime_as_string(t, unit="D")) for t in out.time.values]
        for item_id in missing:
            i = days.index(by_day[item_id])
            for band in BANDS:
                assert int(out[band][i].max()) == 0  # nodata on that date, all bands
        i = days.index(by_day[short])
        assert int(out["B04"][i].max()) == 0 and int(out["B03"][i].max()) > 0
        # every other date holds the file's values, harmonized
        ok = [d for d in range(18) if days[d] not in {by_day[m] for m in [*missing, short]}]
        truth = _shifted(_truth(off, out.isel(time=ok), "B04"))
        np.testing.assert_array_equal(out["B04"].values[ok], truth)
        out.close()
        # fail-fast restored by the option: the feature fails, naming the href
        with xsits.set_options(on_missing_item="raise"):
            report = xsits.compute_all(xsits.batch.AoiSource(_aoi(), kw), [],
                                       out_dir=tmp_path / "strict", progress=False)
        assert report.status.tolist() == ["failed"]
        assert ".tif" in report.error[0]
    finally:
        server.clear_faults()
