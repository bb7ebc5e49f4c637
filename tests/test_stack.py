"""Stacked patches: (feature, time, y, x), aligned times, AOI labels, Zarr round trip."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from shapely.geometry import Point

import xsits
from xsits.errors import AOIError, BandError, ExportError, GridError
from xsits.ops.composite import composite
from xsits.ops.mask import scl_mask
from xsits.ops.stack import stack
from xsits.testing.cubes import make_cube

from conftest import WORLD_END, WORLD_POINTS, WORLD_START
from helpers import raise_if_dask_computes


def _cubes(chunks=None):
    """Three 4x5 cubes with different dates (and one in another UTM zone)."""
    return {
        "a": scl_mask(make_cube(feature_id="a", n_times=5, shape=(4, 5), start="2024-01-01",
                                chunks=chunks)),
        "b": scl_mask(make_cube(feature_id="b", n_times=4, shape=(4, 5), start="2024-01-21",
                                seed=1, chunks=chunks)),
        "c": scl_mask(make_cube(feature_id="c", n_times=3, shape=(4, 5), start="2024-01-06",
                                freq="20D", crs="EPSG:32633", seed=2, chunks=chunks)),
    }


def _aoi():
    return gpd.GeoDataFrame(
        {"feature_id": ["c", "a", "b"], "crop": ["wheat", "maize", "rapeseed"],
         "area_ha": [1.5, 2.0, 0.25], "year": pd.array([2024, None, 2023], dtype="Int64")},
        geometry=[Point(15, 49.6), Point(9, 49.6), Point(9.01, 49.6)], crs=4326)


def test_union_of_dates_keeps_every_value():
    cubes = _cubes()
    st = stack(cubes, _aoi())
    assert st.B04.dims == ("feature", "time", "y", "x")
    assert st.feature.values.tolist() == ["a", "b", "c"]
    union = sorted(set().union(*(c.time.values for c in cubes.values())))
    assert st.time.values.tolist() == union
    for fid, cube in cubes.items():
        one = st.sel(feature=fid)
        have = np.isin(st.time.values, cube.time.values)
        np.testing.assert_array_equal(one.observed.values, have)
        for band in ("B04", "SCL"):
            np.testing.assert_array_equal(one[band].values[have], cube[band].values)
        assert one.B04.isnull().values[~have].all()  # float: NaN on missing dates
        assert (one.SCL.values[~have] == 0).all() and st.SCL.dtype == np.uint8  # int: nodata
        assert (one.platform.values[~have] == "").all()
        np.testing.assert_array_equal(one.platform.values[have], cube.platform.values)
        np.testing.assert_array_equal(one.easting.values, cube.x.values)
        np.testing.assert_array_equal(one.northing.values, cube.y.values)
        assert str(one.crs.values) == cube.attrs["crs"]
        assert float(one.center_x) == cube.attrs["center_x"]
    # AOI columns on feature, in the stack's order, with their types
    assert st.crop.values.tolist() == ["maize", "rapeseed", "wheat"]
    assert st.area_ha.values.tolist() == [2.0, 0.25, 1.5]
    assert np.isnan(st.year.values[0]) and st.year.values[1:].tolist() == [2023, 2024]
    assert st.B04.chunks[0] == (1, 1, 1) and len(st.B04.chunks[1]) == 1


def test_composite_axis_is_shared_by_every_feature():
    cubes = _cubes()
    st = stack(cubes, freq="10D", how="mean")
    start = min(c.time.values.min() for c in cubes.values())
    axis = pd.date_range(start, periods=st.sizes["time"], freq="10D")
    assert st.time.values.tolist() == axis.values.tolist()
    for fid, cube in cubes.items():
        comp = composite(cube, "10D", how="mean", origin=pd.Timestamp(start))
        one = st.sel(feature=fid, time=comp.time)
        xr.testing.assert_equal(one.B08.drop_vars(one.B08.coords), comp.B08.drop_vars(
            comp.B08.coords))
        np.testing.assert_array_equal(st.sel(feature=fid).n_dates.sum(), cube.sizes["time"])
        np.testing.assert_array_equal(st.sel(feature=fid).observed.values,
                                      st.sel(feature=fid).n_dates.values > 0)
    assert "SCL" not in st  # dropped by the composite


def test_stacking_stays_lazy():
    with raise_if_dask_computes():
        st = stack(_cubes(chunks={"time": 2}), _aoi(), freq="1MS")
    assert all(v.chunks is not None for v in st.data_vars.values())
    eager = stack(_cubes(), _aoi(), freq="1MS")
    xr.testing.assert_identical(st.compute(), eager.compute())


def test_zarr_round_trip_one_feature_per_chunk(tmp_path):
    st = stack(_cubes(), _aoi())
    path = st.sits.export(tmp_path / "train.zarr")
    back = xr.open_zarr(path)
    assert back.B04.dims == ("feature", "time", "y", "x")
    assert back.B04.encoding["chunks"] == (1, st.sizes["time"], 4, 5)
    loaded = back.load()
    for name in [*st.data_vars, *st.coords]:
        np.testing.assert_array_equal(loaded[name].values, st[name].values, err_msg=name)
        assert loaded[name].dims == st[name].dims
    assert loaded.B04.dtype == np.float32 and loaded.SCL.dtype == np.uint8
    with pytest.raises(ExportError, match="no attrs\\['feature_id'\\]"):
        st.sits.export(tmp_path)  # a stack is written to a named file


def test_real_patches_of_two_utm_zones_round_trip(stac_url, tmp_path):
    aoi = xsits.read_aoi(gpd.GeoDataFrame(
        {"id": ["p0", "p2", "p4"], "crop": ["maize", "wheat", "maize"]},
        geometry=[Point(WORLD_POINTS[i]) for i in (0, 2, 4)], crs=4326))
    cubes = xsits.open_cubes(aoi, stac=stac_url, start=WORLD_START, end=WORLD_END,
                             bands=("B04", "B08", "SCL"), mode="patch", size=(6, 6),
                             resolution=20)
    clean = {f: xsits.ops.steps.scl_mask()(c) for f, c in cubes.items()}
    st = stack(clean, aoi, freq="1MS")
    assert dict(st.sizes) == {"feature": 3, "time": 4, "y": 6, "x": 6}
    assert len(set(st.crs.values.tolist())) == 3  # UTM 31, 32 and 30
    back = xr.open_zarr(st.sits.export(tmp_path / "s2.zarr")).load()
    computed = st.compute()
    for name in st.data_vars:
        np.testing.assert_array_equal(back[name].values, computed[name].values)
    assert back.crop.values.tolist() == ["maize", "wheat", "maize"]
    want = composite(clean["p2"].compute(), "1MS").B08.values
    np.testing.assert_array_equal(back.B08.sel(feature="p2").values, want)


def test_bad_input():
    cubes = _cubes()
    with pytest.raises(GridError, match="non-empty dict of cubes"):
        stack({})
    odd = {**cubes, "d": make_cube(feature_id="d", shape=(4, 6))}
    with pytest.raises(GridError, match="feature 'd' is 6x4 pixels, feature 'a' 5x4"):
        stack(odd)
    with pytest.raises(BandError, match="feature 'b' has variables"):
        stack({"a": cubes["a"], "b": cubes["b"].drop_vars("B03")})
    with pytest.raises(AOIError, match="AOI column 'observed' would clash"):
        stack(cubes, _aoi().rename(columns={"crop": "observed"}))
    with pytest.raises(AOIError, match="feature 'c' is not in the AOI"):
        stack(cubes, _aoi().iloc[1:])
    with pytest.raises(AOIError, match="AOI column 'label' not found"):
        stack(cubes, _aoi(), columns=["label"])
