"""Atomic exports of a cube to NetCDF, Zarr, CSV or Parquet.

:func:`export` writes one cube to a file under a temporary name in the destination directory
and renames it at the end (:func:`xsits.out.atomic.atomic_path`), so a crash never leaves a
half-written file under the final name. :func:`output_path` tells where :func:`export` would
write, without writing (the batch engine uses it to skip features already done).
:func:`xsits.out.catalog.write_results_catalog` writes an Intake catalog of outputs beside them.

Owns: output names (:func:`output_path`, safe feature ids), formats (:data:`FORMATS`), each
format's encodings and writer.
Must not: commit files itself (:mod:`xsits.out.atomic`) or compute what it was not given.

File names, when ``target`` is a directory: ``fid-<feature_id>_<mode>_<start>_<end>.<ext>``
from the cube attributes.

Encodings (NetCDF and Zarr):

- integer bands (unmasked ``uint16``/``int16``, ``SCL``) stay integers, without ``_FillValue``
  (their ``nodata`` attribute is kept), so they read back with the same dtype and values;
- floating bands (masked, gap-filled, indices) are written as ``float32`` with
  ``_FillValue = NaN``;
- every band carries ``grid_mapping = "spatial_ref"``; the scalar ``spatial_ref`` coordinate
  holds ``crs_wkt`` and ``spatial_ref`` (read back by rioxarray and odc-geo);
- NetCDF: uncompressed unless ``compress=True`` (``zlib`` level 1 with shuffle: files ~3x
  smaller, writes ~3x longer); a variable is stored contiguously up to
  :data:`NETCDF_CONTIGUOUS_BYTES` uncompressed, else in chunks of one date. CF-1.8:
  ``Conventions``, ``grid_mapping`` (``spatial_ref``) on every band, time in ``seconds since
  1970-01-01`` (proleptic Gregorian), ``_FillValue`` NaN for float bands and the band's
  nodata for integer ones (so CF readers, xarray included, see nodata as missing; open with
  ``mask_and_scale=False`` to keep the integers); string coordinates as variable-length strings;
  boolean coordinates as ``int8`` with ``dtype = "bool"`` (decoded back to ``bool`` by
  xarray), ``flag_values`` and ``flag_meanings``;
- Zarr: format 2 (readable by zarr-python 2 and 3, GDAL), consolidated metadata;
- attributes that netCDF cannot hold are converted on a copy: ``bool``/``None`` to
  ``"True"``/``"False"``/``"None"``, ``dict`` and mixed lists to JSON text.

CSV / Parquet hold a long table, one row per (time, y, x): ``feature_id, time, y, x, lon, lat``,
then the per-date coordinates (``cloud_cover``, ``platform``...), then the bands. Parquet keeps
the dtypes and stores the cube attributes and CRS as JSON under the schema metadata key
``b"xsits"``; CSV writes times as ISO 8601 (UTC, microseconds) and NaN as empty fields.

Examples
--------
>>> import tempfile, xarray as xr
>>> from xsits.testing.cubes import make_cube
>>> ds = make_cube(n_times=2, shape=(3, 4), feature_id="7")
>>> out = tempfile.mkdtemp()
>>> path = export(ds, out)
>>> path.name
'fid-7_image_2024-01-01_2024-01-11.nc'
>>> with xr.open_dataset(path, mask_and_scale=False) as back:
...     bool((back.B04 == ds.B04).all()), str(back.B04.dtype)
(True, 'uint16')
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Any

import dask
import dask.array as dsa
import numpy as np
import odc.geo.xr  # noqa: F401  (registers .odc)
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pyproj
import xarray as xr

from xsits.errors import ExportError, UnsafePathError
from xsits.out.atomic import atomic_path

#: Uncompressed NetCDF variables up to this size are stored contiguously (one write), larger
#: or compressed ones in chunks of one date.
NETCDF_CONTIGUOUS_BYTES = 16 * 2**20
#: The ``Conventions`` attribute of NetCDF outputs.
CF_CONVENTIONS = "CF-1.8"
#: Canonical format name -> file suffix.
FORMATS: dict[str, str] = {"netcdf": ".nc", "zarr": ".zarr", "csv": ".csv", "parquet": ".parquet"}

_SUFFIXES: dict[str, str] = {
    ".nc": "netcdf",
    ".nc4": "netcdf",
    ".zarr": "zarr",
    ".csv": "csv",
    ".parquet": "parquet",
}
_ALIASES: dict[str, str] = {"nc": "netcdf", "netcdf4": "netcdf", "pq": "parquet"}
_NAME_ATTRS = ("feature_id", "mode", "start", "end")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


# --------------------------------------------------------------------------- paths


def _format_name(format: str | None) -> str | None:
    if format is None:
        return None
    name = _ALIASES.get(str(format).lower(), str(format).lower())
    if name not in FORMATS:
        raise ExportError(
            f"unknown export format {format!r}; use one of {', '.join(FORMATS)}"
        )
    return name


def _safe_component(value: object, what: str, fid: object) -> str:
    """``value`` as text that is safe inside one file name, else :class:`UnsafePathError`."""
    text = str(value)
    bad = (
        not text.strip()
        or text in (".", "..")
        or any(c in text for c in "/\\\0")
        or any(ord(c) < 32 for c in text)
        or os.path.isabs(text)
    )
    if bad:
        raise UnsafePathError(
            f"{what} {text!r} of feature {fid!r} is not safe in a file name "
            "(empty, '.', '..', a path separator or a control character); "
            "give the feature a plain id such as 'field-12'"
        )
    return text


def _name_part(ds: xr.Dataset, key: str) -> str:
    if key not in ds.attrs or ds.attrs[key] is None:
        raise ExportError(
            f"the cube has no attrs[{key!r}] to build the file name; "
            "set it or pass a file path such as 'out/cube.nc' as target"
        )
    text = str(ds.attrs[key])
    if key in ("start", "end") and _ISO_DATE.match(text):
        text = text[:10]
    return _safe_component(text, key, ds.attrs.get("feature_id"))


def output_path(
    ds: xr.Dataset | xr.DataArray, target: str | os.PathLike, format: str | None = None
) -> Path:
    """The path :func:`export` would write for ``ds`` (pure: nothing is read or written).

    Parameters
    ----------
    ds
        The cube; its attrs ``feature_id``, ``mode``, ``start``, ``end`` name the file when
        ``target`` is a directory.
    target
        A directory (file name ``fid-<feature_id>_<mode>_<start>_<end>.<ext>``) or a file path
        whose suffix (``.nc``, ``.zarr``, ``.csv``, ``.parquet``) gives the format.
    format
        ``"netcdf"`` (default for directories), ``"zarr"``, ``"csv"`` or ``"parquet"``; must
        agree with the suffix of a file path.

    Returns
    -------
    pathlib.Path
        The output path (relative if ``target`` is relative).

    Raises
    ------
    UnsafePathError
        A feature id (or mode/date) would escape the target directory.
    ExportError
        Unknown format, format contradicting the suffix, or missing naming attributes.

    Examples
    --------
    >>> from xsits.testing.cubes import make_cube
    >>> ds = make_cube(n_times=2, shape=(2, 2), feature_id="7")
    >>> output_path(ds, "out/").as_posix()
    'out/fid-7_image_2024-01-01_2024-01-11.nc'
    >>> output_path(ds, "out", format="parquet").name
    'fid-7_image_2024-01-01_2024-01-11.parquet'
    >>> output_path(ds, "out/f7.zarr").as_posix()
    'out/f7.zarr'
    """
    fmt = _format_name(format)
    raw = os.fspath(target)
    path = Path(raw)
    suffix = path.suffix.lower()
    if suffix in _SUFFIXES and not raw.endswith(("/", os.sep)):
        inferred = _SUFFIXES[suffix]
        if fmt is not None and fmt != inferred:
            raise ExportError(
                f"format={format!r} contradicts the suffix of {raw!r}; "
                f"drop format= or use a {FORMATS[fmt]} file name"
            )
        return path
    fmt = fmt or "netcdf"
    fid, mode, start, end = (_name_part(ds, key) for key in _NAME_ATTRS)
    name = f"fid-{fid}_{mode}_{start}_{end}{FORMATS[fmt]}"
    directory = path.resolve()
    if (directory / name).resolve().parent != directory:
        raise UnsafePathError(
            f"feature id {fid!r} would write outside {raw!r}; give the feature a plain id"
        )
    return path / name


def _format_of(path: Path) -> str:
    return _SUFFIXES[path.suffix.lower()]


# --------------------------------------------------------------------------- CF preparation


def _attr_value(value: Any) -> Any:
    """``value`` as something netCDF (and JSON) can store as an attribute."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        return str(value if value is None else bool(value))
    if isinstance(value, (str, bytes, int, float, np.integer, np.floating)):
        return value
    if isinstance(value, (list, tuple, np.ndarray)):
        arr = np.asarray(value)
        if arr.ndim == 1 and arr.size and arr.dtype.kind in "iuf":
            return arr
    if isinstance(value, (dict, list, tuple, np.ndarray)):
        return json.dumps(np.asarray(value).tolist() if isinstance(value, np.ndarray) else value,
                          default=str)
    return str(value)


def _clean_attrs(attrs: dict) -> dict:
    return {
        str(k): _attr_value(v) for k, v in attrs.items() if k not in ("_FillValue", "missing_value")
    }


def _is_projected(ds: xr.Dataset) -> bool:
    wkt = ds.coords["spatial_ref"].attrs.get("crs_wkt") if "spatial_ref" in ds.coords else None
    if not wkt:
        return False

    return bool(pyproj.CRS.from_wkt(wkt).is_projected)


def _regular(var: xr.Variable) -> xr.Variable:
    """Rechunk a dask variable so every chunk but the last has the same size (Zarr needs it)."""
    if not isinstance(var.data, dsa.Array):
        return var
    chunks = dict(zip(var.dims, var.chunks, strict=True))
    if all(len(set(c[:-1])) <= 1 and (len(c) < 2 or c[-1] <= c[0]) for c in chunks.values()):
        return var
    return var.chunk({d: max(c) for d, c in chunks.items()})


def _prepare(ds: xr.Dataset, fmt: str,
             compress: bool = False) -> tuple[xr.Dataset, dict[Hashable, dict]]:
    """A CF-ready shallow copy of ``ds`` and its encoding; ``ds`` itself is not modified."""
    grid_mapping = "spatial_ref" if "spatial_ref" in ds.coords else None
    projected = _is_projected(ds)
    encoding: dict[Hashable, dict] = {}
    coords = {}
    for name, coord in ds.coords.items():
        var = coord.variable.copy(deep=False)
        var.attrs = _clean_attrs(coord.attrs)
        var.encoding = {}
        if var.dtype == object:
            var = var.astype(str)
        if var.dtype.kind == "b" and fmt == "netcdf":
            var.attrs.update(flag_values=np.array([0, 1], dtype="int8"),
                             flag_meanings="false true")
        if name == "time" and var.dtype.kind == "M":
            var.attrs.setdefault("standard_name", "time")
            var.attrs.setdefault("axis", "T")
            encoding[name] = _time_encoding(var)
        if name in ds.dims and fmt == "netcdf":  # CF: coordinate variables have no fill
            encoding.setdefault(name, {})["_FillValue"] = None
        if name in ("x", "y") and projected:
            var.attrs.setdefault("standard_name", f"projection_{name}_coordinate")
            var.attrs.setdefault("axis", name.upper())
        coords[name] = var
    data_vars = {}
    for name, arr in ds.data_vars.items():
        var = arr.variable.copy(deep=False)
        var.attrs = _clean_attrs(arr.attrs)
        var.encoding = {}
        enc: dict[str, Any] = {}
        kind = var.dtype.kind
        if kind == "f":
            enc.update(dtype="float32", _FillValue=np.float32(np.nan))
        elif kind in "iu":  # CF (NetCDF): the band's nodata marks its missing pixels
            enc["_FillValue"] = _integer_fill(var) if fmt == "netcdf" else None
        if grid_mapping and {"x", "y"} <= set(var.dims):
            var.attrs["grid_mapping"] = grid_mapping
        sizes = var.shape
        one_per_date = tuple(1 if d == "time" else n for d, n in zip(var.dims, sizes, strict=True))
        if fmt == "netcdf":
            if compress:
                enc.update(zlib=True, complevel=1, shuffle=True)
            if var.ndim and all(sizes):
                written = var.size * (4 if kind == "f" else var.dtype.itemsize)  # float32
                if compress or written > NETCDF_CONTIGUOUS_BYTES:
                    enc["chunksizes"] = one_per_date
                else:  # one HDF5 write (a chunk per date: ~2x slower)
                    enc["contiguous"] = True
        elif isinstance(var.data, dsa.Array):
            var = _regular(var)
        elif var.ndim and all(sizes):
            enc["chunks"] = one_per_date
        data_vars[name] = var
        encoding[name] = enc
    attrs = _clean_attrs(ds.attrs)
    if fmt == "netcdf":
        attrs["Conventions"] = CF_CONVENTIONS
    out = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    return out, encoding


def _time_encoding(var: xr.Variable) -> dict[str, Any]:
    """CF time: ``seconds since 1970-01-01`` in the proleptic Gregorian calendar.

    Whole seconds are written as int64; sub-second times (Sentinel-2 acquisition times carry
    milliseconds) as float64, exact to the microsecond.
    """
    enc: dict[str, Any] = {"units": "seconds since 1970-01-01 00:00:00",
                           "calendar": "proleptic_gregorian"}
    values = var.values  # a coordinate: already in memory
    whole = (values.astype("datetime64[ns]").astype("int64") % 10**9 == 0).all()
    enc["dtype"] = "int64" if whole else "float64"
    return enc


def _integer_fill(var: xr.Variable) -> Any:
    """``_FillValue`` of an integer band: its nodata in its dtype, or none."""
    nodata = var.attrs.get("nodata")
    if nodata is None:
        return None
    try:
        value = float(nodata)
    except (TypeError, ValueError):
        return None
    info = np.iinfo(var.dtype)
    if not value.is_integer() or not info.min <= value <= info.max:
        return None
    return var.dtype.type(int(value))


# --------------------------------------------------------------------------- writers


def _write_netcdf(ds: xr.Dataset, tmp: Path, compress: bool = False) -> None:
    prepared, encoding = _prepare(ds, "netcdf", compress)
    prepared.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=encoding, compute=True)


def _write_zarr(ds: xr.Dataset, tmp: Path) -> None:
    prepared, encoding = _prepare(ds, "zarr")
    prepared.to_zarr(
        tmp, mode="w-", zarr_format=2, consolidated=True, encoding=encoding, compute=True
    )


def _lonlat(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray] | None:
    """Longitude/latitude of every (y, x) pixel centre, or None without a CRS."""
    crs = ds.odc.crs
    if crs is None:
        return None

    xx, yy = np.meshgrid(ds["x"].values, ds["y"].values)
    transformer = pyproj.Transformer.from_crs(crs.to_wkt(), "EPSG:4326", always_xy=True)
    lon, lat = transformer.transform(xx, yy)
    return np.asarray(lon).ravel(), np.asarray(lat).ravel()


def _time_block(ds: xr.Dataset) -> int:
    """Dates per block when streaming a table: the dask time chunk, else everything."""
    for arr in ds.data_vars.values():
        if isinstance(arr.data, dsa.Array) and "time" in arr.dims:
            return max(1, int(arr.chunks[arr.dims.index("time")][0]))
    return max(1, ds.sizes.get("time", 1))


def _table_blocks(ds: xr.Dataset) -> Iterator[dict[str, np.ndarray]]:
    """Columns of the long table, one block of dates at a time (each block computed once)."""
    cube_dims = ("time", "y", "x")
    for name, arr in ds.data_vars.items():
        if not set(arr.dims) <= set(cube_dims):
            raise ExportError(
                f"variable {name!r} of feature {ds.attrs.get('feature_id')!r} has dims "
                f"{arr.dims}; CSV/Parquet take (time, y, x) variables only, use NetCDF or Zarr"
            )
    if "time" not in ds.dims:
        ds = ds.expand_dims("time")
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    per_pixel = ny * nx
    lonlat = _lonlat(ds)
    extra = [
        name
        for name, c in ds.coords.items()
        if c.ndim and name not in cube_dims and set(c.dims) <= set(cube_dims)
    ]
    fid = str(ds.attrs.get("feature_id", ""))
    step = _time_block(ds)
    n_times = ds.sizes["time"]
    for start in range(0, max(n_times, 1), step):
        block = ds.isel(time=slice(start, start + step))
        nt = block.sizes["time"]
        template = xr.DataArray(np.empty((nt, ny, nx), "u1"), dims=cube_dims)
        arrays = [
            block[name].broadcast_like(template).transpose(*cube_dims).data
            for name in [*block.data_vars, *extra]
        ]
        values = dask.compute(*arrays)
        n = nt * per_pixel
        cols: dict[str, np.ndarray] = {
            "feature_id": np.full(n, fid, dtype=object),
            "time": np.repeat(block["time"].values, per_pixel),
            "y": np.tile(np.repeat(block["y"].values, nx), nt),
            "x": np.tile(block["x"].values, nt * ny),
        }
        if lonlat is not None:
            cols["lon"] = np.tile(lonlat[0], nt)
            cols["lat"] = np.tile(lonlat[1], nt)
        names = [*block.data_vars, *extra]
        order = extra + list(block.data_vars)  # per-date coordinates first, then the bands
        by_name = dict(zip(names, values, strict=True))
        for name in order:
            cols[str(name)] = np.asarray(by_name[name]).reshape(n)
        yield cols


def _write_csv(ds: xr.Dataset, tmp: Path) -> None:
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        for i, cols in enumerate(_table_blocks(ds)):
            pd.DataFrame(cols).to_csv(
                f, header=i == 0, index=False, date_format="%Y-%m-%dT%H:%M:%S.%f"
            )


def _arrow_type(values: np.ndarray):
    if values.dtype.kind in "OUS":
        return pa.string()
    return pa.from_numpy_dtype(values.dtype)


def _write_parquet(ds: xr.Dataset, tmp: Path) -> None:
    meta = {"attrs": _clean_attrs(ds.attrs)}
    if "spatial_ref" in ds.coords:
        meta["crs_wkt"] = ds.coords["spatial_ref"].attrs.get("crs_wkt")
    meta_text = json.dumps(meta, default=lambda v: np.asarray(v).tolist())
    writer = None
    try:
        for cols in _table_blocks(ds):
            table = pa.table(
                {k: pa.array(v, type=_arrow_type(v), from_pandas=True) for k, v in cols.items()}
            )
            if writer is None:
                schema = table.schema.with_metadata({b"xsits": meta_text.encode()})
                writer = pq.ParquetWriter(tmp, schema, compression="zstd")
            writer.write_table(table.cast(writer.schema))
    finally:
        if writer is not None:
            writer.close()


_WRITERS = {
    "netcdf": _write_netcdf,
    "zarr": _write_zarr,
    "csv": _write_csv,
    "parquet": _write_parquet,
}


def export(
    ds: xr.Dataset | xr.DataArray,
    target: str | os.PathLike,
    format: str | None = None,
    overwrite: bool = False,
    *,
    compress: bool = False,
) -> Path:
    """Write ``ds`` atomically to NetCDF (default), Zarr, CSV or Parquet; return the path.

    Lazy (dask) cubes are computed while writing, block by block, never loaded as a whole
    beforehand. The file appears under its final name only once complete.

    Parameters
    ----------
    ds
        The cube (a DataArray is written as a one-variable Dataset).
    target
        A directory (the file is named ``fid-<feature_id>_<mode>_<start>_<end>.<ext>``, see
        :func:`output_path`) or a file path ending in ``.nc``, ``.zarr``, ``.csv`` or
        ``.parquet``.
    format
        ``"netcdf"``, ``"zarr"``, ``"csv"`` or ``"parquet"``; default: from the suffix of a file
        path, NetCDF for a directory.
    overwrite
        Replace an existing output; otherwise :class:`~xsits.errors.OutputExistsError`.
    compress
        NetCDF: compress the variables (zlib level 1 with shuffle: gap-filled image cubes
        ~3x smaller, but ~3x longer to write, and HDF5 holds the GIL while it compresses).
        Default ``False``, as ``xarray.Dataset.to_netcdf``. Zarr is always compressed
        (Blosc), CSV and Parquet as their writers do.

    Returns
    -------
    pathlib.Path
        The written path (same as :func:`output_path`).

    Raises
    ------
    OutputExistsError
        The output exists and ``overwrite=False``.
    UnsafePathError
        The feature id would make the path escape ``target``.
    ExportError
        Unknown format, missing naming attributes, or (CSV/Parquet) a variable that is not
        on the (time, y, x) grid.

    Examples
    --------
    >>> import tempfile
    >>> import pandas as pd
    >>> from xsits.testing.cubes import make_cube
    >>> ds = make_cube(n_times=2, shape=(2, 3), feature_id="7")
    >>> path = export(ds, tempfile.mkdtemp(), format="parquet")
    >>> table = pd.read_parquet(path)
    >>> len(table), list(table.columns[:6])
    (12, ['feature_id', 'time', 'y', 'x', 'lon', 'lat'])
    >>> int(table.B04.iloc[0]) == int(ds.B04[0, 0, 0])
    True
    """
    if isinstance(ds, xr.DataArray):
        ds = ds.to_dataset(name=ds.name if ds.name is not None else "data", promote_attrs=True)
    path = output_path(ds, target, format)
    fmt = _format_of(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        if fmt == "netcdf":
            _write_netcdf(ds, tmp, compress)
        else:
            _WRITERS[fmt](ds, tmp)
    return path
