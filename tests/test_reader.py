"""The reader driver (xsits.io.reader) against odc-stac's GDAL reader, on the real Range server.

The full matrix of layouts and requests is tests/test_conformance.py; these tests check the
driver's own behaviour: which reader serves what, requests per file, errors, caching.
"""

from __future__ import annotations

import time

import geopandas as gpd
import numpy as np
import odc.stac
import pytest
import rasterio
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.loader import RasterLoadParams, RasterSource
from shapely.geometry import Point

import xsits
from xsits.cube.load import band_config
from xsits.io import fetch, reader, tiff

from conftest import WORLD_END, WORLD_POINTS, WORLD_START

QUERY = {"eo:cloud_cover": {"lt": 10}}
BANDS = ("B03", "B08", "SCL")


def _point_aoi(i: int, name: str = "a") -> gpd.GeoDataFrame:
    return xsits.read_aoi(gpd.GeoDataFrame({"id": [name]}, geometry=[Point(WORLD_POINTS[i])],
                                           crs=4326))


def _truth(items, geobox, bands=BANDS):
    """odc-stac with its default (GDAL) reader, given the files' dtypes."""
    return odc.stac.load(items, bands=list(bands), geobox=geobox, groupby="solar_day",
                         resampling="nearest", stac_cfg=band_config(items, bands)).compute()


@pytest.mark.parametrize(("crs", "mode"), [("utm", "image"), ("EPSG:3035", "image"),
                                         ("EPSG:3035", "patch")])
def test_cubes_equal_odc_stac_with_gdal(stac_url, crs, mode):
    """Same items, same grid: every pixel, dtype and nodata equal GDAL's; the fast reader
    serves them (window copies on the UTM grid, GDAL-indexed lookups for EPSG:3035)."""
    compared = 0
    for i in range(len(WORLD_POINTS)):
        cubes = xsits.open_cubes(_point_aoi(i), stac=stac_url, start=WORLD_START,
                                 end=WORLD_END, query=QUERY, resolution=20, crs=crs, mode=mode,
                                 buffer=300.0, size=7, bands=BANDS)
        if not cubes:
            continue
        got = cubes["a"].compute()
        stats = reader.last_load_stats()
        want = _truth(cubes.search.items["a"], cubes["a"].odc.geobox)
        assert got.sizes["time"] == want.sizes["time"] > 0
        for band in BANDS:
            assert got[band].dtype == want[band].dtype == ("uint8" if band == "SCL" else "uint16")
            np.testing.assert_array_equal(got[band].values, want[band].values, err_msg=band)
            assert got[band].attrs["nodata"] == want[band].attrs["nodata"] == 0
            assert (got[band].values > 0).mean() > 0.3  # not an empty window
        assert stats["fast"] > 0 and stats["gdal"] == 0, stats
        compared += 1
    assert compared >= 3


def test_fast_reader_off_gives_the_same_cube(stac_url):
    cubes = xsits.open_cubes(_point_aoi(0), stac=stac_url, start=WORLD_START, end=WORLD_END,
                             query=QUERY, resolution=20, crs="EPSG:3035", mode="patch", size=9,
                             bands=BANDS)
    fast = cubes["a"].compute()
    before = reader.last_load_stats()
    with xsits.set_options(fast_reader=False):
        slow = cubes["a"].compute()
    after = reader.last_load_stats()
    assert after["fast"] == before["fast"] > 0 and after["gdal"] > before["gdal"] == 0
    xr.testing.assert_identical(fast, slow)


def test_requests_per_file_with_and_without_whole_files(stac_url, cog_server):
    """A file costs at most two requests (header, then its blocks); once its host is known to
    serve small files, one (the whole file) when ``whole_files`` is on."""
    cubes = xsits.open_cubes(_point_aoi(1), stac=stac_url, start=WORLD_START, end=WORLD_END,
                             query=QUERY, resolution=20, mode="patch", size=8,
                             bands=("B04", "SCL"))
    files = 2 * len(cubes.search.items["a"])
    for whole in (False, True):
        with xsits.set_options(whole_files=whole):
            reader.clear_cache()
            cog_server.reset_stats()
            cubes["a"].compute()
            requests = cog_server.stats()["requests"]
            assert files <= requests <= 2 * files, (whole, requests, files)
            reader.clear_cache()  # the bytes; what was learnt of the host stays
            cog_server.reset_stats()
            cubes["a"].compute()
            if whole:
                assert cog_server.stats()["requests"] == files


def test_layout_off_the_allow_list_goes_to_gdal(tmp_path):
    """A JPEG file is read by GDAL (odc's reader), with GDAL's values; no error."""
    gbox = GeoBox.from_bbox((500000, 4000000, 500640, 4000480), "EPSG:32631", resolution=10)
    data = (np.arange(gbox.shape[0] * gbox.shape[1]) % 250 + 1).astype("uint8").reshape(
        gbox.shape.yx)
    path = tmp_path / "jpeg.tif"
    with rasterio.open(path, "w", driver="GTiff", width=gbox.shape[1], height=gbox.shape[0],
                       count=1, dtype="uint8", crs="EPSG:32631", transform=gbox.transform,
                       compress="jpeg", tiled=True) as dst:
        dst.write(data, 1)
    (head,) = tiff.headers([str(path)])
    assert head.refusal == "compression JPEG"
    driver = reader.CogDriver([(str(path), True)])
    cfg = RasterLoadParams(dtype="uint8", resampling="nearest")
    dst_gbox = gbox[5:20, 10:40]
    with driver.restore_env(driver.capture_env(), driver.new_load(dst_gbox)) as ctx:
        _, pix = driver.open(RasterSource(str(path)), ctx).read(cfg, dst_gbox)
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(pix, src.read(1)[5:20, 10:40])
    assert driver.stats() == {"fast": 0, "gdal": 1}


@pytest.mark.parametrize("status", [404, 403])
def test_missing_or_forbidden_file_fails_at_once_naming_the_href(cog_server, status):
    href = cog_server.url + "nope/missing.tif?sig=SECRET"
    if status == 403:
        href = cog_server.url + "../outside.tif?sig=SECRET"
    t0 = time.monotonic()
    (err,) = tiff.headers([href])
    assert isinstance(err, xsits.errors.LoadError)
    assert time.monotonic() - t0 < 2  # no retries
    assert "missing.tif" in str(err) or "outside.tif" in str(err)
    assert "SECRET" not in str(err)


def test_signed_href_keeps_its_query(world, cog_server, world_items):
    href = world_items[0]["assets"]["SCL"]["href"] + "?sig=abc"
    assert fetch.locate(href) == (href, "")  # a store of its own keeps the query string
    reader.clear_cache()
    (head,) = tiff.headers([href])
    assert head.refusal is None and head.dtype == "uint8"


def test_header_of_many_levels_and_band_interleave(tmp_path):
    """Overviews anywhere in the file and band-interleaved samples are parsed as GDAL sees them."""
    gbox = GeoBox.from_bbox((600000, 5000000, 602560, 5002560), "EPSG:32632", resolution=10)
    path = tmp_path / "addo.tif"
    data = np.arange(2 * 256 * 256, dtype="int16").reshape(2, 256, 256)
    with rasterio.open(path, "w", driver="GTiff", width=256, height=256, count=2,
                       dtype="int16", crs="EPSG:32632", transform=gbox.transform, tiled=True,
                       blockxsize=64, blockysize=64, interleave="band", compress="zstd",
                       predictor=2, nodata=-1) as dst:
        dst.write(data)
    with rasterio.open(path, "r+") as dst:
        dst.build_overviews([2, 4, 8, 16])  # gdaladdo-style: IFDs after the image data
    (head,) = tiff.headers([str(path)])
    with rasterio.open(path) as src:
        assert head.factors == src.overviews(1)
        assert head.levels[0].geobox.transform == src.transform
    assert head.planar and head.count == 2 and head.nodata == -1 and head.refusal is None


@pytest.mark.parametrize(("crs", "mode"), [("EPSG:3035", "patch"), ("utm", "image")])
def test_small_cube_task_equals_odc_stac_graph(stac_url, crs, mode):
    """A small cube is one task running odc.stac.load itself; it equals odc-stac's own lazy
    graph (one task per date and band): values, dtypes, coordinates, attributes, encoding."""
    from xsits.cube.load import load_cube

    aoi = _point_aoi(2)
    res = xsits.search(aoi, stac=stac_url, start=WORLD_START, end=WORLD_END, query=QUERY,
                       bands=BANDS)
    gbox = xsits.cube.grid.feature_geoboxes(aoi, xsits.GridSpec(
        crs=crs, resolution=20, mode=mode, buffer=300.0, size=(7, 5)))["a"]
    small = load_cube(res.items["a"], gbox, bands=list(BANDS))
    graph = load_cube(res.items["a"], gbox, bands=list(BANDS), chunks={"time": 1})
    assert len(small.__dask_graph__()) < 10 < len(graph.__dask_graph__())
    got, want = small.compute(), graph.compute()
    xr.testing.assert_identical(got, want)
    for band in BANDS:
        assert got[band].encoding == want[band].encoding
    assert (got["B08"].values > 0).mean() > 0.3
