"""The COG reader (xsits.reader) against rasterio, on the real Range server and on disk."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import odc.stac
import pytest
import rasterio
import rasterio.shutil
import xarray as xr
from conftest import WORLD_END, WORLD_POINTS, WORLD_START
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords
from odc.loader.types import RasterLoadParams, RasterSource
from rasterio.windows import Window
from shapely.geometry import Point

import xsits
from xsits import reader
from xsits.load import RetryingRioDriver, _warp, load_cube, nearest_index

QUERY = {"eo:cloud_cover": {"lt": 10}}


def _hrefs(world_items, band, n=3):
    return [it["assets"][band]["href"] for it in world_items[:n]]


def _on_disk(world, cog_server, href):
    return str(world.root / href[len(cog_server.url):])


@pytest.mark.parametrize("band", ["B04", "SCL"])
def test_windows_equal_rasterio_at_every_level(world, cog_server, world_items, band):
    for href in _hrefs(world_items, band):
        path = _on_disk(world, cog_server, href)
        for uri in (href, path):  # over HTTP and from the local disk
            head = reader.header(uri)
            assert head.levels[0].geobox.crs == rasterio.open(path).crs
            for level in head.levels:
                h, w = level.geobox.shape
                # rows in a tile's top part (inflated up to them) and at its bottom (whole)
                for rows in (slice(h // 3, h // 3 + 17), slice(h - 17, h)):
                    roi = (rows, slice(w // 2 - 5, w // 2 + 9))
                    plan = reader.Plan(level, roi, roi, True)
                    (got,) = reader.read_windows([(uri, 1, head, plan)])
                    ovr = {} if level.page == 0 else {"overview_level": level.page - 1}
                    with rasterio.open(path, **ovr) as src:
                        want = src.read(1, window=Window.from_slices(*roi))
                    assert got.shape == (17, 14) and got.dtype == want.dtype
                    np.testing.assert_array_equal(got, want)


def test_tiles_read_again_are_decoded_once_more_then_kept(world, cog_server, world_items,
                                                           monkeypatch):
    """A tile read by several features: its rows, then the whole tile (kept), then no decode."""
    href = _hrefs(world_items, "B04", 1)[0]
    reader.clear_cache()
    head = reader.header(href)
    level = head.levels[0]
    decodes = []
    real = reader._decode
    monkeypatch.setattr(reader, "_decode", lambda *a: decodes.append(a[5]) or real(*a))
    with rasterio.open(_on_disk(world, cog_server, href)) as src:
        for rows in (slice(10, 30), slice(40, 50), slice(10, 30), slice(0, 8)):  # one tile
            roi = (rows, slice(5, 16))
            (got,) = reader.read_windows([(href, 1, head, reader.Plan(level, roi, roi, True))])
            np.testing.assert_array_equal(got, src.read(1, window=Window.from_slices(*roi)))
    assert decodes == [(10, 30), (0, level.tile[0])]


def test_level_geoboxes_match_gdal(world, cog_server, world_items):
    path = _on_disk(world, cog_server, _hrefs(world_items, "B08", 1)[0])
    head = reader.header(path)
    for level in head.levels:
        ovr = {} if level.page == 0 else {"overview_level": level.page - 1}
        with rasterio.open(path, **ovr) as src:
            assert level.geobox.shape == (src.height, src.width)
            assert level.geobox.transform.almost_equals(src.transform)


def test_one_request_per_file_for_a_patch_cube(stac_url, cog_server):
    aoi = xsits.read_aoi(gpd.GeoDataFrame({"id": ["a"]}, geometry=[Point(WORLD_POINTS[1])],
                                          crs=4326))
    cubes = xsits.open_cubes(aoi, stac=stac_url, start=WORLD_START, end=WORLD_END,
                             query=QUERY, resolution=20, mode="patch", size=8,
                             bands=("B04", "SCL"))
    reader.clear_cache()  # earlier tests may have read these files in this process
    cog_server.reset_stats()
    cubes["a"].compute()
    stats = cog_server.stats()
    files = 2 * len(cubes.search.items["a"])
    # header + the 20 m level come in one request (the first PREFETCH_BYTES of each file)
    assert 0 < stats["requests"] <= files, (stats["requests"], files)


def test_small_files_are_fetched_whole_once_their_host_is_known(stac_url, cog_server,
                                                               monkeypatch):
    """After SMALL_FILES_SEEN small files of a host, each file costs one request, not two."""
    monkeypatch.setattr(reader, "SMALL_FILES_SEEN", 4)
    monkeypatch.setattr(reader, "PREFETCH_BYTES", 16 * 1024)  # the test files are ~100 KB
    aoi = xsits.read_aoi(gpd.GeoDataFrame({"id": ["a"]}, geometry=[Point(WORLD_POINTS[0])],
                                          crs=4326))
    cubes = xsits.open_cubes(aoi, stac=stac_url, start=WORLD_START, end=WORLD_END,
                             query=QUERY, resolution=10, mode="image", buffer=600.0,
                             bands=("B03", "B08"))
    files = 2 * len(cubes.search.items["a"])
    assert files >= 2 * reader.SMALL_FILES_SEEN
    reader.clear_cache()
    cog_server.reset_stats()
    first = cubes["a"].compute()
    # a new host: SMALL_FILES_SEEN headers first (then each of their tiles), the rest whole
    assert files + reader.SMALL_FILES_SEEN <= cog_server.stats()["requests"] < 2 * files
    host = reader._host(cubes.search.items["a"][0].assets["B03"].href)
    seen, largest = reader._state().sizes[host]
    assert seen == files and 16 * 1024 < largest <= reader.SMALL_FILE_BYTES
    assert reader._state().head_bytes(f"http://{host}/any.tif") >= largest

    reader.clear_cache()  # the bytes, not what was learnt of the host
    reader._state().sizes[host] = seen, largest
    cog_server.reset_stats()
    again = cubes["a"].compute()
    assert cog_server.stats()["requests"] == files
    xr.testing.assert_identical(again, first)

    reader._state().sizes[host] = seen, reader.SMALL_FILE_BYTES + 1  # a big file: headers only
    assert reader._state().head_bytes(f"http://{host}/any.tif") == reader.PREFETCH_BYTES


@pytest.mark.parametrize("crs", ["utm", "EPSG:3035"])
def test_cubes_equal_a_direct_odc_stac_load(stac_url, crs):
    """Same items, same grid: the values of ``odc.stac.load(items, geobox=...)`` (rasterio).

    For EPSG:3035 xsits reads on the items' own grid, at the level odc-stac would pick (full
    resolution or an overview, decided by the local scale at the feature), then warps by one
    index lookup; the result must not differ from odc-stac's direct warp by a single pixel.
    """
    compared = 0
    for i, point in enumerate(WORLD_POINTS):
        aoi = xsits.read_aoi(gpd.GeoDataFrame({"id": [f"p{i}"]}, geometry=[Point(point)],
                                              crs=4326))
        kw = dict(stac=stac_url, start=WORLD_START, end=WORLD_END, query=QUERY, resolution=20,
                  crs=crs, mode="image", buffer=300.0, bands=("B03", "B08", "SCL"))
        cubes = xsits.open_cubes(aoi, **kw)
        if not cubes:
            continue
        got = cubes[f"p{i}"].compute()
        items = cubes.search.items[f"p{i}"]
        want = odc.stac.load(items, bands=["B03", "B08", "SCL"], geobox=cubes[f"p{i}"].odc.geobox,
                             groupby="solar_day", resampling="nearest",
                             driver=RetryingRioDriver()).compute()
        assert got.sizes["time"] == want.sizes["time"] > 0
        for band in ("B03", "B08", "SCL"):
            np.testing.assert_array_equal(got[band].values, want[band].values, err_msg=band)
            assert (got[band].values > 0).mean() > 0.3  # not an empty window
        compared += 1
    assert compared >= 3


@pytest.mark.parametrize(("crs", "mode"), [("EPSG:3035", "patch"), ("EPSG:3035", "image"),
                                         ("utm", "image")])
def test_small_cube_task_equals_odc_stac_graph(stac_url, crs, mode):
    """A small cube is read by one task; it equals the cube of odc-stac's per-chunk graph."""
    aoi = xsits.read_aoi(gpd.GeoDataFrame({"id": ["a", "b"]}, geometry=[
        Point(WORLD_POINTS[0]), Point(WORLD_POINTS[-1])], crs=4326))
    res = xsits.search(aoi, stac=stac_url, start=WORLD_START, end=WORLD_END, query=QUERY,
                       bands=("B03", "B08", "SCL"))
    for fid, items in res.items.items():
        gbox = xsits.grid.feature_geoboxes(aoi, xsits.GridSpec(
            crs=crs, resolution=20, mode=mode, buffer=300.0, size=(7, 5)))[fid]
        small = load_cube(items, gbox, bands=["B03", "B08", "SCL"])
        graph = load_cube(items, gbox, bands=["B03", "B08", "SCL"], small_cube=False)
        reads = [k for k in small.__dask_graph__() if str(k).startswith("xsits-read-")]
        assert len(reads) == 1 and len(small.__dask_graph__()) < 10
        assert len(graph.__dask_graph__()) > len(items)  # a task per item and band at least
        got, want = small.compute(), graph.compute()
        xr.testing.assert_identical(got, want)
        for band in got.data_vars:
            assert got[band].encoding == want[band].encoding
        assert (got["B08"].values > 0).mean() > 0.3


def test_not_a_cog_is_read_by_rasterio(tmp_path):
    """A striped GeoTIFF (no tiles) goes to the rasterio reader, with the same values."""
    gbox = GeoBox.from_bbox((500000, 4000000, 500640, 4000480), "EPSG:32631", resolution=10)
    data = (np.arange(gbox.shape[0] * gbox.shape[1], dtype="uint16") % 5000 + 1).reshape(
        gbox.shape.yx)
    path = tmp_path / "striped.tif"
    with rasterio.open(path, "w", driver="GTiff", width=gbox.shape[1], height=gbox.shape[0],
                       count=1, dtype="uint16", crs="EPSG:32631", transform=gbox.transform,
                       nodata=0) as dst:
        dst.write(data, 1)
    with pytest.raises(reader.Unsupported):
        reader.header(str(path))
    driver = reader.CogDriver((), None, fallback=RetryingRioDriver())
    cfg = RasterLoadParams(dtype="uint16", fill_value=0, resampling="nearest")
    dst_gbox = gbox[5:20, 10:40]
    with driver.restore_env(driver.capture_env(), driver.new_load(dst_gbox)) as ctx:
        roi, pix = driver.open(RasterSource(str(path)), ctx).read(cfg, dst_gbox)
    np.testing.assert_array_equal(pix, data[5:20, 10:40])


def test_missing_file_is_a_load_error_after_retries(cog_server):
    with pytest.raises(xsits.errors.LoadError, match="cannot read"):
        reader.header(cog_server.url + "nope/missing.tif", retries=1, delay=0.01)


def test_nearest_index_warp_equals_xr_reproject():
    """The one-lookup warp of a lazy cube equals odc-geo's nearest warp of the same data."""
    src = GeoBox.from_bbox((600000, 5000000, 600600, 5000400), "EPSG:32632", resolution=20)
    x0, y0, x1, y1 = src.extent.to_crs("EPSG:3035").boundingbox
    dst = GeoBox.from_bbox((x0 + 60, y0 + 60, x1 - 60, y1 - 60), "EPSG:3035", resolution=20)
    rng = np.random.default_rng(0)
    values = rng.integers(1, 9999, (4, *src.shape.yx), dtype="uint16")
    arr = xr.DataArray(values, dims=("time", "y", "x"),
                       coords=xr_coords(src, crs_coord_name="spatial_ref"), attrs={"nodata": 0})
    got = _warp(arr.chunk({"time": 2}), src, dst, "nearest")
    want = arr.odc.reproject(dst, resampling="nearest")
    assert got.chunks is not None and got.shape == want.shape
    np.testing.assert_array_equal(got.values, want.values)
    assert (got.values > 0).all()  # dst lies inside src: no fill
    assert (nearest_index(src, dst) >= 0).all()


def test_signed_href_is_read_with_its_query(world, cog_server, world_items):
    """Hrefs with a query string keep it (a store per URL)."""
    href = _hrefs(world_items, "SCL", 1)[0] + "?sig=abc"
    assert reader._locate(href) == (href, "")  # its own client, the query string kept
    reader.clear_cache()
    head = reader.header(href)
    level = head.levels[0]
    roi = (slice(3, 20), slice(5, 19))
    (got,) = reader.read_windows([(href, 1, head, reader.Plan(level, roi, roi, True))])
    with rasterio.open(_on_disk(world, cog_server, href.split("?")[0])) as src:
        assert level.geobox.shape == (src.height, src.width)
        np.testing.assert_array_equal(got, src.read(1, window=Window.from_slices(*roi)))


@pytest.mark.parametrize("options", [
    {"COMPRESS": "DEFLATE", "PREDICTOR": "2"},
    {"COMPRESS": "NONE", "BIGTIFF": "YES"},
    {"COMPRESS": "DEFLATE", "ENDIANNESS": "BIG", "dtype": "int16", "nodata": -9999},
    {"COMPRESS": "DEFLATE", "PREDICTOR": "3", "dtype": "float32", "nodata": float("nan")},
    {"COMPRESS": "DEFLATE", "PREDICTOR": "2", "dtype": "float32", "nodata": -1.0},
    {"COMPRESS": "LZW"},
])
def test_lean_header_equals_tifffile_and_reads_equal_rasterio(tmp_path, options):
    opts = dict(options)
    dtype, nodata = opts.pop("dtype", "uint16"), opts.pop("nodata", 0)
    gbox = GeoBox.from_bbox((500000, 4000000, 505120, 4005120), "EPSG:32631", resolution=10)
    rng = np.random.default_rng(3)
    data = rng.integers(1, 3000, gbox.shape.yx).astype(dtype)
    plain, path = tmp_path / "plain.tif", tmp_path / "cog.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=gbox.shape[1], height=gbox.shape[0],
                       count=1, dtype=dtype, crs=gbox.crs.epsg, transform=gbox.transform,
                       nodata=nodata) as dst:
        dst.write(data, 1)
        dst.build_overviews([2, 4], rasterio.enums.Resampling.nearest)
    # a COG layout (header and overviews first) with the GTiff driver's options
    rasterio.shutil.copy(plain, path, driver="GTiff", COPY_SRC_OVERVIEWS="YES", TILED="YES",
                         BLOCKXSIZE=256, BLOCKYSIZE=256, **opts)
    head_bytes = path.read_bytes()[:reader.PREFETCH_BYTES]
    lean = reader._lean_header(head_bytes)
    if opts.get("COMPRESS") == "LZW" or (opts.get("PREDICTOR") and dtype == "float32"):
        assert lean is None
    else:
        assert lean is not None
        reader._lean_header, orig = (lambda _: None), reader._lean_header
        try:
            full = reader.parse_header(head_bytes)
        finally:
            reader._lean_header = orig
        assert lean.levels == full.levels and lean.overviews == full.overviews == (2, 4)
        assert lean.dtype == full.dtype and lean.byteorder == full.byteorder
        assert lean.deflate == full.deflate and lean.key == full.key
        assert (lean.nodata == full.nodata) or (np.isnan(lean.nodata) and np.isnan(full.nodata))
        for (o1, c1), (o2, c2) in zip(lean.tiles, full.tiles, strict=True):
            np.testing.assert_array_equal(o1, o2)
            np.testing.assert_array_equal(c1, c2)
    head = reader.header(str(path))
    for level in head.levels:
        h, w = level.geobox.shape
        roi = (slice(h // 3, h // 3 + 37), slice(w // 2 - 30, w // 2 + 9))
        (got,) = reader.read_windows([(str(path), 1, head, reader.Plan(level, roi, roi, True))])
        ovr = {} if level.page == 0 else {"overview_level": level.page - 1}
        with rasterio.open(path, **ovr) as src:
            np.testing.assert_array_equal(got, src.read(1, window=Window.from_slices(*roi)))


@pytest.mark.parametrize("resolution, origin", [(5, (500000, 4005120)), (3.3, (500001.7, 4005117))])
def test_driver_read_onto_finer_grids_equals_rasterio_reader(tmp_path, resolution, origin):
    """A 10 m COG read onto a 2x finer aligned grid (pixels repeated) and onto a misaligned
    3.3 m grid (warped) gives odc-stac's rasterio reader's values."""
    from affine import Affine

    gbox = GeoBox.from_bbox((500000, 4000000, 505120, 4005120), "EPSG:32631", resolution=10)
    data = np.random.default_rng(5).integers(1, 3000, gbox.shape.yx).astype("uint16")
    path = tmp_path / "cog.tif"
    with rasterio.open(path, "w", driver="GTiff", width=gbox.shape[1], height=gbox.shape[0],
                       count=1, dtype="uint16", crs="EPSG:32631", transform=gbox.transform,
                       nodata=0, tiled=True, blockxsize=256, blockysize=256,
                       COMPRESS="DEFLATE") as dst:
        dst.write(data, 1)
    dst_gbox = GeoBox((37, 41), Affine(resolution, 0, origin[0] + 1000, 0, -resolution,
                                       origin[1] - 1500), "EPSG:32631")
    cfg = RasterLoadParams(dtype="uint16", fill_value=0, resampling="nearest")
    got = {}
    for name, driver in (("cog", reader.CogDriver((), None, fallback=RetryingRioDriver())),
                         ("rio", RetryingRioDriver())):
        with driver.restore_env(driver.capture_env(), driver.new_load(dst_gbox)) as ctx:
            roi, got[name] = driver.open(RasterSource(str(path)), ctx).read(cfg, dst_gbox)
    assert got["cog"].shape == (37, 41)
    np.testing.assert_array_equal(got["cog"], got["rio"])
