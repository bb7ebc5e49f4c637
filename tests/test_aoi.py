import json

import geopandas as gpd
import pytest
from shapely.geometry import Point, Polygon

import xsits
from xsits.errors import AOIError, FeatureIdError, XsitsError

POINTS = [(8.49138, 49.85437), (8.41277, 53.14555), (-6.51812, 39.32035)]


def _points_gdf(ids=(1, 2, 7)):
    return gpd.GeoDataFrame(
        {"id": [1, 3, 14], "pt_id": list(ids), "name": ["a", "b", "c"]},
        geometry=[Point(xy) for xy in POINTS],
        crs=4326,
    )


@pytest.mark.parametrize("driver,suffix", [("GeoJSON", ".geojson"), ("GPKG", ".gpkg"),
                                           ("ESRI Shapefile", ".shp")])
def test_vector_formats_keep_ids_and_attributes(tmp_path, driver, suffix):
    path = tmp_path / f"pts{suffix}"
    _points_gdf().to_file(path, driver=driver)
    aoi = xsits.read_aoi(path, id_column="pt_id")
    assert aoi["feature_id"].tolist() == ["1", "2", "7"]
    assert aoi["name"].tolist() == ["a", "b", "c"]
    assert aoi.crs.to_epsg() == 4326
    assert aoi.geometry.iloc[2].x == pytest.approx(-6.51812)


def test_polygons_in_projected_crs_are_not_reprojected(tmp_path):
    poly = Polygon([(500000, 5500000), (500100, 5500000), (500100, 5500100), (500000, 5500100)])
    path = tmp_path / "fields.gpkg"
    gpd.GeoDataFrame({"crop": ["wheat"]}, geometry=[poly], crs=32632).to_file(path)
    aoi = xsits.read_aoi(path)
    assert aoi.crs.to_epsg() == 32632
    assert aoi.geometry.iloc[0].bounds == (500000, 5500000, 500100, 5500100)
    assert aoi["feature_id"].tolist() == ["0"]  # default: row number


def test_default_id_column_is_id(tmp_path):
    aoi = xsits.read_aoi(_points_gdf())
    assert aoi["feature_id"].tolist() == ["1", "3", "14"]


def test_csv_lon_lat(tmp_path):
    path = tmp_path / "pts.csv"
    path.write_text("site,lon,lat\nA,8.49,49.85\nB,-6.5,39.3\n")
    aoi = xsits.read_aoi(path, id_column="site")
    assert aoi["feature_id"].tolist() == ["A", "B"]
    assert aoi.crs.to_epsg() == 4326
    assert (aoi.geometry.iloc[1].x, aoi.geometry.iloc[1].y) == (-6.5, 39.3)


def test_csv_named_columns_and_crs(tmp_path):
    path = tmp_path / "pts.csv"
    path.write_text("E,N\n500000,5500000\n")
    aoi = xsits.read_aoi(path, x="E", y="N", crs=32632)
    assert aoi.crs.to_epsg() == 32632 and aoi.geometry.iloc[0].x == 500000


@pytest.mark.parametrize(
    "content,kwargs,match",
    [
        ("a,b\n1,2\n", {}, "no lon/lat \\(or x/y\\) columns"),
        ("E,N\n1,2\n", {"x": "E", "y": "N"}, "CRS .* is unknown"),
        ("lon,lat\n8.4,abc\n", {}, "row 2: column 'lat' has a non-numeric value 'abc'"),
        ("lon,lat\n200,40\n", {}, "outside lon -180..180"),
        ("lon,lat\n", {}, "no rows"),
    ],
)
def test_csv_errors(tmp_path, content, kwargs, match):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(AOIError, match=match) as info:
        xsits.read_aoi(path, **kwargs)
    assert "bad.csv" in str(info.value) and "\n" not in str(info.value)


def test_missing_file():
    with pytest.raises(AOIError, match="does not exist"):
        xsits.read_aoi("nowhere/points.geojson")


def test_malformed_geojson(tmp_path):
    path = tmp_path / "broken.geojson"
    path.write_text('{"type": "FeatureCollection", "features": [ {"type": ')
    with pytest.raises(AOIError, match="broken.geojson' is not valid JSON .*line 1, column"):
        xsits.read_aoi(path)


def test_empty_layer(tmp_path):
    path = tmp_path / "empty.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    with pytest.raises(AOIError, match="no features"):
        xsits.read_aoi(path)


def test_missing_crs_and_fix():
    gdf = gpd.GeoDataFrame({"id": [1]}, geometry=[Point(8, 49)])
    with pytest.raises(AOIError, match="no CRS; pass crs="):
        xsits.read_aoi(gdf)
    assert xsits.read_aoi(gdf, crs=4326).crs.to_epsg() == 4326


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".hidden", "a\\b", "x" * 200])
def test_unsafe_ids(bad):
    gdf = gpd.GeoDataFrame({"fid": ["ok", bad]}, geometry=[Point(8, 49), Point(9, 49)], crs=4326)
    with pytest.raises(FeatureIdError, match="not safe as a file name"):
        xsits.read_aoi(gdf, id_column="fid")


def test_duplicate_ids():
    with pytest.raises(FeatureIdError, match="'2' appears more than once"):
        xsits.read_aoi(_points_gdf(ids=(1, 2, 2)), id_column="pt_id")


def test_unknown_id_column():
    with pytest.raises(AOIError, match="no column 'nope'.*pt_id"):
        xsits.read_aoi(_points_gdf(), id_column="nope")


def test_invalid_and_empty_geometries_raise_or_drop():
    bowtie = Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])
    gdf = gpd.GeoDataFrame({"id": ["good", "bow", "void"]},
                           geometry=[Point(8, 49), bowtie, Polygon()], crs=4326)
    with pytest.raises(AOIError, match="'bow': invalid geometry"):
        xsits.read_aoi(gdf)
    aoi = xsits.read_aoi(gdf, on_invalid="drop")
    assert aoi["feature_id"].tolist() == ["good"]
    assert aoi.attrs["dropped"] == {"bow": "invalid geometry (self-intersecting?)",
                                    "void": "empty geometry"}


def test_errors_share_one_hierarchy():
    assert issubclass(FeatureIdError, AOIError) and issubclass(AOIError, XsitsError)
