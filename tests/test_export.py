"""xsits.out.export: file names, safety, atomicity and round trips for every format."""

from __future__ import annotations

import json
import os
import warnings

import dask.array as dsa
import netCDF4
import numpy as np
import odc.geo.xr  # noqa: F401
import pandas as pd
import pyarrow.parquet as pq
import pyproj
import pytest
import rioxarray  # noqa: F401
import xarray as xr

import xsits  # noqa: F401  (registers .sits)
from xsits.errors import ExportError, OutputExistsError, UnsafePathError
from xsits.ops.gapfill import gapfill
from xsits.ops.mask import scl_mask
from xsits.out import export as export_mod
from xsits.out.atomic import atomic_path
from xsits.out.export import export, output_path
from xsits.testing.cubes import make_cube

from helpers import raise_if_dask_computes

warnings.filterwarnings("ignore", category=PendingDeprecationWarning)

FORMATS = ["netcdf", "zarr", "csv", "parquet"]
SUFFIX = {"netcdf": ".nc", "zarr": ".zarr", "csv": ".csv", "parquet": ".parquet"}
PER_DATE = ["cloud_cover", "platform", "processing_baseline", "mgrs_tile", "boa_offset_applied"]


def cube(chunks=None, **kwargs) -> xr.Dataset:
    kwargs.setdefault("n_times", 4)
    kwargs.setdefault("shape", (4, 5))
    kwargs.setdefault("feature_id", "7")
    ds = make_cube(chunks=chunks, **kwargs)
    # one date with the BOA offset flag set, so the bool coordinate is not constant
    return ds.assign_coords(boa_offset_applied=("time", np.arange(ds.sizes["time"]) % 2 == 1))


def masked(chunks=None) -> xr.Dataset:
    return scl_mask(cube(chunks=chunks))


def filled(chunks=None) -> xr.Dataset:
    # gap-filled without edges: the nodata pixel of the last date stays NaN
    return gapfill(masked(chunks=chunks), edges=False)


def empty(chunks=None) -> xr.Dataset:
    return cube(chunks=chunks).isel(time=slice(0, 0))


CUBES = {"plain": cube, "masked": masked, "filled": filled, "empty": empty}


def boom_cube() -> xr.Dataset:
    """A dask cube whose B04 raises when computed (an interrupted download)."""
    ds = cube(chunks={"time": 1})

    def boom(block):
        raise RuntimeError("boom: COG read failed")

    data = dsa.map_blocks(boom, ds.B04.data, dtype="uint16", meta=np.array((), "uint16"))
    return ds.assign(B04=ds.B04.copy(data=data))


def listing(path) -> list[str]:
    return sorted(os.listdir(path))


# --------------------------------------------------------------------------- names and safety


def test_output_path_directory_names_from_attrs(tmp_path):
    ds = cube()
    assert output_path(ds, tmp_path) == tmp_path / "fid-7_image_2024-01-01_2024-01-31.nc"
    assert output_path(ds, f"{tmp_path}/", format="csv").name == (
        "fid-7_image_2024-01-01_2024-01-31.csv"
    )
    patch = ds.assign_attrs(mode="patch", start="2024-01-01T00:00:00Z", end="2025-02-01")
    assert output_path(patch, "out", format="zarr").as_posix() == (
        "out/fid-7_patch_2024-01-01_2025-02-01.zarr"
    )
    assert listing(tmp_path) == []  # pure: nothing created


@pytest.mark.parametrize("fmt", FORMATS)
def test_output_path_file_format_from_suffix(tmp_path, fmt):
    target = tmp_path / f"f7{SUFFIX[fmt]}"
    assert output_path(cube(), target) == target
    assert output_path(cube(), target, format=fmt) == target
    assert export(cube(), target) == target
    assert target.exists()


def test_output_path_bad_formats(tmp_path):
    with pytest.raises(ExportError, match="contradicts"):
        output_path(cube(), tmp_path / "f.nc", format="parquet")
    with pytest.raises(ExportError, match="unknown export format 'tiff'"):
        output_path(cube(), tmp_path, format="tiff")
    with pytest.raises(ExportError, match=r"attrs\['feature_id'\]"):
        output_path(cube().drop_attrs(), tmp_path)


@pytest.mark.parametrize("fid", ["../x", "a/b", "/etc/passwd", "", "  ", "..", "a\\b", "x\0y"])
def test_unsafe_feature_ids_are_refused(tmp_path, fid):
    ds = cube().assign_attrs(feature_id=fid)
    with pytest.raises(UnsafePathError) as err:
        output_path(ds, tmp_path)
    assert "\n" not in str(err.value)
    with pytest.raises(UnsafePathError):
        export(ds, tmp_path)
    assert listing(tmp_path) == []


def test_unsafe_mode_is_refused(tmp_path):
    with pytest.raises(UnsafePathError, match="mode"):
        output_path(cube().assign_attrs(mode="../../etc"), tmp_path)


# --------------------------------------------------------------------------- atomicity


@pytest.mark.parametrize("fmt", FORMATS)
def test_interrupted_export_leaves_nothing(tmp_path, fmt):
    with pytest.raises(RuntimeError, match="boom"):
        export(boom_cube(), tmp_path / "out", format=fmt)
    assert listing(tmp_path / "out") == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_existing_output_is_kept_unless_overwrite(tmp_path, fmt):
    first = export(cube(seed=1), tmp_path, format=fmt)
    with pytest.raises(OutputExistsError) as err:
        export(cube(seed=2), tmp_path, format=fmt)
    message = str(err.value)
    assert str(first) in message and "overwrite=True" in message and "\n" not in message
    assert isinstance(err.value, FileExistsError)
    assert read_back_b04(first, fmt) == read_back_b04_expected(cube(seed=1))

    again = export(cube(seed=2), tmp_path, format=fmt, overwrite=True)
    assert again == first
    assert read_back_b04(first, fmt) == read_back_b04_expected(cube(seed=2))
    assert listing(tmp_path) == [first.name]  # no temp or old copy left behind


def read_back_b04(path, fmt) -> list[int]:
    if fmt in ("csv", "parquet"):
        table = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
        return table["B04"].astype(int).tolist()
    return open_back(path, fmt).B04.values.ravel().tolist()


def read_back_b04_expected(ds) -> list[int]:
    return ds.B04.values.ravel().astype(int).tolist()


def test_atomic_path_cleans_up_on_error(tmp_path):
    final = tmp_path / "a.bin"
    with pytest.raises(KeyboardInterrupt), atomic_path(final) as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert listing(tmp_path) == []


# --------------------------------------------------------------------------- NetCDF / Zarr


def open_back(path, fmt) -> xr.Dataset:
    """Read an output back as written: integer bands stay integer (their ``_FillValue`` is
    their nodata, which xarray would otherwise turn into NaN)."""
    if fmt == "zarr":
        return xr.open_dataset(path, engine="zarr").load()
    back = xr.open_dataset(path, engine="netcdf4", mask_and_scale=False).load()
    assert back.attrs.pop("Conventions") == "CF-1.8"
    return back


@pytest.mark.parametrize("fmt", ["netcdf", "zarr"])
@pytest.mark.parametrize("kind", list(CUBES))
@pytest.mark.parametrize("chunks", [None, {"time": 2}])
def test_round_trip_netcdf_zarr(tmp_path, fmt, kind, chunks):
    ds = CUBES[kind](chunks=chunks)
    path = export(ds, tmp_path, format=fmt)
    assert path.name == f"fid-7_image_2024-01-01_2024-01-31{SUFFIX[fmt]}"
    back = open_back(path, fmt)
    expected = ds.compute()
    for name, arr in expected.data_vars.items():
        np.testing.assert_array_equal(back[name].values, arr.values)  # NaN == NaN here
        assert back[name].dtype == arr.dtype, name
        assert back[name].dims == arr.dims
    for name in ("x", "y", "time", *PER_DATE):
        np.testing.assert_array_equal(back[name].values, expected[name].values)
    assert back.boa_offset_applied.dtype == bool
    assert back.rio.crs.to_epsg() == 32632
    assert back.odc.crs.epsg == 32632
    assert back.odc.geobox == expected.odc.geobox
    assert back.attrs == expected.attrs
    assert back.B04.attrs["nodata"] == expected.B04.attrs["nodata"] or np.isnan(
        back.B04.attrs["nodata"]
    )


def test_compress_writes_zlib_and_reads_back_the_same(tmp_path):
    ds = masked()
    small = export(ds, tmp_path / "small.nc", compress=True)
    plain = export(ds, tmp_path / "plain.nc")
    with netCDF4.Dataset(small) as nc:
        assert nc["B04"].filters()["zlib"] is True and nc["B04"].filters()["shuffle"] is True
        assert nc["SCL"].filters()["zlib"] is True
    with xr.open_dataset(small) as a, xr.open_dataset(plain) as b:
        xr.testing.assert_identical(a.load(), b.load())


def test_large_or_compressed_variables_are_chunked_by_date(tmp_path, monkeypatch):
    small = export(masked(), tmp_path / "small.nc", compress=True)
    monkeypatch.setattr(export_mod, "NETCDF_CONTIGUOUS_BYTES", 100)
    large = export(masked(), tmp_path / "large.nc")
    for path in (small, large):
        with netCDF4.Dataset(path) as nc:
            assert nc["B04"].chunking() == [1, 4, 5]
            assert nc["time"].chunking() == "contiguous"  # 4 dates: 32 bytes
    with xr.open_dataset(small) as a, xr.open_dataset(large) as b:
        xr.testing.assert_identical(a.load(), b.load())


def test_masked_bands_are_float32_with_nan_and_unmasked_stay_integer(tmp_path):
    plain = export(cube(), tmp_path / "plain.nc")
    mask = export(masked(), tmp_path / "masked.nc")
    with netCDF4.Dataset(plain) as nc:
        assert nc["B04"].dtype == np.uint16
        assert nc["B04"]._FillValue == 0  # its nodata (CF)
        assert nc["SCL"].dtype == np.uint8
        assert nc["B04"].filters()["zlib"] is False  # as xarray writes: fast
        assert nc["B04"].chunking() == "contiguous"  # small: one write
        assert nc["B04"].grid_mapping == "spatial_ref"
        assert "EPSG" in nc["spatial_ref"].crs_wkt and nc["spatial_ref"].spatial_ref
        assert "since" in nc["time"].units
        assert nc["boa_offset_applied"].dtype == np.int8
        assert list(nc["boa_offset_applied"].flag_values) == [0, 1]
        assert nc["boa_offset_applied"][:].tolist() == [0, 1, 0, 1]
        assert nc["platform"][:].tolist() == cube().platform.values.tolist()
    with netCDF4.Dataset(mask) as nc:
        assert nc["B04"].dtype == np.float32
        assert np.isnan(nc["B04"]._FillValue)
        assert nc["SCL"].dtype == np.uint8
        assert int(np.isnan(nc["B04"][:].filled(np.nan)).sum()) == int(
            masked().B04.isnull().sum()
        )


def test_float64_bands_are_written_as_float32(tmp_path):
    ds = cube()
    ds["B04"] = ds.B04.astype("float64") / 10000
    with xr.open_dataset(export(ds, tmp_path / "f.nc")) as back:
        assert back.B04.dtype == np.float32
        np.testing.assert_allclose(back.B04.values, ds.B04.values, rtol=1e-6)


def test_attrs_are_made_serializable_without_mutating_input(tmp_path):
    ds = cube().assign_attrs(none=None, flag=True, meta={"a": 1}, tags=["x", 2], nums=[1, 2])
    ds.B04.attrs["scale"] = None
    before = {k: v for k, v in ds.attrs.items()}
    with xr.open_dataset(export(ds, tmp_path)) as back:
        assert back.attrs["none"] == "None"
        assert back.attrs["flag"] == "True"
        assert json.loads(back.attrs["meta"]) == {"a": 1}
        assert json.loads(back.attrs["tags"]) == ["x", 2]
        assert back.attrs["nums"].tolist() == [1, 2]
        assert back.B04.attrs["scale"] == "None"
    assert ds.attrs == before and ds.attrs["none"] is None and ds.attrs["flag"] is True
    assert "grid_mapping" not in ds.B04.attrs and ds.B04.encoding == {}


def test_netcdf_export_of_dask_cube_computes_once_while_writing(tmp_path):
    ds = masked(chunks={"time": 1})
    with raise_if_dask_computes(max_computes=1):
        path = export(ds, tmp_path)
    with xr.open_dataset(path) as back:
        np.testing.assert_array_equal(back.B03.values, ds.B03.values)


def test_zarr_overwrite_replaces_directory(tmp_path):
    target = tmp_path / "f7.zarr"
    export(cube(seed=1), target)
    export(cube(seed=2), target, overwrite=True)
    assert listing(tmp_path) == ["f7.zarr"]
    with xr.open_dataset(target, engine="zarr") as back:
        np.testing.assert_array_equal(back.B08.values, cube(seed=2).B08.values)


def test_accessor_and_dataarray(tmp_path):
    path = cube().sits.export(tmp_path)
    assert path.exists() and path.suffix == ".nc"
    da_path = export(cube().B04, tmp_path / "b04.nc")
    with xr.open_dataset(da_path, mask_and_scale=False) as back:
        assert list(back.data_vars) == ["B04"]
        np.testing.assert_array_equal(back.B04.values, cube().B04.values)


# --------------------------------------------------------------------------- CSV / Parquet


def read_table(path, fmt) -> pd.DataFrame:
    if fmt == "csv":
        text_columns = {"feature_id": str, "processing_baseline": str}
        return pd.read_csv(path, parse_dates=["time"], dtype=text_columns)
    return pd.read_parquet(path)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("kind", list(CUBES))
@pytest.mark.parametrize("chunks", [None, {"time": 3}])
def test_round_trip_tables(tmp_path, fmt, kind, chunks):
    ds = CUBES[kind](chunks=chunks)
    expected = ds.compute()
    table = read_table(export(ds, tmp_path, format=fmt), fmt)
    bands = list(ds.data_vars)
    assert list(table.columns) == [
        "feature_id", "time", "y", "x", "lon", "lat", *PER_DATE, *bands
    ]
    assert len(table) == ds.sizes["time"] * 4 * 5
    if ds.sizes["time"] == 0:
        return
    assert set(table.feature_id) == {"7"}
    back = table.set_index(["time", "y", "x"]).to_xarray()
    back = back.reindex_like(expected)
    for band in bands:
        np.testing.assert_allclose(back[band].values, expected[band].values, rtol=1e-6)
    per_date = table.groupby("time")[PER_DATE].first()
    for name in PER_DATE:
        assert per_date[name].tolist() == expected[name].values.tolist(), name
    lon, lat = pyproj.Transformer.from_crs(32632, 4326, always_xy=True).transform(
        expected.x.values[2], expected.y.values[1]
    )
    row = table[(table.x == expected.x.values[2]) & (table.y == expected.y.values[1])].iloc[0]
    assert row.lon == pytest.approx(lon) and row.lat == pytest.approx(lat)
    assert 8 < lon < 10 and 49 < lat < 50


def test_parquet_keeps_dtypes_and_metadata(tmp_path):
    path = export(masked(), tmp_path, format="parquet")
    table = pq.read_table(path)
    assert str(table.schema.field("SCL").type) == "uint8"
    assert str(table.schema.field("B04").type) == "float"
    assert str(table.schema.field("boa_offset_applied").type) == "bool"
    meta = json.loads(table.schema.metadata[b"xsits"])
    assert meta["attrs"]["feature_id"] == "7"
    assert pyproj.CRS.from_wkt(meta["crs_wkt"]).to_epsg() == 32632
    frame = table.to_pandas()
    assert frame.B04.isna().sum() == int(masked().B04.isnull().sum()) > 0
    plain = pd.read_parquet(export(cube(), tmp_path, format="parquet", overwrite=True))
    assert plain.B04.dtype == np.uint16


def test_csv_writes_iso_times_and_empty_nan(tmp_path):
    path = export(masked(), tmp_path, format="csv")
    lines = path.read_text().splitlines()
    assert lines[0].startswith("feature_id,time,y,x,lon,lat,cloud_cover,platform")
    assert lines[1].split(",")[1] == "2024-01-01T00:00:00.000000"
    assert any(",," in line or line.endswith(",") for line in lines[1:])


def test_table_refuses_non_grid_variables(tmp_path):
    ds = cube().assign(extra=("band", np.arange(3)))
    with pytest.raises(ExportError, match="'extra'"):
        export(ds, tmp_path, format="csv")
    assert listing(tmp_path) == []


@pytest.mark.parametrize("masked_cube", [False, True])
def test_netcdf_follows_cf(tmp_path, masked_cube):
    """CF-1.8: Conventions, grid_mapping with the CRS, standard time units and calendar,
    a _FillValue of each variable's own dtype, no fill on coordinate variables."""
    ds = masked() if masked_cube else cube()
    ds = ds.assign_coords(time=ds.time + pd.Timedelta("10h27min31.024s"))  # as S2 times
    path = export(ds, tmp_path)
    with netCDF4.Dataset(path) as nc:
        assert nc.Conventions == "CF-1.8"
        assert nc["time"].units == "seconds since 1970-01-01"
        assert nc["time"].calendar == "proleptic_gregorian"
        assert nc["time"].standard_name == "time"
        crs = pyproj.CRS.from_cf(nc["spatial_ref"].__dict__)
        assert crs.to_epsg() == 32632
        for name in ("B03", "B04", "B08", "SCL"):
            var = nc[name]
            assert var.grid_mapping == "spatial_ref"
            assert var._FillValue.dtype == var.dtype, name
            if var.dtype.kind == "f":
                assert np.isnan(var._FillValue)
            else:
                assert var._FillValue == ds[name].attrs["nodata"]
        for name in ("x", "y", "time"):
            assert "_FillValue" not in nc[name].ncattrs(), name
        assert nc["x"].standard_name == "projection_x_coordinate"
    back = xr.open_dataset(path).load()
    np.testing.assert_array_equal(back.time.values, ds.time.values)  # exact to the ms
    if not masked_cube:  # CF readers see the nodata pixels as missing
        nodata_px = (ds.B04 == 0).compute().values
        assert nodata_px.any()
        assert np.isnan(back.B04.values[nodata_px]).all()


def test_an_output_directory_that_is_a_file_is_a_typed_error(tmp_path):
    from xsits.errors import OutputDirError, XsitsError

    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    ds = make_cube(n_times=2, shape=(2, 2))
    for call in (lambda: xsits.compute_all({"a": ds}, [], out_dir=afile, progress=False),
                 lambda: xsits.compute_all({"a": ds}, [], out_dir=afile / "sub", progress=False),
                 lambda: ds.sits.export(afile / "x.nc"),
                 lambda: xsits.sample(str(tmp_path / "none.geojson"), out=afile / "t.parquet")):
        with pytest.raises(OutputDirError, match="afile' is an existing file") as err:
            call()
        assert isinstance(err.value, XsitsError) and isinstance(err.value, NotADirectoryError)
    assert afile.read_text() == "not a directory"
