import numpy as np
import pytest
import xarray as xr

from xsits.errors import BandError
from xsits.ops.harmonize import harmonize
from xsits.testing.cubes import make_cube

from helpers import assert_numpy_dask_equal


def _cube(**kw):
    return make_cube(n_times=4, shape=(4, 4), baseline=["03.01", "04.00", "05.11", "02.14"], **kw)


def test_offset_removed_only_for_new_baselines():
    ds = _cube()
    out = harmonize(ds)
    for band in ("B03", "B04", "B08"):
        raw = ds[band].values.astype(int)
        got = out[band].values.astype(int)
        np.testing.assert_array_equal(got[[0, 3]], raw[[0, 3]])  # old baselines untouched
        valid = raw[[1, 2]] > 0
        np.testing.assert_array_equal(got[[1, 2]][valid], raw[[1, 2]][valid] - 1000)
        assert out[band].dtype == np.uint16
    np.testing.assert_array_equal(out.SCL.values, ds.SCL.values)  # SCL never touched
    assert out.boa_offset_applied.values.tolist() == [False, True, True, False]
    assert out.attrs["xsits_harmonized"] == 1
    assert "xsits.ops.harmonize" in out.attrs["history"]
    assert out.B04.attrs["nodata"] == 0


def test_nodata_and_low_values_integer():
    ds = make_cube(n_times=1, shape=(1, 4), bands=("B04",))
    ds["B04"][:] = np.array([[[0, 500, 1000, 1001]]], dtype="uint16")
    out = harmonize(ds)
    # 0 = nodata stays 0; valid values <= 1000 become 1 (distinct from nodata)
    assert out.B04.values.ravel().tolist() == [0, 1, 1, 1]


def test_float_bands_keep_nan_and_clip_at_zero():
    ds = make_cube(n_times=1, shape=(1, 4), bands=("B04",))
    ds["B04"] = ds.B04.astype("float32").copy(data=np.array([[[np.nan, 500, 1000, 1500]]], "f4"))
    ds["B04"].attrs = {"nodata": float("nan")}
    out = harmonize(ds)
    np.testing.assert_array_equal(out.B04.values.ravel(), [np.nan, 0, 0, 500])
    assert out.B04.dtype == np.float32


def test_boa_offset_applied_dates_untouched():
    ds = _cube()
    ds = ds.assign_coords(boa_offset_applied=("time", [False, True, False, False]))
    out = harmonize(ds)
    np.testing.assert_array_equal(out.B04.values[1], ds.B04.values[1])
    assert int(out.B04[2, 1, 1]) == int(ds.B04[2, 1, 1]) - 1000


def test_idempotent():
    once = harmonize(_cube())
    twice = harmonize(once)
    xr.testing.assert_identical(once, twice)
    # also idempotent through the per-date flag alone (attrs lost, e.g. after a merge)
    once.attrs.pop("xsits_harmonized")
    again = harmonize(once)
    np.testing.assert_array_equal(again.B04.values, once.B04.values)


def test_missing_baseline_is_typed_error():
    ds = _cube(feature_id="field-7").drop_vars("processing_baseline")
    with pytest.raises(BandError, match="field-7.*processing_baseline"):
        harmonize(ds)


def test_numpy_dask():
    assert_numpy_dask_equal(harmonize, _cube())


def test_aot_wvp_and_other_bands_never_shifted():
    """AOT 150 stays 150 (it used to become 1): only surface reflectance is shifted."""
    ds = make_cube(n_times=1, shape=(1, 3), bands=("B04", "AOT", "WVP", "aot", "nir08", "SCL"),
                   baseline="05.11")
    for band in ("AOT", "WVP", "aot"):
        ds[band][:] = np.array([[[150, 1500, 2500]]], dtype="uint16")
    ds["nir08"][:] = np.array([[[1150, 2500, 0]]], dtype="uint16")
    out = harmonize(ds)
    for band in ("AOT", "WVP", "aot"):
        assert out[band].values.ravel().tolist() == [150, 1500, 2500]
    assert out["nir08"].values.ravel().tolist() == [150, 1500, 0]  # Earth Search name of B8A
    np.testing.assert_array_equal(out.SCL.values, ds.SCL.values)


def test_offset_removed_coordinate_decides():
    """The per-item decision of the load (offset_removed) wins over the baseline."""
    ds = _cube().assign_coords(offset_removed=("time", [True, True, False, True]))
    out = harmonize(ds)
    np.testing.assert_array_equal(out.B04.values[[0, 1, 3]], ds.B04.values[[0, 1, 3]])
    valid = ds.B04.values[2] > 0
    np.testing.assert_array_equal(out.B04.values[2][valid],
                                  ds.B04.values[2][valid].astype(int) - 1000)
    assert out.offset_removed.values.all()
    xr.testing.assert_identical(harmonize(out), out)
