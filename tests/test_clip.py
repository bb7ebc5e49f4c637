"""Polygon clipping against rasterio.features.geometry_mask; the polygon travels with the cube."""

from __future__ import annotations

import pickle

import geopandas as gpd
import numpy as np
import pytest
import xarray as xr
from rasterio.features import geometry_mask
from shapely.geometry import Point, Polygon, box

import xsits  # noqa: F401  (registers .sits)
from xsits._common import as_float
from xsits.cube.clip import clip, with_geometry
from xsits.errors import AOIError, GridError
from xsits.ops import steps
from xsits.out.export import export
from xsits.testing.cubes import make_cube

from helpers import assert_numpy_dask_equal

X0, Y0 = 500000.0, 5500000.0  # make_cube's top-left corner (EPSG:32632, 20 m pixels)


def _float_cube(**kwargs):
    """make_cube with float reflectance (nodata as NaN), SCL kept as uint8."""
    ds = make_cube(n_times=3, shape=(20, 24), **kwargs)
    return ds.assign({b: as_float(ds[b]) for b in ("B03", "B04", "B08")})


def _field_with_hole():
    """A skewed quadrilateral with an off-centre triangular hole, edges across pixels."""
    outer = [(X0 + 37, Y0 - 23), (X0 + 401, Y0 - 61), (X0 + 433, Y0 - 357), (X0 + 55, Y0 - 377)]
    hole = [(X0 + 143, Y0 - 133), (X0 + 293, Y0 - 167), (X0 + 203, Y0 - 283)]
    return Polygon(outer, holes=[hole])


def _outside(ds, poly, all_touched=False):
    """rasterio's answer: True for pixels outside ``poly`` (in the cube's CRS)."""
    gbox = ds.odc.geobox
    return geometry_mask([poly], out_shape=gbox.shape.yx, transform=gbox.affine,
                         all_touched=all_touched)


@pytest.mark.parametrize("all_touched", [False, True])
def test_nan_exactly_outside_a_polygon_with_a_hole(all_touched):
    ds = _float_cube()
    poly = _field_with_hole()
    out = clip(ds, poly, all_touched=all_touched)
    outside = _outside(ds, poly, all_touched)
    assert 50 < outside.sum() < outside.size - 50 and outside[10, 10]  # the hole is outside
    for t in range(2):  # dates 0 and 1 have no nodata pixel
        np.testing.assert_array_equal(out.B04[t].isnull().values, outside)
        inside = ~outside
        np.testing.assert_array_equal(out.B04[t].values[inside], ds.B04[t].values[inside])
    # integers keep their dtype: SCL is its nodata (0) outside, untouched inside
    assert out.SCL.dtype == np.uint8 and out.B04.dtype == np.float32
    np.testing.assert_array_equal(out.SCL.values, np.where(outside, 0, ds.SCL.values))
    assert out.attrs["history"].endswith(f"xsits.cube.clip(all_touched={all_touched})")


def test_all_touched_keeps_more_pixels():
    ds = _float_cube()
    poly = _field_with_hole()
    centre = clip(ds, poly).B04[0].notnull().values
    touched = clip(ds, poly, all_touched=True).B04[0].notnull().values
    assert (touched >= centre).all() and touched.sum() > centre.sum()


def test_lonlat_polygon_and_geodataframe_are_reprojected():
    ds = _float_cube()
    poly = _field_with_hole()
    in_4326 = gpd.GeoSeries([poly], crs=ds.attrs["crs"]).to_crs(4326)
    out = clip(ds, in_4326.iloc[0], crs="EPSG:4326")
    xr.testing.assert_identical(clip(ds, gpd.GeoDataFrame(geometry=in_4326)), out)
    back = in_4326.to_crs(ds.attrs["crs"]).iloc[0]  # rasterio on geopandas' reprojection
    np.testing.assert_array_equal(out.B04[0].isnull().values, _outside(ds, back))


def test_integer_cube_gets_its_nodata_and_dask_stays_lazy():
    ds = make_cube(n_times=3, shape=(10, 12))  # uint16 reflectance, nodata 0
    poly = box(X0 + 30, Y0 - 170, X0 + 190, Y0 - 50)
    out = assert_numpy_dask_equal(clip, ds, poly, chunks={"time": 1, "y": 4, "x": 5})
    outside = _outside(ds, poly)
    assert out.B04.dtype == np.uint16
    np.testing.assert_array_equal(out.B04.values == 0, outside | (ds.B04.values == 0))
    assert_numpy_dask_equal(clip, ds.B08, poly, all_touched=True)


def test_the_polygon_travels_in_the_cube_attrs(tmp_path):
    ds = _float_cube(feature_id="f1")
    poly = _field_with_hole()
    field_4326 = gpd.GeoSeries([poly], crs=ds.attrs["crs"]).to_crs(4326).iloc[0]
    tagged = with_geometry(ds, field_4326, crs="EPSG:4326")
    assert tagged.attrs["geometry"].startswith("POLYGON ((500")  # stored in the cube's CRS
    want = clip(ds, poly)
    np.testing.assert_array_equal(clip(tagged).B04.isnull().values, want.B04.isnull().values)
    # through pickling (dask workers) and a NetCDF file, then as a batch step
    step = pickle.loads(pickle.dumps(steps.clip()))
    with xr.open_dataset(export(tagged, tmp_path)) as back:
        reopened = back.load()
    got = step(reopened)
    np.testing.assert_array_equal(got.B04.isnull().values, want.B04.isnull().values)
    assert tagged.sits.clip().B04.isnull().sum() == want.B04.isnull().sum()
    assert ds.B04.sits.clip(poly).isnull().sum() == want.B04.isnull().sum()


def test_bad_input():
    ds = _float_cube(feature_id="f1")
    with pytest.raises(AOIError, match="feature f1: no geometry given and no attrs"):
        clip(ds)
    with pytest.raises(AOIError, match="clip needs a Polygon or MultiPolygon, got a Point"):
        clip(ds, Point(X0 + 50, Y0 - 50))
    with pytest.raises(GridError, match="the polygon does not overlap the cube; is its CRS"):
        clip(ds, box(9.0, 49.6, 9.1, 49.7))  # lon/lat taken as UTM metres
    with pytest.raises(AOIError, match="has no CRS"):
        clip(ds, gpd.GeoDataFrame(geometry=[box(X0, Y0 - 100, X0 + 100, Y0)]))
    with pytest.raises(AOIError, match="cannot clip to a str"):
        clip(ds, "POLYGON ((0 0, 1 0, 1 1, 0 0))")
    with pytest.raises(GridError, match="no georeferencing"):
        clip(xr.Dataset({"B04": (("y", "x"), np.ones((2, 2)))}), box(0, 0, 1, 1))
