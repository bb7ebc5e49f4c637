import json

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import box

from xsits.errors import AOIError
from xsits.ops.labels import labels
from xsits.testing.cubes import make_cube

from helpers import assert_numpy_dask_equal


def _cube():
    # 3 rows x 4 columns of 20 m, top-left (500000, 5500000)
    return make_cube(n_times=2, shape=(3, 4))


def _fields(crs="EPSG:32632"):
    gdf = gpd.GeoDataFrame(
        {"crop": ["wheat", "maize", None], "code": [7, 3, 5], "yield_t": [2.5, 8.0, 1.0]},
        geometry=[
            box(500000, 5499940, 500040, 5500000),  # columns 0-1, all rows
            box(500040, 5499980, 500080, 5500000),  # columns 2-3, row 0
            box(500040, 5499940, 500060, 5499960),  # column 2, row 2 (crop missing)
        ],
        crs="EPSG:32632",
    )
    return gdf.to_crs(crs)


def test_string_categories():
    ds = _cube()
    lab = labels(ds, _fields(), "crop")
    assert lab.dims == ("y", "x") and lab.dtype == np.int32 and lab.name == "crop"
    assert lab.values.tolist() == [[2, 2, 1, 1], [2, 2, 0, 0], [2, 2, 0, 0]]
    assert json.loads(lab.attrs["classes"]) == {"1": "maize", "2": "wheat"}
    assert lab.attrs["flag_meanings"] == "maize wheat"
    np.testing.assert_array_equal(lab.x.values, ds.x.values)
    np.testing.assert_array_equal(lab.y.values, ds.y.values)
    assert lab.odc.geobox == ds.odc.geobox
    assert lab.attrs["feature_id"] == "1" and "xsits.ops.labels" in lab.attrs["history"]


def test_integer_and_float_columns():
    ds = _cube()
    code = labels(ds, _fields(), "code")
    assert code.values.tolist() == [[7, 7, 3, 3], [7, 7, 0, 0], [7, 7, 5, 0]]
    yld = labels(ds, _fields(), "yield_t")
    assert yld.dtype == np.float32
    np.testing.assert_array_equal(yld.values[2], [2.5, 2.5, 1.0, np.nan])
    assert labels(ds, _fields(), "code", fill=-1).values[1, 3] == -1


def test_reprojected_vector():
    ds = _cube()
    lab = labels(ds, _fields("EPSG:4326"), "code")
    assert lab.values.tolist() == [[7, 7, 3, 3], [7, 7, 0, 0], [7, 7, 5, 0]]


def test_all_touched():
    ds = _cube()
    small = gpd.GeoDataFrame({"v": [1]}, geometry=[box(500002, 5499982, 500008, 5499988)],
                             crs="EPSG:32632")
    assert labels(ds, small, "v").values.sum() == 0  # does not cover a pixel centre
    assert labels(ds, small, "v", all_touched=True).values.sum() == 1


def test_errors():
    ds = _cube()
    with pytest.raises(AOIError, match="nope"):
        labels(ds, _fields(), "nope")
    with pytest.raises(AOIError, match="set_crs"):
        labels(ds, _fields().set_crs(None, allow_override=True), "code")


def test_numpy_dask():
    ds = _cube()
    assert_numpy_dask_equal(labels, ds, _fields(), "crop", chunks={"time": 1, "y": 2, "x": 2})
    assert_numpy_dask_equal(labels, ds.B04, _fields(), "yield_t")
