import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from xsits.errors import GridError
from xsits.ops.composite import composite
from xsits.ops.mask import scl_mask
from xsits.testing.cubes import make_cube

from helpers import assert_numpy_dask_equal


def _series():
    # Jan: 1, 5, 3 (median 3); Feb: nothing; Mar: 2, NaN, 8 (median 5)
    time = pd.to_datetime(
        ["2024-01-02", "2024-01-12", "2024-01-22", "2024-03-01", "2024-03-11", "2024-03-21"]
    )
    values = np.array([1, 5, 3, 2, np.nan, 8], dtype="float32")
    return xr.DataArray(
        values[:, None, None] * np.ones((1, 2, 2), "float32"),
        dims=("time", "y", "x"),
        coords={"time": time, "y": [1.0, 0.0], "x": [0.0, 1.0],
                "cloud_cover": ("time", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])},
        name="B04",
        attrs={"feature_id": "s"},
    )


@pytest.mark.parametrize(
    ("how", "expected"),
    [("median", [3, np.nan, 5]), ("mean", [3, np.nan, 5]), ("max", [5, np.nan, 8]),
     ("min", [1, np.nan, 2]), ("count", [3, 0, 2])],
)
def test_known_values(how, expected):
    out = composite(_series(), "1MS", how=how)
    assert pd.DatetimeIndex(out.time.values).strftime("%Y-%m-%d").tolist() == [
        "2024-01-01", "2024-02-01", "2024-03-01"]
    np.testing.assert_array_equal(out.values[:, 1, 0], expected)
    assert out.n_dates.values.tolist() == [3, 0, 3]
    np.testing.assert_array_equal(out.cloud_cover.values, [2.0, np.nan, 5.0])
    assert out.attrs["feature_id"] == "s" and "composite" in out.attrs["history"]


def test_cube_coords_and_class_bands():
    ds = scl_mask(make_cube(n_times=6, shape=(2, 2), freq="20D"))
    out = composite(ds, "1MS")
    assert "SCL" not in out
    for name in ("platform", "processing_baseline", "mgrs_tile", "boa_offset_applied"):
        assert name not in out.coords
    assert "spatial_ref" in out.coords and out.odc.geobox == ds.odc.geobox
    assert out.B04.dims == ("time", "y", "x") and out.B04.dtype == np.float32
    # January: dates 0 and 1, (0, 0) cloudy on date 1 -> median = date 0 value
    assert float(out.B04[0, 0, 0]) == float(ds.B04[0, 0, 0])
    assert float(out.B04[0, 1, 1]) == pytest.approx(float(ds.B04[:2, 1, 1].mean()))
    mode = composite(ds, "1MS", class_bands="mode").SCL
    assert mode.dtype == np.uint8
    # Jan (0,0): 4 then 9 -> tie -> lowest (4); Apr (0,0): only nodata -> 0
    assert int(mode[0, 0, 0]) == 4 and int(mode[3, 0, 0]) == 0


def test_integer_bands_nodata_ignored():
    ds = make_cube(n_times=6, shape=(2, 2), freq="20D")  # last date (0, 0) nodata = 0
    out = composite(ds, "1MS", how="min")
    assert float(out.B04[3, 0, 0]) != 0 and np.isnan(float(out.B04[3, 0, 0]))


def test_errors():
    ds = make_cube(n_times=3, shape=(2, 2))
    with pytest.raises(GridError, match="how='mode'"):
        composite(ds, how="mode")
    with pytest.raises(GridError, match="freq"):
        composite(ds, freq="fortnightly")
    with pytest.raises(GridError):
        composite(ds, class_bands="keep")


def test_numpy_dask():
    ds = scl_mask(make_cube(n_times=6, shape=(4, 4), freq="20D"))
    for how in ("median", "mean", "count"):
        assert_numpy_dask_equal(composite, ds, "1MS", how=how)
    assert_numpy_dask_equal(composite, ds, "1MS", class_bands="mode")
    assert_numpy_dask_equal(composite, _series(), "1MS", how="max")


def test_origin_aligns_fixed_periods_of_cubes_with_different_first_dates():
    late = make_cube(n_times=3, shape=(2, 2), start="2024-01-06", freq="20D")
    assert str(composite(late, "10D").time.values[0])[:10] == "2024-01-06"  # start_day
    aligned = composite(late, "10D", origin=pd.Timestamp("2024-01-01"))
    assert [str(t)[:10] for t in aligned.time.values] == [
        "2024-01-01", "2024-01-11", "2024-01-21", "2024-01-31", "2024-02-10"]
    assert aligned.n_dates.values.tolist() == [1, 0, 1, 0, 1]
    assert aligned.attrs["history"].endswith("origin='2024-01-01 00:00:00')")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # calendar periods: origin not passed on
        monthly = composite(late, "1MS", origin=pd.Timestamp("2024-01-01"))
    assert str(monthly.time.values[0])[:10] == "2024-01-01"
