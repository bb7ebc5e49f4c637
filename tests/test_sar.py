"""xsits.ops.sar.to_db: backscatter in decibels, by hand; lazy on dask, equal on numpy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xsits  # noqa: F401 - registers .sits
from xsits.errors import BandError
from xsits.ops import steps
from xsits.ops.sar import to_db

from helpers import assert_numpy_dask_equal


def _cube(seed: int = 0) -> xr.Dataset:
    """A Sentinel-1 RTC-like cube: float32 gamma naught, nodata -32768, a zero, a negative."""
    rng = np.random.default_rng(seed)
    shape = (3, 4, 5)
    vv = rng.uniform(0.001, 0.8, shape).astype("float32")
    vh = rng.uniform(0.0005, 0.2, shape).astype("float32")
    vv[0, 0, 0] = -32768.0  # nodata
    vv[1, 2, 3] = 0.0  # no decibel value
    vh[2, 1, 1] = -0.01  # RTC can undershoot: no decibel value
    vh[0, 3, 4] = np.nan
    coords = {"time": pd.date_range("2024-04-19T05:00", periods=3, freq="6D"),
              "y": np.arange(4.0), "x": np.arange(5.0)}
    attrs = {"nodata": -32768}
    return xr.Dataset({"vv": (("time", "y", "x"), vv, attrs),
                       "vh": (("time", "y", "x"), vh, attrs)}, coords=coords,
                      attrs={"feature_id": "p1"})


def test_to_db_equals_10_log10_by_hand():
    ds = _cube()
    out = to_db(ds)
    for band in ("vv", "vh"):
        raw = ds[band].values.astype("float64")
        want = np.full(raw.shape, np.nan)
        ok = (raw > 0) & (raw != -32768)
        want[ok] = 10 * np.log10(raw[ok])
        got = out[band].values
        assert got.dtype == np.float32
        np.testing.assert_array_equal(np.isnan(got), ~ok)
        np.testing.assert_allclose(got[ok], want[ok], rtol=0, atol=2e-5)  # float32 rounding
        assert out[band].attrs["units"] == "dB" and np.isnan(out[band].attrs["nodata"])
    assert np.isnan(out.vv.values[0, 0, 0]) and np.isnan(out.vv.values[1, 2, 3])
    assert np.isnan(out.vh.values[2, 1, 1]) and np.isnan(out.vh.values[0, 3, 4])
    # 0.1 -> -10 dB, 1 -> 0 dB, 0.01 -> -20 dB: the scale itself
    small = xr.Dataset({"VH": ("t", np.array([0.1, 1.0, 100.0], "float64"))})
    assert to_db(small).VH.values.tolist() == [-10.0, 0.0, 20.0]
    assert "to_db(bands=['vv', 'vh'])" in out.attrs["history"]


def test_to_db_is_lazy_and_numpy_equals_dask():
    assert_numpy_dask_equal(to_db, _cube(), chunks={"time": 1, "y": 2})


def test_to_db_twice_changes_nothing_and_leaves_other_bands():
    ds = _cube().assign(B04=(("time", "y", "x"), np.ones((3, 4, 5), "uint16")))
    once = to_db(ds)
    assert once.B04.dtype == np.uint16 and once.B04.equals(ds.B04)
    twice = to_db(once)
    assert twice.vv.equals(once.vv) and twice.vh.equals(once.vh)
    only = to_db(ds, bands=["vh"])
    assert only.vv.equals(ds.vv) and only.vh.attrs["units"] == "dB"
    ints = to_db(xr.Dataset({"hh": ("t", np.array([10, 0], "int16"))}))
    assert ints.hh.dtype == np.float32 and ints.hh.values[0] == np.float32(10.0)


def test_to_db_step_and_accessor_give_the_function():
    ds = _cube()
    want = to_db(ds)
    assert ds.sits.to_db().equals(want)
    step = steps.to_db()
    assert step.pixelwise and step.describe() == "to_db()"
    assert step(ds).equals(want)


def test_to_db_without_a_backscatter_band_names_the_feature_and_the_fix():
    ds = _cube().rename({"vv": "B04", "vh": "B08"})
    with pytest.raises(BandError, match=r"feature p1: no backscatter band .*bands=\['vv'"):
        to_db(ds)
    with pytest.raises(BandError, match="band 'vv' is missing"):
        to_db(ds, bands=["vv"])


def test_radar_indices_take_the_backscatter_as_it_is():
    """A Sentinel-1 cube has no reflectance band: indices use its linear backscatter."""
    from xsits.ops.indices import indices

    ds = _cube()
    ds = ds.where(ds != -32768.0)  # as loaded: missing pixels are NaN
    for v in ("vv", "vh"):
        ds[v].attrs = {"nodata": np.nan}
    ds.attrs["collection"] = "sentinel-1-rtc"
    out = indices(ds, "DPDD", mapping={"vv": "VV", "vh": "VH"})
    want = (ds.vv.values + ds.vh.values) / np.float32(2.0 ** 0.5)
    np.testing.assert_allclose(out.DPDD.values, want, rtol=1e-6, equal_nan=True)
    assert np.isnan(out.DPDD.values[0, 0, 0])  # the nodata pixel
