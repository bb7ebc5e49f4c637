"""Search and lazy loading against the real local STAC world (pgstac API + Range COG server)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rasterio
from pyproj import Transformer
from shapely.geometry import Point, box, shape

import xsits
from xsits.errors import QueryError
from xsits.stac.query import StacQuery

from conftest import WORLD_END, WORLD_POINTS, WORLD_START

QUERY = {"eo:cloud_cover": {"lt": 10}}


@pytest.fixture(scope="module")
def aoi():
    ids = [f"p{i}" for i in range(len(WORLD_POINTS))] + ["sea"]
    pts = [Point(xy) for xy in WORLD_POINTS] + [Point(0.0, 0.0)]  # Gulf of Guinea: no tile
    import geopandas as gpd

    return xsits.read_aoi(gpd.GeoDataFrame({"id": ids}, geometry=pts, crs=4326))


def _expected_ids(items, geom, pred=lambda it: True):
    return sorted(
        it["id"] for it in items
        if shape(it["geometry"]).intersects(geom)
        and WORLD_START <= it["properties"]["datetime"][:10] <= WORLD_END
        and pred(it)
    )


def _kw(stac_url, **extra):
    return {"stac": stac_url, "start": WORLD_START, "end": WORLD_END,
            "bands": ("B03", "B04", "B08", "SCL"), **extra}


def _truth_at(world, cog_url, item, band, x, y):
    """The DN of ``band`` of ``item`` at UTM (x, y), read straight from the COG file on disk."""
    rel = item["assets"][band]["href"][len(cog_url):]
    with rasterio.open(world.root / rel) as src:
        return int(next(src.sample([(x, y)]))[0])


def test_query_returns_exactly_the_items_below_10_percent(stac_url, world_items, aoi):
    res = xsits.search(aoi, **_kw(stac_url, query=QUERY))
    below = 0
    for fid, geom in zip(aoi["feature_id"], aoi.geometry, strict=True):
        want = _expected_ids(world_items, geom, lambda it: it["properties"]["eo:cloud_cover"] < 10)
        got = sorted(it.id for it in res.items.get(fid, []))
        assert got == want, fid
        below += len(got)
    assert below > 0
    assert "sea" in res.missing and "no sentinel-2-l2a item" in res.missing["sea"]
    # some items really are cloudier: the query did filter
    all_ids = _expected_ids(world_items, aoi.geometry.iloc[0])
    assert len(all_ids) > len(res.items["p0"])


def test_cql2_filter_and_max_cloud_agree_with_query(stac_url, aoi):
    by_query = xsits.search(aoi, **_kw(stac_url, query=QUERY))
    by_filter = xsits.search(aoi, **_kw(stac_url, filter={
        "op": "<", "args": [{"property": "eo:cloud_cover"}, 10]}))
    by_max = xsits.search(aoi, **_kw(stac_url, max_cloud=10))
    for r in (by_filter, by_max):
        assert {f: [i.id for i in v] for f, v in r.items.items()} == {
            f: [i.id for i in v] for f, v in by_query.items.items()}


def test_local_item_collection_is_searched_in_process(stac_url, world, cog_server, aoi, tmp_path):
    path = world.write_item_collection(tmp_path / "items.json", href_base=cog_server.url)
    api = xsits.search(aoi, **_kw(stac_url, query=QUERY))
    local = xsits.search(aoi, **_kw(str(path), query=QUERY))
    text = xsits.search(aoi, **_kw(str(path), filter="\"eo:cloud_cover\" < 10"))
    ids = {f: [i.id for i in v] for f, v in api.items.items()}
    assert {f: [i.id for i in v] for f, v in local.items.items()} == ids
    assert {f: [i.id for i in v] for f, v in text.items.items()} == ids
    assert set(local.missing) == {"sea"}


def test_stac_requests_do_not_grow_with_nearby_features(pg_stac, stac_url):
    import geopandas as gpd

    rng = np.random.default_rng(1)
    lon0, lat0 = WORLD_POINTS[0]

    def count(n):
        pts = [Point(lon0 + dx, lat0 + dy) for dx, dy in rng.uniform(-0.004, 0.004, (n, 2))]
        aoi = xsits.read_aoi(gpd.GeoDataFrame(geometry=pts, crs=4326))
        pg_stac.reset_stats()
        res = xsits.search(aoi, **_kw(stac_url))
        assert len(res.items) == n
        return sum(v for k, v in pg_stac.stats().items() if k.rstrip("/").endswith("search"))

    assert count(2) == count(50) == 1


def test_patch_pixels_equal_the_generated_dn(stac_url, world, world_items, cog_server, aoi):
    cubes = xsits.open_cubes(aoi, **_kw(stac_url, query=QUERY), mode="patch", size=(5, 5),
                             resolution=10)
    assert set(cubes) == {f"p{i}" for i in range(len(WORLD_POINTS))}
    assert "sea" in cubes.missing
    cube = cubes["p4"]
    assert dict(cube.sizes)["y"] == 5 and dict(cube.sizes)["x"] == 5
    assert cube.B04.dtype == np.uint16 and cube.SCL.dtype == np.uint8
    loaded = cube.compute()
    by_id = {it["id"]: it for it in world_items}
    items = cubes.search.items["p4"]
    assert loaded.sizes["time"] == len({it.datetime.date() for it in items})
    for t, it in enumerate(sorted(items, key=lambda i: i.datetime)):
        for band in ("B04", "SCL", "B08"):
            for j, i in [(2, 2), (0, 4), (4, 0)]:
                x, y = float(loaded.x[i]), float(loaded.y[j])
                want = _truth_at(world, cog_server.url, by_id[it.id], band, x, y)
                assert int(loaded[band][t, j, i]) == want, (it.id, band, j, i)
    # per-date coordinates are the item properties
    assert loaded.cloud_cover.values.tolist() == [
        by_id[i.id]["properties"]["eo:cloud_cover"] for i in items]
    assert loaded.processing_baseline.values.tolist() == [
        by_id[i.id]["properties"]["s2:processing_baseline"] for i in items]
    assert loaded.platform.values.tolist() == [by_id[i.id]["properties"]["platform"] for i in items]


def test_cubes_are_lazy_until_compute(stac_url, cog_server, aoi):
    before = cog_server.stats()["requests"]
    cubes = xsits.open_cubes(aoi, **_kw(stac_url), mode="patch", size=(4, 4))
    assert cog_server.stats()["requests"] == before  # nothing read yet
    assert all(cube.B04.chunks is not None for cube in cubes.values())
    from xsits.io.reader import clear_cache

    clear_cache()  # earlier tests may have left these files in the reader's cache
    cubes["p0"].B04.isel(time=0).compute()
    assert cog_server.stats()["requests"] > before


def test_two_utm_zones_into_epsg3035(stac_url, world, world_items, cog_server, aoi):
    sub = aoi[aoi.feature_id.isin(["p0", "p2"])]
    cubes = xsits.open_cubes(sub, **_kw(stac_url, query=QUERY), mode="patch", size=(10, 10),
                             resolution=20, crs="EPSG:3035")
    by_id = {it["id"]: it for it in world_items}
    epsgs = set()
    for fid in ("p0", "p2"):
        cube = cubes[fid].compute()
        assert cube.odc.crs.epsg == 3035 and (cube.sizes["y"], cube.sizes["x"]) == (10, 10)
        item = by_id[cubes.search.items[fid][0].id]
        epsg = item["properties"]["proj:epsg"]
        epsgs.add(epsg)
        to_utm = Transformer.from_crs(3035, epsg, always_xy=True)
        x, y = to_utm.transform(float(cube.x[5]), float(cube.y[5]))
        want = _truth_at(world, cog_server.url, item, "SCL", x, y)
        assert int(cube.SCL[0, 5, 5]) == want
    assert len(epsgs) == 2  # really two zones


def test_patch_near_window_edge_is_exact_size(stac_url, aoi):
    cubes = xsits.open_cubes(aoi[aoi.feature_id == "p5"], **_kw(stac_url), mode="patch",
                             size=(150, 140), resolution=20, crs="EPSG:3035")
    cube = cubes["p5"].compute()
    assert (cube.sizes["x"], cube.sizes["y"]) == (150, 140)  # wider than the 2.56 km window
    assert (cube.B04 == 0).any() and (cube.B04 > 0).any()  # nodata beyond the window, data inside


def test_image_mode_covers_the_buffered_bbox(stac_url, aoi):
    import geopandas as gpd

    lon, lat = WORLD_POINTS[4]
    field = box(lon - 0.002, lat - 0.001, lon + 0.002, lat + 0.001)
    fields = xsits.read_aoi(gpd.GeoDataFrame({"id": ["f"]}, geometry=[field], crs=4326))
    cube = xsits.open_cubes(fields, **_kw(stac_url), mode="image", buffer=100, resolution=10)["f"]
    utm = gpd.GeoSeries([field], crs=4326).to_crs(cube.odc.crs.epsg).iloc[0]
    x0, y0, x1, y1 = cube.odc.geobox.boundingbox
    bx0, by0, bx1, by1 = utm.bounds
    assert x0 <= bx0 - 100 and y0 <= by0 - 100 and x1 >= bx1 + 100 and y1 >= by1 + 100
    assert x1 - x0 <= bx1 - bx0 + 200 + 20 and y1 - y0 <= by1 - by0 + 200 + 20


def test_provenance_attrs_never_carry_tokens(stac_url, aoi):
    parts = stac_url.split("://")
    url = f"{parts[0]}://user:SECRET@{parts[1]}/?token=SECRET"
    cube = xsits.open_cubes(aoi[aoi.feature_id == "p0"], **_kw(stac_url, query=QUERY),
                            mode="patch", size=(3, 3))["p0"]
    assert StacQuery(stac=url).endpoint == stac_url
    for key in ("collection", "stac", "query", "feature_id", "mode", "crs", "resolution"):
        assert key in cube.attrs
    assert cube.attrs["stac"] == stac_url and cube.attrs["feature_id"] == "p0"
    assert "SECRET" not in repr(cube.attrs)
    assert cube.attrs["mode"] == "patch" and cube.attrs["crs"].startswith("EPSG:326")


def test_time_coords_dates_and_bad_dates(stac_url, aoi):
    res = xsits.search(aoi, **_kw(stac_url))
    for items in res.items.values():
        days = [pd.Timestamp(i.datetime).tz_convert(None) for i in items]
        assert min(days) >= pd.Timestamp(WORLD_START)
        assert max(days) < pd.Timestamp(WORLD_END) + pd.Timedelta("1D")
    with pytest.raises(QueryError, match="before start"):
        xsits.search(aoi, **_kw(stac_url, start="2022-02-01", end="2022-01-01"))
    with pytest.raises(QueryError, match="not a preset"):
        xsits.search(aoi, **_kw("no-such-preset"))


def test_to_patch_of_a_patch_cube_changes_nothing(stac_url, aoi):
    cube = xsits.open_cubes(aoi[aoi.feature_id == "p3"], **_kw(stac_url), mode="patch",
                            size=(6, 5), resolution=20, crs="EPSG:3035")["p3"]
    again = cube.sits.to_patch(6, 5)
    np.testing.assert_array_equal(again.x.values, cube.x.values)
    np.testing.assert_array_equal(again.y.values, cube.y.values)
    np.testing.assert_array_equal(again.B04.values, cube.B04.values)


def test_streamed_search_equals_search_and_cubes_keep_aoi_order(stac_url, aoi):
    """iter_search yields one result per group search; open_cubes consumes them as they come."""
    from xsits.stac.search import iter_search, merge_results

    kw = _kw(stac_url, query=QUERY)
    whole = xsits.search(aoi, **kw)
    parts = list(iter_search(aoi, **kw))
    assert len(parts) == whole.n_searches > 1
    assert all(p.n_searches == 1 for p in parts)
    merged = merge_results(parts, whole.query)
    assert {f: [i.id for i in v] for f, v in merged.items.items()} == \
        {f: [i.id for i in v] for f, v in whole.items.items()}
    assert merged.missing == whole.missing
    cubes = xsits.open_cubes(aoi, resolution=20, mode="patch", size=4, **kw)
    assert list(cubes) == [f for f in aoi["feature_id"] if f in whole.items]
    assert set(cubes.missing) == {"sea"} and cubes.search.n_searches == whole.n_searches


def test_clip_true_masks_exactly_outside_a_polygon_with_a_hole(stac_url):
    """open_cubes(clip=True): integer bands hold their nodata exactly where
    rasterio.features.geometry_mask says the pixel centre is outside the polygon."""
    import geopandas as gpd
    from rasterio.features import geometry_mask
    from shapely.geometry import Polygon

    lon, lat = WORLD_POINTS[0]
    d = 0.004
    outer = [(lon - d, lat - d), (lon + d, lat - d), (lon + d, lat + d), (lon - d, lat + d)]
    hole = [(lon - d / 3, lat - d / 3), (lon + d / 3, lat - d / 3), (lon, lat + d / 3)]
    field = Polygon(outer, [hole])
    aoi = xsits.read_aoi(gpd.GeoDataFrame({"id": ["f"]}, geometry=[field], crs=4326))
    kw = dict(stac=stac_url, start=WORLD_START, end=WORLD_END, query={"eo:cloud_cover": {"lt": 10}},
              resolution=20, mode="image", bands=("B04", "SCL"))
    full = xsits.open_cubes(aoi, **kw)["f"].compute()
    cut = xsits.open_cubes(aoi, clip=True, **kw)["f"].compute()
    gbox = cut.odc.geobox
    poly = gpd.GeoSeries([field], crs=4326).to_crs(gbox.crs).iloc[0]
    outside = geometry_mask([poly], out_shape=gbox.shape.yx, transform=gbox.transform)
    assert 0 < outside.mean() < 1 and outside[gbox.shape.y // 2].any()  # the hole is outside
    for band in ("B04", "SCL"):
        assert cut[band].dtype == full[band].dtype
        assert (cut[band].values[:, outside] == 0).all()
        np.testing.assert_array_equal(cut[band].values[:, ~outside], full[band].values[:, ~outside])
    assert "geometry" in cut.attrs
