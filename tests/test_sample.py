"""xsits.sample against the real local STAC world: the table equals the 1x1 patch cubes."""

from __future__ import annotations

import importlib
import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import Point, box

import xsits
from xsits.errors import AOIError, ExportError, OutputExistsError, SampleError
from xsits.io import reader
from xsits.ops import steps
from xsits.ops.mask import DEFAULT_CLASSES
from xsits.sampling import read as sampling_read

from conftest import WORLD_END, WORLD_POINTS, WORLD_START

QUERY = {"eo:cloud_cover": {"lt": 30}}
BANDS = ("B04", "B08", "SCL")
STEPS = [steps.harmonize(), steps.scl_mask(), steps.gapfill("linear")]


def _kw(stac_url, **extra):
    return {"stac": stac_url, "start": WORLD_START, "end": WORLD_END, "bands": BANDS,
            "query": QUERY, "resolution": 10, **extra}


def _points(n_extra: int = 2, seed: int = 0) -> gpd.GeoDataFrame:
    """The world's points, ``n_extra`` more near each, and one at sea; labels attached."""
    rng = np.random.default_rng(seed)
    pts, ids = [], []
    for k, (lon, lat) in enumerate(WORLD_POINTS):
        pts.append(Point(lon, lat))
        ids.append(f"w{k}")
        for j in range(n_extra):  # within ~700 m: inside the point's 2.56 km window
            dx, dy = rng.uniform(-0.006, 0.006, 2)
            pts.append(Point(lon + dx, lat + dy))
            ids.append(f"w{k}-{j}")
    pts.append(Point(0.0, 0.0))
    ids.append("sea")
    crops = np.array(["maize", "wheat", "rapeseed"])[np.arange(len(ids)) % 3]
    return xsits.read_aoi(gpd.GeoDataFrame(
        {"plot": ids, "crop": crops, "year": np.arange(len(ids)) + 2000},
        geometry=pts, crs=4326), id_column="plot")


def _truth(aoi, stac_url, size, step_list):
    """Each point's patch cube (open_cubes), computed, after the steps."""
    cubes = xsits.open_cubes(aoi, **_kw(stac_url), mode="patch", size=size)
    out = {}
    for fid, cube in cubes.items():
        raw = cube.compute()
        ds = raw
        for step in step_list:
            ds = step(ds)
        out[fid] = (raw, ds)
    return out, cubes.missing


def test_sample_equals_the_pixel_of_1x1_patch_cubes(stac_url, tmp_path):
    aoi = _points()
    path = tmp_path / "points.parquet"
    table = xsits.sample(aoi, **_kw(stac_url), steps=STEPS, out=path, progress=False)
    truth, missing = _truth(aoi, stac_url, (1, 1), STEPS)
    assert set(missing) == {"sea"} and set(table.attrs["missing"]) == {"sea"}
    assert list(table.columns[:6]) == ["feature_id", "plot", "crop", "year", "time", "B04"]
    assert {"B08", "SCL", "lon", "lat", "masked", "cloud_cover", "mgrs_tile"} <= set(table)
    # one row per (feature, date), features in AOI order
    assert not table.duplicated(["feature_id", "time"]).any()
    assert len(table) == sum(ds.sizes["time"] for _, ds in truth.values())
    order = [f for f in aoi.feature_id if f in truth]
    assert list(dict.fromkeys(table.feature_id)) == order
    labels = aoi.set_index("feature_id")
    for fid, (raw, ds) in truth.items():
        rows = table[table.feature_id == fid]
        assert rows.time.to_numpy().tolist() == ds.time.values.tolist()
        for band in BANDS:
            np.testing.assert_array_equal(rows[band].to_numpy(), ds[band].values[:, 0, 0])
            assert rows[band].dtype == ds[band].dtype
        assert (rows.crop == labels.crop[fid]).all() and (rows.year == labels.year[fid]).all()
        lon, lat = labels.geometry[fid].x, labels.geometry[fid].y
        assert np.allclose(rows.lon, lon) and np.allclose(rows.lat, lat)
        np.testing.assert_array_equal(rows.masked.to_numpy(),
                                      np.isin(raw.SCL.values[:, 0, 0], DEFAULT_CLASSES))
        np.testing.assert_array_equal(rows.cloud_cover.to_numpy(), ds.cloud_cover.values)
    assert table.masked.any() and not table.masked.all()  # the world has clouds
    assert not table.B04.isna().any()  # gap-filled
    assert table.year.dtype == aoi.year.dtype and table.crop.dtype == aoi.crop.dtype
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, table)
    assert back.attrs["missing"] == {"sea": table.attrs["missing"]["sea"]}
    assert back.attrs["xsits"]["steps"] == ["harmonize()", "scl_mask()",
                                           "gapfill(method='linear')"]
    assert [p.name for p in tmp_path.iterdir()] == ["points.parquet"]  # no temp file left


def test_window_mean_median_drop_cloudy_and_geoparquet(stac_url, tmp_path):
    aoi = _points(n_extra=1, seed=1)
    aoi = aoi[aoi.feature_id.isin(["w0", "w0-0", "w3", "w4-0"])]
    step_list = [steps.harmonize(), steps.scl_mask(), steps.drop_cloudy(0.5)]
    truth, _ = _truth(aoi, stac_url, (3, 3), step_list)
    for how, reduce in (("mean", np.nanmean), ("median", np.nanmedian)):
        path = tmp_path / f"{how}.parquet"
        table = xsits.sample(aoi, **_kw(stac_url), steps=step_list, window=3, reduce=how,
                             geometry=True, out=path, progress=False)
        assert isinstance(table, gpd.GeoDataFrame) and table.crs == aoi.crs
        for fid, (raw, ds) in truth.items():
            rows = table[table.feature_id == fid]
            assert rows.time.to_numpy().tolist() == ds.time.values.tolist()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN (masked) windows
                want = reduce(ds.B08.values.reshape(ds.sizes["time"], -1), axis=1)
            np.testing.assert_allclose(rows.B08.to_numpy(), want, rtol=1e-6)
            np.testing.assert_array_equal(rows.SCL.to_numpy(), ds.SCL.values[:, 1, 1])
            scl = raw.SCL.sel(time=ds.time).values.reshape(ds.sizes["time"], -1)
            np.testing.assert_array_equal(rows.masked.to_numpy(),
                                          np.isin(scl, DEFAULT_CLASSES).all(axis=1))
            assert (rows.geometry == aoi.set_index("feature_id").geometry[fid]).all()
        back = gpd.read_parquet(path)
        assert back.crs == aoi.crs and back.geometry.geom_type.eq("Point").all()
        pd.testing.assert_frame_equal(pd.DataFrame(back.drop(columns="geometry")),
                                      pd.DataFrame(table.drop(columns="geometry")))
    # drop_cloudy on a 3x3 window dropped some dates
    assert any(ds.sizes["time"] < raw.sizes["time"] for raw, ds in truth.values())


def test_composite_indices_and_smooth_steps(stac_url):
    aoi = _points(n_extra=0)
    aoi = aoi[aoi.feature_id.isin(["w0", "w2"])]
    step_list = [steps.harmonize(), steps.scl_mask(), steps.gapfill(),
                 steps.composite("1MS", "median"), steps.smooth("whittaker", lam=2.0)]
    table = xsits.sample(aoi, **_kw(stac_url), steps=step_list, indices="NDVI", progress=False)
    truth, _ = _truth(aoi, stac_url, (1, 1), step_list)
    for fid, (_, ds) in truth.items():
        rows = table[table.feature_id == fid]
        assert [str(t)[:10] for t in rows.time] == [
            "2021-12-01", "2022-01-01", "2022-02-01", "2022-03-01"]
        np.testing.assert_array_equal(rows.B04.to_numpy(), ds.B04.values[:, 0, 0])
        np.testing.assert_array_equal(rows.n_dates.to_numpy(), ds.n_dates.values)
        ndvi = (ds.B08 - ds.B04) / (ds.B08 + ds.B04)
        np.testing.assert_allclose(rows.NDVI.to_numpy(), ndvi.values[:, 0, 0], rtol=1e-5)
    assert "masked" not in table  # composites have no acquisition dates to flag


def test_points_of_one_tile_fetch_each_file_once(stac_url, cog_server):
    lon, lat = WORLD_POINTS[4]
    one = xsits.read_aoi(gpd.GeoDataFrame(geometry=[Point(lon, lat)], crs=4326))
    rng = np.random.default_rng(2)
    many = xsits.read_aoi(gpd.GeoDataFrame(
        geometry=[Point(lon + dx, lat + dy) for dx, dy in rng.uniform(-0.008, 0.008, (40, 2))],
        crs=4326))
    counts = []
    # warm up first: the fetcher learns per host whether its files are small enough to come
    # whole (fetch.SMALL_FILES_SEEN), so both measured runs fetch the same way
    for aoi in (one, one, many):
        reader.clear_cache()
        cog_server.reset_stats()
        table = xsits.sample(aoi, **_kw(stac_url), progress=False)
        assert table.feature_id.nunique() == len(aoi)
        counts.append(cog_server.stats()["requests"])
    assert 0 < counts[2] == counts[1]  # 40 points: not one more request than 1 point


def test_parts_of_the_aoi_give_the_same_table(stac_url, monkeypatch):
    module = importlib.import_module("xsits.sample")  # (xsits.sample is the function)
    aoi = _points(n_extra=1, seed=3)
    whole = xsits.sample(aoi, **_kw(stac_url), steps=STEPS, progress=False)
    monkeypatch.setattr(sampling_read, "POINTS_PER_OPEN", 4)  # 4 open_cubes calls
    calls = []
    real = xsits.cube.load.open_cubes
    monkeypatch.setattr(module, "open_cubes", lambda part, **kw: (
        calls.append(len(part)), real(part, **kw))[1])
    parts = xsits.sample(aoi, **_kw(stac_url), steps=STEPS, progress=False)
    assert calls == [4, 4, 4, 1]
    pd.testing.assert_frame_equal(parts, whole)
    assert parts.attrs == whole.attrs


def test_worker_processes_give_the_same_table(stac_url):
    aoi = _points(n_extra=1, seed=3)
    here = xsits.sample(aoi, **_kw(stac_url), steps=STEPS, progress=False)
    with xsits.set_options(fast_reader=False):  # workers read with GDAL: the same values
        there = xsits.sample(aoi, **_kw(stac_url), steps=STEPS, progress=False,
                             scheduler="processes", workers=2)
    assert here.feature_id.nunique() == len(aoi) - 1  # all but the point at sea
    pd.testing.assert_frame_equal(there, here)
    assert there.attrs == here.attrs


def test_bad_arguments(stac_url, tmp_path):
    aoi = _points(n_extra=0)
    with pytest.raises(SampleError, match="window=2 must be an odd"):
        xsits.sample(aoi, stac=stac_url, window=2)
    with pytest.raises(SampleError, match="unknown reduce='max'"):
        xsits.sample(aoi, stac=stac_url, reduce="max")
    with pytest.raises(SampleError, match="size= is set by sample"):
        xsits.sample(aoi, stac=stac_url, size=(3, 3))
    with pytest.raises(SampleError, match="scheduler='cluster' is unknown"):
        xsits.sample(aoi, stac=stac_url, scheduler="cluster")
    with pytest.raises(SampleError, match="workers=0 must be a positive"):
        xsits.sample(aoi, stac=stac_url, scheduler="processes", workers=0)
    with pytest.raises(SampleError, match="workers=2 must be .* with scheduler='processes'"):
        xsits.sample(aoi, stac=stac_url, workers=2)  # threads: one reader, no workers to set
    with pytest.raises(SampleError, match=r"steps\[0\] = 3 is not callable"):
        xsits.sample(aoi, stac=stac_url, steps=[3])
    with pytest.raises(ExportError, match="must be a .parquet file path"):
        xsits.sample(aoi, stac=stac_url, out=tmp_path / "t.csv")
    fields = xsits.read_aoi(gpd.GeoDataFrame({"id": ["f"]}, geometry=[box(5.9, 45.2, 5.91, 45.21)],
                                             crs=4326))
    with pytest.raises(AOIError, match="feature 'f' is a Polygon, not a point"):
        xsits.sample(fields, stac=stac_url)
    with pytest.raises(AOIError, match="AOI column 'time' clashes"):
        xsits.sample(aoi.rename(columns={"crop": "time"}), stac=stac_url)
    (tmp_path / "t.parquet").write_text("x")
    with pytest.raises(OutputExistsError, match="already exists"):
        xsits.sample(aoi, stac=stac_url, out=tmp_path / "t.parquet")


def test_a_distributed_cluster_gives_the_same_table(stac_url):
    from distributed import Client, LocalCluster

    aoi = _points(n_extra=1, seed=3)
    here = xsits.sample(aoi, **_kw(stac_url), steps=STEPS, progress=False)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        there = xsits.sample(aoi, **_kw(stac_url), steps=STEPS, progress=False,
                             scheduler=client)
    pd.testing.assert_frame_equal(there, here)
    assert there.attrs == here.attrs
