import numpy as np
import pytest

from xsits.errors import GridError
from xsits.ops.mask import scl_mask
from xsits.ops.patch import to_patch
from xsits.testing.cubes import make_cube

from helpers import assert_numpy_dask_equal


def _cube(**kw):
    # 6 rows x 7 columns of 20 m; centre (500070, 5499940) = centre of pixel (row 3, col 3)
    ds = make_cube(n_times=2, shape=(6, 7), **kw)
    ds.attrs.update(center_x=500070.0, center_y=5499930.0)
    return ds


def test_odd_patch_inside():
    ds = _cube()
    p = to_patch(ds, 3, 3)
    assert dict(p.sizes) == {"time": 2, "y": 3, "x": 3}
    np.testing.assert_array_equal(p.x.values, [500050.0, 500070.0, 500090.0])
    np.testing.assert_array_equal(p.y.values, [5499950.0, 5499930.0, 5499910.0])
    np.testing.assert_array_equal(p.B04.values, ds.B04.values[:, 2:5, 2:5])
    assert p.attrs["mode"] == "patch" and "to_patch" in p.attrs["history"]
    assert p.odc.geobox.crs == ds.odc.geobox.crs
    assert p.x.attrs == ds.x.attrs


def test_even_patch_extra_pixel_east_south():
    ds = _cube()
    p = to_patch(ds, 4)
    # feature pixel (3, 3) at patch index (1, 1): one pixel west/north, two east/south
    np.testing.assert_array_equal(p.B04.values, ds.B04.values[:, 2:6, 2:6])
    assert float(p.x[1]) == 500070.0 and float(p.y[1]) == 5499930.0


def test_padding_near_edge_and_bigger_than_cube():
    ds = _cube()
    ds.attrs.update(center_x=500010.0, center_y=5499990.0)  # top-left pixel
    p = to_patch(ds, 5, 5)
    assert dict(p.sizes) == {"time": 2, "y": 5, "x": 5}
    np.testing.assert_array_equal(p.x.values, 500010.0 + 20 * np.arange(-2, 3))
    np.testing.assert_array_equal(p.y.values, 5499990.0 - 20 * np.arange(-2, 3))
    assert p.B04.dtype == np.uint16 and p.SCL.dtype == np.uint8
    assert (p.B04.values[:, :2, :] == 0).all() and (p.B04.values[:, :, :2] == 0).all()
    np.testing.assert_array_equal(p.B04.values[:, 2:, 2:], ds.B04.values[:, :3, :3])
    masked = to_patch(scl_mask(ds), 5, 5)
    assert masked.B04.dtype == np.float32
    assert np.isnan(masked.B04.values[:, :2, :]).all()
    big = to_patch(ds, 11, 9)
    assert dict(big.sizes) == {"time": 2, "y": 9, "x": 11}
    np.testing.assert_allclose(np.diff(big.x.values), 20.0)
    np.testing.assert_allclose(np.diff(big.y.values), -20.0)


def test_dataarray_and_missing_center():
    ds = _cube()
    del ds.attrs["center_x"], ds.attrs["center_y"]
    p = to_patch(ds.B08, 2, 2)  # extent centre (500070, 5499940): on a row edge
    assert p.shape == (2, 2, 2)
    np.testing.assert_array_equal(p.values, ds.B08.values[:, 2:4, 3:5])


def test_bad_sizes():
    ds = _cube()
    for bad in (0, -3, 2.5):
        with pytest.raises(GridError):
            to_patch(ds, bad)
    ds.attrs.update(center_x=0.0, center_y=0.0)
    with pytest.raises(GridError, match="outside"):
        to_patch(ds, 3)


def test_numpy_dask():
    ds = _cube()
    assert_numpy_dask_equal(to_patch, ds, 4, 5)
    assert_numpy_dask_equal(to_patch, ds, 10, 9)  # integer padding on dask
    assert_numpy_dask_equal(to_patch, scl_mask(ds), 10, 10)
