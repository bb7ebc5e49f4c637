import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import Point, box

from xsits.cube.aoi import read_aoi
from xsits.cube.grid import GridSpec, feature_crs, feature_geobox, feature_geoboxes
from xsits.errors import GridError


@pytest.mark.parametrize("crs", ["utm", "EPSG:3035", "EPSG:3857", 2154])
@pytest.mark.parametrize("size", [(10, 10), (7, 4), (1, 1)])
def test_patch_is_exactly_size_and_contains_the_point(crs, size):
    pt = Point(8.49138, 49.85437)
    gbox = feature_geobox(pt, 4326, GridSpec(crs=crs, resolution=20, mode="patch", size=size))
    assert (gbox.shape.x, gbox.shape.y) == size
    assert gbox.resolution.x == 20 and gbox.resolution.y == -20
    assert gbox.affine.c % 20 == 0 and gbox.affine.f % 20 == 0  # aligned to the 20 m grid
    centre = feature_crs(pt, 4326, GridSpec(crs=crs))
    from odc.geo import geom
    x, y = geom.point(8.49138, 49.85437, 4326).to_crs(centre).coords[0]
    # the patch centre is within half a pixel of the feature (the nearest such patch)
    cx = gbox.affine.c + size[0] * 20 / 2
    cy = gbox.affine.f - size[1] * 20 / 2
    assert abs(x - cx) <= 10 and abs(y - cy) <= 10


def test_patch_centring_by_hand():
    spec = GridSpec(crs=32632, resolution=10, mode="patch", size=(4, 3))
    # x = 500003 is 0.3 px into pixel 50000: 4 px centred nearest -> columns 49998..50001
    gbox = feature_geobox(Point(500003, 5500005), 32632, spec)
    assert (gbox.affine.c, gbox.affine.f) == (499980.0, 5500020.0)
    # x = 500007 is 0.7 px in: the nearest 4-px patch is one column further east
    gbox = feature_geobox(Point(500007, 5500005), 32632, spec)
    assert (gbox.affine.c, gbox.affine.f) == (499990.0, 5500020.0)


def test_utm_zone_per_feature():
    assert str(feature_crs(Point(-6.5, 39.3), 4326, GridSpec())) == "EPSG:32629"
    assert str(feature_crs(Point(23.8, 40.1), 4326, GridSpec())) == "EPSG:32634"
    assert str(feature_crs(Point(151.2, -33.9), 4326, GridSpec())) == "EPSG:32756"


def test_image_mode_covers_buffered_bbox():
    field = box(500013, 5500007, 500101, 5500089)
    gbox = feature_geobox(field, 32632, GridSpec(resolution=10, mode="image", buffer=50))
    x0, y0, x1, y1 = gbox.boundingbox
    assert x0 <= 500013 - 50 and y0 <= 5500007 - 50 and x1 >= 500101 + 50 and y1 >= 5500089 + 50
    assert x1 - x0 < 88 + 100 + 20 and y1 - y0 < 82 + 100 + 20  # at most one pixel per side more


@pytest.mark.parametrize("kwargs,match", [
    ({"mode": "tile"}, "mode='tile'"), ({"resolution": -1}, "positive"),
    ({"size": (0, 3)}, "both whole numbers >= 1"), ({"crs": "EPSG:4326"}, "geographic"),
    ({"crs": "nonsense"}, "not a CRS"), ({"buffer": -5}, ">= 0"),
])
def test_bad_grid(kwargs, match):
    with pytest.raises(GridError, match=match):
        GridSpec(**kwargs)


@pytest.mark.parametrize(("xy", "corner"), [
    ((500003, 5500007), (500000.0, 5500010.0)),  # inside a pixel: that pixel
    ((500007.5, 5500001), (500000.0, 5500010.0)),
    ((500010, 5500010), (500010.0, 5500010.0)),  # on a corner: the pixel east / south
])
def test_point_without_buffer_is_the_one_pixel_containing_it(xy, corner):
    """Finding 7: buffer=0 around a point gave 2 x 2 px (a pixel centred on the point,
    snapped outward to the grid); it is the single pixel that contains the point."""
    gbox = feature_geobox(Point(*xy), 32632, GridSpec(resolution=10, mode="image", buffer=0))
    assert (gbox.shape.x, gbox.shape.y) == (1, 1)
    assert (gbox.affine.c, gbox.affine.f) == corner
    x0, y0, x1, y1 = gbox.boundingbox
    assert x0 <= xy[0] <= x1 and y0 <= xy[1] <= y1


def test_a_thin_line_keeps_its_length():
    """A feature thinner than a pixel is not replaced by a pixel around its centroid."""
    from shapely.geometry import LineString

    line = LineString([(500001, 5500000), (500003, 5501000)])
    gbox = feature_geobox(line, 32632, GridSpec(resolution=10, mode="image"))
    assert (gbox.shape.x, gbox.shape.y) == (1, 100)


@pytest.mark.parametrize("spec", [
    GridSpec(mode="patch", size=(3, 3)), GridSpec(crs="EPSG:3035", resolution=20, mode="patch",
                                                  size=(1, 1)),
    GridSpec(mode="image"), GridSpec(crs="EPSG:3035", mode="patch", size=(4, 2))])
def test_point_geoboxes_equal_one_by_one(spec):
    """feature_geoboxes of many points (vectorised) == feature_geobox of each point."""
    rng = np.random.default_rng(3)
    pts = [Point(x, y) for x, y in zip(rng.uniform(-10, 30, 60), rng.uniform(35, 65, 60),
                                       strict=True)]
    pts += [Point(6.0, 45.0), Point(12.0, 0.0)]  # a zone edge, the equator
    aoi = read_aoi(gpd.GeoDataFrame(geometry=pts, crs=4326))
    got = feature_geoboxes(aoi, spec)
    for fid, g in zip(aoi["feature_id"], aoi.geometry, strict=True):
        want = feature_geobox(g, aoi.crs, spec)
        assert (str(got[fid].crs), got[fid].shape, got[fid].affine) == \
            (str(want.crs), want.shape, want.affine)
