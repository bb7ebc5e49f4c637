import numpy as np
import pytest
import xarray as xr

from xsits.errors import BandError
from xsits.ops.mask import drop_cloudy, masked_fraction, scl_mask
from xsits.testing.cubes import make_cube

from helpers import assert_numpy_dask_equal


def test_scl_mask_values_and_dtypes():
    ds = make_cube(n_times=4, shape=(4, 4))
    out = scl_mask(ds)
    assert out.B04.dtype == np.float32 and out.SCL.dtype == np.uint8
    np.testing.assert_array_equal(out.SCL.values, ds.SCL.values)
    assert np.isnan(out.B04[1, 0, 0])  # cloud (9)
    assert np.isnan(out.B04[2, 0, -1])  # shadow (3)
    assert np.isnan(out.B04[3, 0, 0])  # nodata
    assert float(out.B04[1, 3, 3]) == int(ds.B04[1, 3, 3])  # vegetation keeps its DN
    # exactly the masked SCL classes are NaN, nothing else
    expected_nan = np.isin(ds.SCL.values, [0, 1, 3, 8, 9, 10])
    np.testing.assert_array_equal(np.isnan(out.B08.values), expected_nan)
    assert np.isnan(out.B04.attrs["nodata"])
    assert "xsits.scl_mask" in out.attrs["history"]
    assert out.attrs["feature_id"] == ds.attrs["feature_id"]
    assert "spatial_ref" in out.coords


def test_reflectance_nodata_masked_even_if_scl_clear():
    ds = make_cube(n_times=2, shape=(2, 2))
    ds["B03"][0, 1, 1] = 0
    out = scl_mask(ds)
    assert np.isnan(out.B03[0, 1, 1]) and not np.isnan(out.B04[0, 1, 1])


def test_custom_classes_and_drop_band():
    ds = make_cube(n_times=3, shape=(4, 4))
    out = scl_mask(ds, classes=(3,), keep_band=False)
    assert "SCL" not in out
    assert np.isnan(out.B04[2, 0, -1])
    assert not np.isnan(out.B04[1, 0, 0])  # cloud not masked with classes=(3,)


def test_custom_mask():
    ds = make_cube(n_times=2, shape=(2, 2)).drop_vars("SCL")
    mask = xr.zeros_like(ds.B04, dtype=bool)
    mask[0, 0, 1] = True
    out = scl_mask(ds, mask=mask)
    assert np.isnan(out.B04[0, 0, 1]) and not np.isnan(out.B04[0, 1, 1])
    assert masked_fraction(ds, mask=mask).values.tolist() == [0.25, 0.0]


def test_missing_scl_is_typed_error():
    ds = make_cube(n_times=2, shape=(2, 2), feature_id="parcel-42").drop_vars("SCL")
    with pytest.raises(BandError) as err:
        scl_mask(ds)
    msg = str(err.value)
    assert "parcel-42" in msg and "SCL" in msg and "mask=" in msg and "\n" not in msg
    with pytest.raises(BandError):
        masked_fraction(ds)


def test_masked_fraction_and_drop_cloudy():
    ds = make_cube(n_times=4, shape=(4, 4))
    frac = masked_fraction(ds)
    assert frac.dims == ("time",)
    np.testing.assert_allclose(frac.values, [0, 0.25, 1 / 16, 1 / 16])
    out = drop_cloudy(ds, max_fraction=0.2)
    assert out.time.values.tolist() == ds.time.values[[0, 2, 3]].tolist()
    assert drop_cloudy(ds, max_fraction=0.25).sizes["time"] == 4
    assert drop_cloudy(ds, max_fraction=0.0).sizes["time"] == 1
    assert "drop_cloudy" in out.attrs["history"]


def test_numpy_dask():
    ds = make_cube(n_times=4, shape=(4, 4))
    assert_numpy_dask_equal(scl_mask, ds)
    assert_numpy_dask_equal(scl_mask, ds, keep_band=False)
    assert_numpy_dask_equal(masked_fraction, ds)
    # drop_cloudy: the one allowed compute (the fraction vector)
    out = assert_numpy_dask_equal(drop_cloudy, scl_mask(ds), max_fraction=0.2, max_computes=1)
    assert out.sizes["time"] == 3
