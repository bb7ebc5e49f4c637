"""Smoothing along time: scipy's savgol_filter and a dense Whittaker solve, numpy == dask."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.signal import savgol_filter

import xsits  # noqa: F401  (registers .sits)
from xsits.errors import GridError
from xsits.ops import steps
from xsits.ops.mask import scl_mask
from xsits.ops.smooth import smooth
from xsits.testing.cubes import make_cube

from helpers import assert_numpy_dask_equal


def _series_cube(n_times=12, shape=(3, 4), seed=0, holes=()):
    """A float64 cube of noisy seasonal series; ``holes``: (t, y, x) set to NaN."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_times)
    base = 0.4 + 0.3 * np.sin(2 * np.pi * t / n_times)[:, None, None]
    data = base + rng.normal(0, 0.05, (n_times, *shape))
    for hole in holes:
        data[hole] = np.nan
    return xr.Dataset(
        {"NDVI": (("time", "y", "x"), data), "SCL": (("time", "y", "x"),
                                                     np.full(data.shape, 4, "uint8"))},
        coords={"time": pd.date_range("2024-01-01", periods=n_times, freq="10D"),
                "y": np.arange(shape[0]) * -10.0, "x": np.arange(shape[1]) * 10.0})


def _dense_whittaker(y, lam, order=2):
    """The textbook solve: (W + lam D'D) z = W y, W = 1 at valid values, 0 at NaN."""
    n = len(y)
    w = (~np.isnan(y)).astype(float)
    d = np.diff(np.eye(n), order, axis=0)
    return np.linalg.solve(np.diag(w) + lam * d.T @ d, w * np.nan_to_num(y))


@pytest.mark.parametrize(("window", "polyorder", "mode"),
                         [(5, 3, "interp"), (7, 2, "interp"), (5, 2, "mirror"), (3, 1, "nearest")])
def test_savgol_equals_scipy(window, polyorder, mode):
    ds = _series_cube()
    out = smooth(ds, "savgol", window=window, polyorder=polyorder, mode=mode)
    want = savgol_filter(ds.NDVI.values, window, polyorder, axis=0, mode=mode)
    np.testing.assert_allclose(out.NDVI.values, want, rtol=0, atol=1e-6)
    assert not np.allclose(out.NDVI.values, ds.NDVI.values)  # it did smooth
    xr.testing.assert_identical(out.SCL, ds.SCL)  # class bands untouched


def test_savgol_nan_spreads_to_exactly_the_windows_that_hold_one():
    holes = [(0, 0, 0), (6, 1, 2), (11, 2, 3)]
    ds = _series_cube(holes=holes)
    out = smooth(ds, window=5, polyorder=3).NDVI.values
    for y in range(3):
        for x in range(4):
            series = ds.NDVI.values[:, y, x]
            hole = np.isnan(series)
            n = len(series)
            # the points each output uses (interp: the ends are fitted on the first/last 5)
            uses = [range(0, 5) if t < 2 else range(n - 5, n) if t >= n - 2
                    else range(t - 2, t + 3) for t in range(n)]
            expect_nan = np.array([hole[list(u)].any() for u in uses])
            np.testing.assert_array_equal(np.isnan(out[:, y, x]), expect_nan)
            filled = savgol_filter(np.where(hole, 7.0, series), 5, 3)  # any value in the holes
            np.testing.assert_allclose(out[~expect_nan, y, x], filled[~expect_nan], atol=1e-9)
    assert np.isnan(out).sum() == 3 + 5 + 3  # a hole reaches its window (3 at the ends)


def test_whittaker_equals_a_dense_solve():
    holes = [(0, 0, 0), (1, 0, 0), (5, 1, 1), (6, 1, 1), (7, 1, 1), (11, 2, 3)]
    ds = _series_cube(holes=holes)
    ds["NDVI"][:, 2, 0] = np.nan  # no valid value: stays NaN
    ds["NDVI"][1:, 2, 1] = np.nan  # one valid value: fewer than order=2, stays NaN
    for lam in (0.5, 10.0, 1e4):
        out = smooth(ds, "whittaker", lam=lam).NDVI.values
        for y in range(3):
            for x in range(4):
                series = ds.NDVI.values[:, y, x]
                if (~np.isnan(series)).sum() < 2:
                    assert np.isnan(out[:, y, x]).all()
                    continue
                np.testing.assert_allclose(out[:, y, x], _dense_whittaker(series, lam),
                                           rtol=0, atol=1e-6)
        assert not np.isnan(out[:, :2]).any()  # gaps filled by the smoother
    # order 3, and a straight line is left alone by second differences
    line = ds.assign(NDVI=ds.NDVI * 0 + np.arange(12.0)[:, None, None])
    np.testing.assert_allclose(smooth(line, "whittaker", lam=100.0).NDVI[:, 0, 1],
                               np.arange(12.0), atol=1e-6)
    out3 = smooth(ds, "whittaker", lam=3.0, order=3).NDVI.values[:, 0, 1]
    np.testing.assert_allclose(out3, _dense_whittaker(ds.NDVI.values[:, 0, 1], 3.0, 3),
                               atol=1e-6)


@pytest.mark.parametrize("method", ["savgol", "whittaker"])
def test_numpy_and_dask_agree_on_a_masked_cube(method):
    ds = scl_mask(make_cube(n_times=10, shape=(6, 5)))  # uint16 -> float32 with clouds as NaN
    out = assert_numpy_dask_equal(smooth, ds, method, chunks={"time": 3, "y": 2})
    assert str(out.B04.dtype) == "float32" and str(out.SCL.dtype) == "uint8"
    assert out.attrs["history"].splitlines()[-1].startswith(f"xsits.ops.smooth(method='{method}'")
    assert_numpy_dask_equal(smooth, ds.B08, method, chunks={"time": 2, "y": 3})


def test_integer_bands_become_float_with_nodata_as_nan():
    ds = make_cube(n_times=8, shape=(2, 2))  # last date: nodata 0 at (0, 0)
    out = smooth(ds, "whittaker", lam=1.0)
    assert str(out.B04.dtype) == "float32" and np.isnan(out.B04.attrs["nodata"])
    # the nodata value is a gap for the smoother, not a reflectance of 0
    assert float(out.B04[-1, 0, 0]) > 500
    np.testing.assert_array_equal(out.SCL.values, ds.SCL.values)


def test_accessor_and_step():
    ds = scl_mask(make_cube(n_times=8, shape=(2, 3)))
    xr.testing.assert_identical(ds.sits.smooth("whittaker", lam=2.0),
                                smooth(ds, "whittaker", lam=2.0))
    xr.testing.assert_identical(ds.B04.sits.smooth(window=3, polyorder=1),
                                smooth(ds.B04, window=3, polyorder=1))
    step = pickle.loads(pickle.dumps(steps.smooth("whittaker", lam=2.0)))
    assert steps.describe(step) == "smooth(method='whittaker', lam=2.0)"
    assert steps.describe(steps.smooth(window=7)) == "smooth(method='savgol', window=7)"
    xr.testing.assert_identical(step(ds), smooth(ds, "whittaker", lam=2.0))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"method": "loess"}, "unknown method='loess'"),
    ({"window": 9}, r"window=9 is longer than the series \(8 dates\)"),
    ({"window": 5, "polyorder": 5}, "polyorder=5 must be >= 0 and below window=5"),
    ({"window": 4.5}, "window=4.5 must be an integer"),
    ({"mode": "reflect"}, "unknown mode='reflect'"),
    ({"method": "whittaker", "lam": 0}, "lam=0 must be a positive number"),
    ({"method": "whittaker", "order": 0}, "order=0 must be a positive integer"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(GridError, match=match):
        smooth(make_cube(n_times=8, shape=(2, 2)), **kwargs)
    assert smooth(make_cube(n_times=8, shape=(2, 2)), window=9, mode="mirror").B04.notnull().any()
