import builtins
import warnings

import numpy as np
import pytest

from xsits.errors import BandError, IndexNameError, MissingDependencyError
from xsits.ops.harmonize import harmonize
from xsits.ops.indices import indices
from xsits.ops.mask import scl_mask
from xsits.testing.cubes import make_cube

from helpers import assert_numpy_dask_equal


def _cube(**kw):
    return harmonize(make_cube(n_times=3, shape=(3, 3), bands=("B02", "B04", "B08", "SCL"), **kw))


def test_ndvi_and_evi_by_hand():
    ds = _cube()
    out = indices(ds, ["NDVI", "EVI"])
    assert list(out.data_vars) == ["NDVI", "EVI"]
    b, r, n = (ds[v].values.astype("float64") / 10000 for v in ("B02", "B04", "B08"))
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = (n - r) / (n + r)
        evi = 2.5 * (n - r) / (n + 6.0 * r - 7.5 * b + 1.0)
    valid = ds.B04.values != 0
    np.testing.assert_allclose(out.NDVI.values[valid], ndvi[valid], rtol=1e-5)
    np.testing.assert_allclose(out.EVI.values[valid], evi[valid], rtol=1e-4)
    assert np.isnan(out.NDVI.values[~valid]).all() and (~valid).any()  # nodata -> NaN
    assert out.NDVI.dtype == np.float32 and out.NDVI.dims == ("time", "y", "x")
    assert "spatial_ref" in out.coords and "platform" in out.coords
    assert out.attrs["feature_id"] == "1" and "xsits.ops.indices" in out.attrs["history"]


def test_single_name_masked_cube_and_custom_mapping():
    ds = scl_mask(_cube()).rename({"B08": "nir_band"})
    out = indices(ds, "NDVI", mapping={"nir_band": "N"})
    assert list(out.data_vars) == ["NDVI"]
    assert np.isnan(out.NDVI[1, 0, 0])  # cloud
    n, r = float(ds.nir_band[0, 1, 1]) / 1e4, float(ds.B04[0, 1, 1]) / 1e4
    assert float(out.NDVI[0, 1, 1]) == pytest.approx((n - r) / (n + r), rel=1e-5)


def test_constants_override():
    ds = _cube()
    savi = indices(ds, "SAVI", constants={"L": 0.0}).SAVI
    ndvi = indices(ds, "NDVI").NDVI
    np.testing.assert_allclose(savi.values, ndvi.values, rtol=1e-5)


def test_errors():
    ds = _cube(feature_id="f9")
    with pytest.raises(IndexNameError, match="NDVX.*NDVI"):
        indices(ds, "NDVX")
    with pytest.raises(BandError) as err:
        indices(ds, "NDWI")  # needs green (B03)
    assert "f9" in str(err.value) and "B03" in str(err.value)


def test_unharmonized_warns():
    with pytest.warns(UserWarning, match="harmonize"):
        indices(make_cube(n_times=2, shape=(2, 2)), "NDVI")
    ds = _cube()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        indices(ds, "NDVI")


def test_missing_spyndex(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "spyndex":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(MissingDependencyError, match=r"pip install 'xsits\[indices\]'"):
        indices(_cube(), "NDVI")


def test_numpy_dask():
    ds = _cube()
    assert_numpy_dask_equal(indices, ds, ["NDVI", "EVI"])
    assert_numpy_dask_equal(indices, scl_mask(ds), "NDVI")
