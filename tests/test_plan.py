"""The shared plan against odc-stac: what planning once per search group could get wrong.

Every case builds one ItemsPlan for all the items of a group and cuts several features from
it (xsits.cube.load.cube_of), then compares each cube with ``odc.stac.load`` of that feature's
own items with odc-stac's default (GDAL) reader: the same dates, per-date order and values.
Cases: features across chunk and block edges, two UTM zones in one group, a foreign output
CRS, solar days that straddle midnight UTC (odc-stac snaps the longitude to whole hours), and
two relative orbits overlapping on one day.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import odc.stac
import pystac
import pytest
import rasterio
from odc.geo.geobox import GeoBox
from rasterio.transform import from_origin

from xsits.cube.load import band_config, cube_of
from xsits.cube.plan import group_dates, plan_items, solar_lon

PROJ = "https://stac-extensions.github.io/projection/v1.1.0/schema.json"


def _cog(path, epsg, x0, y0, value, *, size=300, res=10, nodata_corner=False):
    rng = np.random.default_rng(value)
    data = (rng.integers(1, 3000, (size, size)) + value).astype("uint16")
    if nodata_corner:  # a partial swath: the lower-left triangle is nodata
        rows, cols = np.mgrid[:size, :size]
        data[rows > cols + size // 3] = 0
    with rasterio.open(path, "w", driver="COG", width=size, height=size, count=1,
                       dtype="uint16", crs=f"EPSG:{epsg}", nodata=0, blocksize=128,
                       transform=from_origin(x0, y0, res, res)) as f:
        f.write(data[None])
    return GeoBox((size, size), from_origin(x0, y0, res, res), f"EPSG:{epsg}")


def _item(tmp_path, name, when, epsg, x0, y0, value, **kw):
    path = tmp_path / f"{name}.tif"
    gbox = _cog(path, epsg, x0, y0, value, **kw)
    item = pystac.Item(name, gbox.geographic_extent.json, list(gbox.geographic_extent.boundingbox),
                       when, {"proj:epsg": epsg, "proj:shape": list(gbox.shape.yx),
                              "proj:transform": list(gbox.affine)[:6]},
                       stac_extensions=[PROJ], collection="s2")
    item.add_asset("B04", pystac.Asset(str(path), roles=["data"]))
    return item


def _truth(items, gbox):
    cfg = {"*": {"assets": {"B04.*": {"data_type": "uint16", "nodata": 0}}}}
    return odc.stac.load(items, bands=["B04"], geobox=gbox, groupby="solar_day", chunks=None,
                         stac_cfg=cfg)


def _check(items, features, chunks=None):
    """Plan all items once; each feature's cube equals odc-stac's load of its own items."""
    plan = plan_items(items, ["B04"], stac_cfg=band_config(items, ["B04"]))
    for mine, gbox in features:
        positions = [plan.position(it) for it in mine]
        got = cube_of(plan, positions, gbox, chunks=chunks).compute()
        want = _truth(mine, gbox)
        assert got.time.values.astype("datetime64[ns]").tolist() == \
            want.time.values.astype("datetime64[ns]").tolist()
        np.testing.assert_array_equal(got.B04.values, want.B04.values)
        assert got.B04.dtype == want.B04.dtype


def test_features_across_chunk_and_block_edges_and_two_zones(tmp_path):
    t = dt.datetime(2024, 5, 1, 10, 30)
    a = _item(tmp_path, "a", t, 32631, 699000, 5001000, 1)  # zone 31, the east edge
    b = _item(tmp_path, "b", t, 32632, 299000, 5001000, 2)  # zone 32, the west edge
    c = _item(tmp_path, "c", t + dt.timedelta(days=5), 32631, 699000, 5001000, 3,
              nodata_corner=True)
    items = [a, b, c]
    base = GeoBox.from_bbox((699000, 4998000, 702000, 5001000), "EPSG:32631", resolution=10)
    features = [
        ([a, c], base[120:135, 120:135]),  # across the 128-px block edge
        ([a, c], base[100:140, 250:300]),  # to the file's east edge
        ([a, b, c], GeoBox.from_bbox((3.0, 45.1, 3.06, 45.14), "EPSG:4326", resolution=0.0004)),
        ([b], GeoBox.from_bbox((299200, 4998500, 299900, 5000900), "EPSG:32632",
                               resolution=20)),
    ]
    _check(items, features)
    _check(items, features[:2], chunks={"time": 1, "y": 7, "x": 7})  # chunk edges inside


@pytest.mark.parametrize("crs, res", [("EPSG:3035", 20), ("EPSG:3035", 10), ("EPSG:4326", 1e-4)])
def test_foreign_output_crs(tmp_path, crs, res):
    t = dt.datetime(2024, 5, 1, 10, 30)
    items = [_item(tmp_path, f"i{k}", t + dt.timedelta(days=5 * k), 32632, 500000, 5000000,
                   k + 1) for k in range(3)]
    native = GeoBox.from_bbox((500000, 4997000, 503000, 5000000), "EPSG:32632", resolution=10)
    boxes = [native[10:30, 10:30], native[200:260, 150:230], native[290:300, 0:40]]
    features = [(items, GeoBox.from_bbox(b.extent.to_crs(crs).boundingbox, crs,
                                         resolution=res)) for b in boxes]
    _check(items, features)


def test_solar_days_straddling_midnight_utc(tmp_path):
    # near lon 175.7 odc-stac's offset is int(175.7 / 15) = 11 h, not 11.7 h: items at 12:30
    # and 13:30 UTC fall on either side of the solar midnight
    t = dt.datetime(2024, 5, 1, 12, 30)
    items = [_item(tmp_path, "m1", t, 32660, 400000, 5000000, 1),
             _item(tmp_path, "m2", t + dt.timedelta(hours=1), 32660, 400000, 5000000, 2),
             _item(tmp_path, "m3", t + dt.timedelta(days=1, hours=1), 32660, 400000, 5000000,
                   3)]
    native = GeoBox.from_bbox((400000, 4997000, 403000, 5000000), "EPSG:32660", resolution=10)
    _check(items, [(items, native[:20, :20]), (items, native[100:130, 200:230])])
    plan = plan_items(items, ["B04"], stac_cfg=band_config(items, ["B04"]))
    lon = solar_lon(native[:20, :20])
    assert 165 < lon < 180
    # solar 23:30 May 1 | 00:30 May 2 | 01:30 May 3; a fractional offset (11.7 h) would have
    # put m1 on May 2 with m2
    assert group_dates(plan, [0, 1, 2], lon) == ((0,), (1,), (2,))


def test_overlapping_orbits_on_one_day_fuse_as_odc_stac(tmp_path):
    t = dt.datetime(2024, 5, 1, 10, 30)
    first = _item(tmp_path, "orbit-a", t, 32632, 500000, 5000000, 1, nodata_corner=True)
    second = _item(tmp_path, "orbit-b", t + dt.timedelta(minutes=40), 32632, 501000, 5001000,
                   2)
    later = _item(tmp_path, "orbit-c", t + dt.timedelta(days=2), 32632, 500000, 5000000, 3)
    items = [second, later, first]  # search order is not date order
    native = GeoBox.from_bbox((500000, 4997000, 504000, 5001000), "EPSG:32632", resolution=10)
    _check(items, [(items, native[150:260, 20:120]), (items, native[0:50, 0:50]),
                   ([first, second], native[250:300, 0:80])])
