import geopandas as gpd
import numpy as np
import pytest
import xarray as xr
from shapely.geometry import box

import xsits  # noqa: F401  (registers .sits)
from xsits.ops import composite, gapfill, harmonize, indices, labels, mask, patch
from xsits.testing.cubes import make_cube

from helpers import assert_numpy_dask_equal, is_dask, raise_if_dask_computes

FUNCS = {
    "harmonize": harmonize.harmonize,
    "scl_mask": mask.scl_mask,
    "masked_fraction": mask.masked_fraction,
    "drop_cloudy": mask.drop_cloudy,
    "gapfill": gapfill.gapfill,
    "to_patch": patch.to_patch,
    "composite": composite.composite,
    "indices": indices.indices,
    "labels": labels.labels,
}
DATAARRAY_METHODS = ("gapfill", "to_patch", "composite", "labels")


@pytest.mark.parametrize("name", sorted(FUNCS))
def test_facade_has_same_docstring(name):
    ds = make_cube(n_times=2, shape=(2, 2))
    assert getattr(ds.sits, name).__doc__ == FUNCS[name].__doc__
    if name in DATAARRAY_METHODS:
        assert getattr(ds.B04.sits, name).__doc__ == FUNCS[name].__doc__


def _fields(ds):
    x0, y0 = float(ds.x[0]) - 10, float(ds.y[0]) + 10
    return gpd.GeoDataFrame(
        {"crop": ["maize", "wheat"]},
        geometry=[box(x0, y0 - 80, x0 + 80, y0), box(x0 + 80, y0 - 160, x0 + 160, y0 - 80)],
        crs=ds.attrs["crs"],
    )


def _chain(ds):
    clean = (ds.sits.harmonize()
             .sits.scl_mask()
             .sits.drop_cloudy(max_fraction=0.5)
             .sits.gapfill(method="linear")
             .sits.to_patch(6, 6))
    return clean


def test_chain_from_the_issue():
    ds = make_cube(n_times=6, shape=(8, 8), freq="10D")
    clean = _chain(ds)
    # equals the free functions applied one by one
    expected = patch.to_patch(
        gapfill.gapfill(mask.drop_cloudy(mask.scl_mask(harmonize.harmonize(ds)), 0.5)), 6, 6
    )
    xr.testing.assert_identical(clean, expected)
    assert dict(clean.sizes) == {"time": 6, "y": 6, "x": 6}
    assert clean.attrs["mode"] == "patch"
    assert clean.attrs["history"].splitlines()[0].startswith("xsits.ops.harmonize")
    assert len(clean.attrs["history"].splitlines()) == 5
    # date 1 cloudy at (0, 0) of the cube = patch (-1, -1) after 6x6 centring on (4, 4)
    assert not clean.B04.isnull().any()
    monthly = clean.sits.composite("1MS", how="median")
    assert monthly.sizes["time"] == 2 and "SCL" not in monthly
    ndvi = clean.sits.indices("NDVI")
    assert float(ndvi.NDVI.min()) > -1 and float(ndvi.NDVI.max()) < 1
    lab = clean.sits.labels(_fields(clean), column="crop")
    assert lab.shape == (6, 6) and lab.odc.geobox == clean.odc.geobox
    assert (lab.values[0, 0], lab.values[5, 5], lab.values[5, 0]) == (1, 2, 0)


def test_chain_lazy_on_dask():
    ds = make_cube(n_times=6, shape=(8, 8), freq="10D", chunks={"time": 1, "y": 4})
    with raise_if_dask_computes(max_computes=1):  # drop_cloudy's fraction vector only
        clean = _chain(ds)
        monthly = clean.sits.composite("1MS")
        ndvi = clean.sits.indices("NDVI")
        lab = clean.sits.labels(_fields(clean), column="crop")
    assert all(is_dask(o) for o in (clean, monthly, ndvi, lab))
    eager = _chain(make_cube(n_times=6, shape=(8, 8), freq="10D"))
    xr.testing.assert_identical(clean.compute(), eager)


def test_dataarray_accessor():
    ds = mask.scl_mask(make_cube(n_times=4, shape=(4, 4)))
    da = ds.B04
    np.testing.assert_array_equal(da.sits.gapfill().values, gapfill.gapfill(da).values)
    assert da.sits.to_patch(2).shape == (4, 2, 2)
    assert da.sits.composite("1MS", how="count").dtype == np.int64
    assert not hasattr(da.sits, "scl_mask")
    assert_numpy_dask_equal(lambda o: o.sits.gapfill(), da)
