import numpy as np
import pandas as pd
import pytest
import xarray as xr

from xsits.ops.gapfill import gapfill
from xsits.ops.mask import scl_mask
from xsits.testing.cubes import make_cube

from helpers import assert_numpy_dask_equal


def _series(values, days):
    time = pd.Timestamp("2024-01-01") + pd.to_timedelta(days, unit="D")
    return xr.DataArray(np.array(values, dtype="float32"), dims="time", coords={"time": time})


def test_time_weighted_linear():
    out = gapfill(_series([1, np.nan, 4], [0, 10, 30]))
    assert out.values.tolist() == [1.0, 2.0, 4.0]
    assert out.dtype == np.float32


def test_max_gap():
    da = _series([1, np.nan, 4, np.nan, np.nan, 10], [0, 10, 30, 40, 50, 100])
    out = gapfill(da, max_gap="30D")
    # the 30-day gap (day 0 -> 30) is filled, the 70-day gap (day 30 -> 100) is not
    np.testing.assert_allclose(out.values, [1, 2, 4, np.nan, np.nan, 10])
    np.testing.assert_allclose(gapfill(da).values, [1, 2, 4, 4 + 6 / 7, 4 + 12 / 7, 10], rtol=1e-6)


def test_edges():
    da = _series([np.nan, 2, np.nan, 6, np.nan], [0, 10, 20, 30, 40])
    assert gapfill(da).values.tolist() == [2.0, 2.0, 4.0, 6.0, 6.0]
    np.testing.assert_array_equal(gapfill(da, edges=False).values, [np.nan, 2, 4, 6, np.nan])


def test_edges_do_not_fill_interior_gaps_left_by_max_gap():
    da = _series([np.nan, 1, np.nan, 9, np.nan], [0, 10, 100, 200, 210])
    out = gapfill(da, max_gap="50D")
    np.testing.assert_array_equal(out.values, [1, 1, np.nan, 9, 9])


def test_all_nan_pixel_stays_nan():
    da = _series([np.nan, np.nan, np.nan], [0, 10, 20])
    assert np.isnan(gapfill(da).values).all()


def test_cube_scl_left_alone_and_values():
    ds = scl_mask(make_cube(n_times=4, shape=(4, 4)))
    out = gapfill(ds)
    np.testing.assert_array_equal(out.SCL.values, ds.SCL.values)
    assert out.SCL.dtype == np.uint8
    # date 1 (day 10) cloudy at (0, 0): mean of day 0 and day 20
    expected = (float(ds.B04[0, 0, 0]) + float(ds.B04[2, 0, 0])) / 2
    assert float(out.B04[1, 0, 0]) == pytest.approx(expected)
    # last date nodata at (0, 0): edge filled with the last valid value
    assert float(out.B04[3, 0, 0]) == float(ds.B04[2, 0, 0])
    assert not out.B04.isnull().any()
    assert out.attrs["history"].endswith("edges=True)")


def test_integer_dataarray_unchanged():
    da = make_cube(n_times=3, shape=(2, 2)).SCL
    np.testing.assert_array_equal(gapfill(da).values, da.values)


def test_numpy_dask():
    ds = scl_mask(make_cube(n_times=5, shape=(4, 4)))
    assert_numpy_dask_equal(gapfill, ds)
    assert_numpy_dask_equal(gapfill, ds, max_gap="15D", edges=False)
    assert_numpy_dask_equal(gapfill, ds.B04, method="nearest")


@pytest.mark.parametrize("max_gap", [None, "25D"])
def test_linear_fast_path_equals_interpolate_na(max_gap):
    rng = np.random.default_rng(0)
    time = pd.to_datetime("2024-01-01") + pd.to_timedelta(
        np.sort(rng.choice(365, 30, replace=False)), "D")
    values = rng.uniform(0, 1, (30, 7, 9))
    values[rng.uniform(size=values.shape) < 0.4] = np.nan
    values[:, 0, 0] = np.nan  # a pixel with no valid date at all
    da = xr.DataArray(values, dims=("time", "y", "x"), coords={"time": time})
    want = da.interpolate_na("time", method="linear", max_gap=max_gap, use_coordinate=True)
    got = gapfill(da, max_gap=max_gap, edges=False)
    np.testing.assert_allclose(got.values, want.values, rtol=1e-12, atol=1e-12)
    assert np.isnan(got.values[:, 0, 0]).all()


def test_bands_masked_alike_share_positions_and_equal_one_band_fills(monkeypatch):
    """A cube's bands filled together equal each band filled alone, shared positions or not."""
    import xsits.ops.gapfill as G

    rng = np.random.default_rng(3)
    time = pd.to_datetime("2024-01-01") + pd.to_timedelta(
        np.sort(rng.choice(365, 20, replace=False)), "D")
    mask = rng.uniform(size=(20, 6, 5)) < 0.4
    other = rng.uniform(size=mask.shape) < 0.2  # a band with its own NaNs
    bands = {b: np.where(m, np.nan, rng.uniform(0, 1, mask.shape)).astype("float32")
             for b, m in (("B03", mask), ("B04", mask), ("B08", mask | other))}
    ds = xr.Dataset({b: (("time", "y", "x"), v) for b, v in bands.items()},
                    coords={"time": time})
    assert not np.array_equal(np.isnan(bands["B08"]), np.isnan(bands["B03"]))
    computed = []
    real = G._linear_where
    monkeypatch.setattr(G, "_linear_where", lambda *a: computed.append(1) or real(*a))
    got = gapfill(ds, max_gap="40D")
    assert len(computed) == 2  # B04 reuses B03's positions; B08 has its own
    for b in bands:
        alone = gapfill(ds[b], max_gap="40D")
        np.testing.assert_array_equal(got[b].values, alone.values)
        assert got[b].dtype == np.float32
