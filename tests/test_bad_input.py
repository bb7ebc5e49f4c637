"""Bad input: every mistake gets one typed, one-line error naming the bad value; nothing is written.

Each case calls the public API the way a user would, asserts the exception type (from
:mod:`xsits.errors`), that the message names the offending value, that it is one line, and that
the output directory is still empty afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from shapely.geometry import Point, Polygon

import xsits
from xsits.errors import (
    AOIError,
    BandError,
    ExportError,
    FeatureIdError,
    GapfillError,
    GridError,
    QueryError,
    SearchError,
    StacRequestError,
    UnsafePathError,
    XsitsError,
)
from xsits.stac.api import RetryingStacApiIO
from xsits.testing.cubes import make_cube

POINT = (5.90, 45.20)  # inside the session world (tests/conftest.py)


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _check(err: pytest.ExceptionInfo, *needles: str) -> None:
    message = str(err.value)
    assert isinstance(err.value, XsitsError)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, (needle, message)


def _points(tmp_path: Path, ids=("a", "b"), name="aoi.geojson") -> Path:
    gdf = gpd.GeoDataFrame({"pid": list(ids)},
                           geometry=[Point(*POINT) for _ in ids], crs="EPSG:4326")
    path = tmp_path / name
    gdf.to_file(path)
    return path


@pytest.fixture
def out(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


# --------------------------------------------------------------------------- AOI files


def test_malformed_geojson(tmp_path, out):
    p = tmp_path / "bad.geojson"
    p.write_text('{"type": "FeatureCollection", "features": [')
    with pytest.raises(AOIError) as err:
        xsits.read_aoi(p)
    _check(err, "bad.geojson")
    assert _files(out) == []


def test_empty_geojson_file(tmp_path, out):
    p = tmp_path / "empty.geojson"
    p.write_text("")
    with pytest.raises(AOIError) as err:
        xsits.read_aoi(p)
    _check(err, "empty.geojson")


def test_geojson_without_features(tmp_path):
    p = tmp_path / "none.geojson"
    p.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    with pytest.raises(AOIError) as err:
        xsits.read_aoi(p)
    _check(err, "none.geojson")


def test_non_utf8_geojson(tmp_path):
    p = tmp_path / "latin1.geojson"
    doc = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {
        "name": "Besançon"}, "geometry": {"type": "Point", "coordinates": list(POINT)}}]}
    p.write_bytes(json.dumps(doc, ensure_ascii=False).encode("latin-1"))
    with pytest.raises(AOIError) as err:
        xsits.read_aoi(p)
    _check(err, "latin1.geojson", "UTF-8")


def test_missing_aoi_file(tmp_path):
    with pytest.raises(AOIError) as err:
        xsits.read_aoi(tmp_path / "nowhere.gpkg")
    _check(err, "nowhere.gpkg")


def test_gpkg_without_geometry_column(tmp_path):
    p = tmp_path / "table.gpkg"
    import sqlite3

    with sqlite3.connect(p) as db:  # a GeoPackage-less SQLite table: no geometry at all
        db.execute("CREATE TABLE t (id INTEGER, name TEXT)")
        db.execute("INSERT INTO t VALUES (1, 'a')")
    with pytest.raises(AOIError) as err:
        xsits.read_aoi(p)
    _check(err, "table.gpkg")


def test_csv_without_lon_lat(tmp_path):
    p = tmp_path / "pts.csv"
    pd.DataFrame({"id": [1], "east": [5.9], "north": [45.2]}).to_csv(p, index=False)
    with pytest.raises(AOIError) as err:
        xsits.read_aoi(p)
    _check(err, "pts.csv")


def test_csv_lon_lat_out_of_range(tmp_path):
    p = tmp_path / "pts.csv"
    pd.DataFrame({"id": [1], "lon": [45.2], "lat": [95.9]}).to_csv(p, index=False)
    with pytest.raises(AOIError) as err:
        xsits.read_aoi(p)
    _check(err, "95.9")


def test_unknown_crs(tmp_path):
    p = tmp_path / "pts.csv"
    pd.DataFrame({"id": [1], "lon": [5.9], "lat": [45.2]}).to_csv(p, index=False)
    with pytest.raises(AOIError) as err:
        xsits.read_aoi(p, crs="EPSG:999999")
    _check(err, "EPSG:999999")


def test_unknown_id_column(tmp_path):
    with pytest.raises(AOIError) as err:
        xsits.read_aoi(_points(tmp_path), id_column="plot")
    _check(err, "plot")


def test_duplicate_ids(tmp_path):
    with pytest.raises(FeatureIdError) as err:
        xsits.read_aoi(_points(tmp_path, ids=("a", "a")), id_column="pid")
    _check(err, "'a'")


@pytest.mark.parametrize("bad", ["../../x", "a/b", "", "x" * 300])
def test_path_like_empty_or_long_ids(tmp_path, out, bad):
    gdf = gpd.GeoDataFrame({"pid": [bad]}, geometry=[Point(*POINT)], crs="EPSG:4326")
    with pytest.raises(FeatureIdError) as err:
        xsits.read_aoi(gdf, id_column="pid")
    _check(err, repr(bad)[:40])
    assert _files(out) == []


def test_export_refuses_an_id_that_escapes_the_directory(out):
    ds = make_cube(feature_id="../../evil")
    with pytest.raises(UnsafePathError) as err:
        xsits.out.export.export(ds, out)
    _check(err, "../../evil")
    assert _files(out) == [] and not (out.parent.parent / "evil").exists()


# --------------------------------------------------------------------------- STAC query


def test_end_before_start():
    with pytest.raises(QueryError) as err:
        xsits.StacQuery(start="2024-02-01", end="2024-01-01")
    _check(err, "2024-02-01", "2024-01-01")


def test_unparsable_date():
    with pytest.raises(QueryError) as err:
        xsits.StacQuery(start="2024-13-45")
    _check(err, "2024-13-45")


def test_malformed_cql2_filter():
    with pytest.raises(QueryError) as err:
        xsits.StacQuery(filter="eo:cloud_cover <<< 10")
    _check(err, "eo:cloud_cover <<< 10")


def test_unknown_query_operator():
    with pytest.raises(QueryError) as err:
        xsits.StacQuery(query={"eo:cloud_cover": {"below": 10}})
    _check(err, "below")


def test_unknown_preset():
    with pytest.raises(QueryError) as err:
        xsits.StacQuery(stac="planetary-computr")
    _check(err, "planetary-computr")


def test_negative_max_cloud():
    with pytest.raises(QueryError) as err:
        xsits.StacQuery(max_cloud=-5)
    _check(err, "-5")


def test_unreachable_stac_url(tmp_path, out):
    with xsits.set_options(retries=1):
        with pytest.raises(SearchError) as err:
            xsits.open_cubes(_points(tmp_path), stac="http://127.0.0.1:9/", bands=["B04"],
                             start="2022-01-01", end="2022-01-31")
    _check(err, "127.0.0.1:9")
    assert _files(out) == []


@pytest.mark.parametrize("params", ["bbox=1,2", "datetime=nonsense", "limit=0"])
def test_http_400_from_the_api_is_not_retried(stac_url, pg_stac, params):
    pg_stac.reset_stats()
    io = RetryingStacApiIO(timeout=10)
    with pytest.raises(StacRequestError) as err:
        io.request(f"{stac_url}/search?{params}")
    assert err.value.status == 400
    _check(err, "400")
    assert pg_stac.stats().get("/search", 0) == 1  # the client's fault: asked once


def test_zero_items_names_the_features(stac_url, tmp_path):
    cubes = xsits.open_cubes(_points(tmp_path), stac=stac_url, bands=["B04"],
                             start="2030-01-01", end="2030-01-31")
    assert dict(cubes) == {}
    assert set(cubes.missing) == {"0", "1"} or len(cubes.missing) == 2
    assert all("2030-01-01" in why or "no item" in why for why in cubes.missing.values())


def test_point_outside_every_tile(stac_url, tmp_path):
    gdf = gpd.GeoDataFrame({"pid": ["sea"]}, geometry=[Point(-30.0, 40.0)], crs="EPSG:4326")
    cubes = xsits.open_cubes(gdf, id_column="pid", stac=stac_url, bands=["B04"],
                             start="2021-12-01", end="2022-03-31")
    assert list(cubes) == [] and list(cubes.missing) == ["sea"]
    why = cubes.missing["sea"]
    assert "no sentinel-2-l2a item between 2021-12-01 and 2022-03-31" in why
    assert why.endswith("widen the dates or raise max_cloud")  # names the fix


# --------------------------------------------------------------------------- grid and load


@pytest.mark.parametrize("size", [(0, 10), (-3, 3)])
def test_zero_or_negative_size(size):
    with pytest.raises(GridError) as err:
        xsits.GridSpec(mode="patch", size=size)
    _check(err, str(size[0]))


def test_zero_resolution():
    with pytest.raises(GridError) as err:
        xsits.GridSpec(resolution=0)
    _check(err, "0")


def test_negative_buffer():
    with pytest.raises(GridError) as err:
        xsits.GridSpec(buffer=-10)
    _check(err, "-10")


def test_unknown_mode():
    with pytest.raises(GridError) as err:
        xsits.GridSpec(mode="tile")
    _check(err, "tile")


def test_unknown_grid_crs():
    with pytest.raises(GridError) as err:
        xsits.GridSpec(crs="EPSG:123456789")
    _check(err, "EPSG:123456789")


def test_unknown_resampling(tmp_path, out):
    with pytest.raises(XsitsError) as err:
        xsits.open_cubes(_points(tmp_path), stac="http://127.0.0.1:9/", bands=["B04"],
                         resampling="lanczos-ish")
    _check(err, "lanczos-ish")
    assert _files(out) == []


def test_unknown_band_in_a_cube():
    with pytest.raises(BandError) as err:
        make_cube().sits.scl_mask(band="CLOUDS")
    _check(err, "CLOUDS")


def test_unknown_band_in_the_query(tmp_path, out):
    with pytest.raises(QueryError) as err:
        xsits.open_cubes(_points(tmp_path), stac="http://127.0.0.1:9/", bands=["B99"])
    _check(err, "B99")


def test_clip_to_an_unknown_crs():
    with pytest.raises(AOIError) as err:
        make_cube().sits.clip(Polygon([(0, 0), (1, 0), (1, 1)]), crs="EPSG:9999999")
    _check(err, "9999999")


# --------------------------------------------------------------------------- operations


def test_unknown_gapfill_method():
    with pytest.raises(GapfillError) as err:
        make_cube().sits.gapfill(method="spline-ish")
    _check(err, "spline-ish")


def test_negative_max_gap():
    with pytest.raises(GapfillError) as err:
        make_cube().sits.gapfill(max_gap=-1)
    _check(err, "-1")


# --------------------------------------------------------------------------- outputs


def test_output_directory_is_a_file(tmp_path):
    target = tmp_path / "out"
    target.write_text("not a directory")
    with pytest.raises(XsitsError) as err:
        xsits.compute_all({"1": make_cube()}, out_dir=target, progress=False)
    _check(err, str(target))
    assert target.read_text() == "not a directory"


def test_unknown_export_format(out):
    with pytest.raises(ExportError) as err:
        xsits.out.export.export(make_cube(), out, format="hdf4")
    _check(err, "hdf4")
    assert _files(out) == []


def test_existing_output_is_not_replaced(out):
    path = xsits.out.export.export(make_cube(), out)
    before = path.read_bytes()
    with pytest.raises(ExportError) as err:
        xsits.out.export.export(make_cube(seed=3), out)
    _check(err, path.name, "overwrite=True")
    assert path.read_bytes() == before and _files(out) == [path.name]


def test_unknown_option():
    with pytest.raises(XsitsError) as err:
        xsits.set_options(retires=3)
    _check(err, "retires")


def test_cli_bad_option_exits_2_with_one_line(capsys):
    from xsits.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["fetch", "aoi.geojson", "--mode", "tile"])
    assert exc.value.code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert any("tile" in ln for ln in lines)
