import pytest
from shapely.geometry import Point, box

from xsits.errors import GridError
from xsits.grid import GridSpec, feature_crs, feature_geobox


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
    # the centre pixel (index w//2, h//2 from the top-left) contains the feature
    col = (x - gbox.affine.c) // 20
    row = (gbox.affine.f - y) // 20
    assert (col, row) == (size[0] // 2, size[1] // 2)


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
    ({"size": (0, 3)}, "both >= 1"), ({"crs": "EPSG:4326"}, "geographic"),
    ({"crs": "nonsense"}, "not a CRS"), ({"buffer": -5}, ">= 0"),
])
def test_bad_grid(kwargs, match):
    with pytest.raises(GridError, match=match):
        GridSpec(**kwargs)
