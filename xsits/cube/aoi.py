"""Read areas of interest (points or polygons) into a GeoDataFrame with a safe ``feature_id``.

The first step of the data flow: ``aoi → search → load``. Every feature gets a string
``feature_id`` that is safe to use as a file name, so the outputs of a batch can never escape
their directory.

Owns: reading and checking AOIs (file, layer, columns, CRS, coordinates, geometries, ids):
every problem is an :class:`~xsits.errors.AOIError` naming the file, row or feature.
Must not: reproject, search or read pixels.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj

from xsits.errors import AOIError, FeatureIdError

#: Feature ids must match this: letters, digits, ``.``, ``_``, ``-``; no leading dot; <= 128.
SAFE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")

_LONLAT_NAMES = (("lon", "lat"), ("longitude", "latitude"), ("lng", "lat"), ("x", "y"))


def check_feature_id(fid: str, where: str = "") -> str:
    """Return ``fid`` if it is safe as a file name, else raise :class:`FeatureIdError`.

    Examples
    --------
    >>> check_feature_id("plot-7")
    'plot-7'
    >>> check_feature_id("../x")
    Traceback (most recent call last):
    ...
    xsits.errors.FeatureIdError: feature id '../x' is not safe as a file name: ...
    """
    if not SAFE_ID.match(fid) or fid in {".", ".."}:
        raise FeatureIdError(
            f"feature id {fid!r}{where} is not safe as a file name: use 1-128 letters, digits, "
            "'.', '_' or '-' (not starting with '.'); clean the ids or choose another id_column"
        )
    return fid


def _as_id(value: object) -> str:
    """Turn an id cell into a string: ``7.0 -> '7'``, ``None -> ''``."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def _check_crs(crs: object, name: str) -> None:
    """Raise :class:`AOIError` unless pyproj knows ``crs`` (None: nothing to check)."""
    if crs is None:
        return

    try:
        pyproj.CRS.from_user_input(crs)
    except (pyproj.exceptions.CRSError, TypeError, ValueError) as err:
        msg = " ".join(str(err).split())[:160]
        raise AOIError(f"AOI {name}: crs={crs!r} is not a CRS pyproj knows ({msg}); pass e.g. "
                       "crs=4326 for lon/lat degrees or crs='EPSG:32632'") from None


def _read_csv(path: Path, x: str | None, y: str | None, crs: object) -> gpd.GeoDataFrame:
    try:
        df = pd.read_csv(path)
    except UnicodeDecodeError as err:
        raise AOIError(f"AOI file '{path}' is not UTF-8 text (byte {err.object[err.start]:#04x} "
                       f"at position {err.start}); save it as UTF-8") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        msg = " ".join(str(err).split())
        raise AOIError(f"AOI file '{path}' is not a readable CSV ({msg}); fix the file") from None
    if df.empty:
        raise AOIError(f"AOI file '{path}' has no rows; add at least one feature")
    if (x is None) != (y is None):
        raise AOIError(f"AOI file '{path}': x={x!r}, y={y!r}; pass both coordinate columns "
                       f"(its columns are {list(df.columns)})")
    if x is None and y is None:
        cols = {c.lower(): c for c in df.columns}
        for xn, yn in _LONLAT_NAMES:
            if xn in cols and yn in cols:
                x, y = cols[xn], cols[yn]
                break
    if x is None or y is None:
        raise AOIError(
            f"AOI file '{path}' has no lon/lat (or x/y) columns: its columns are "
            f"{list(df.columns)}; pass x='<lon column>', y='<lat column>' "
            "(CLI: --x-column, --y-column)"
        )
    missing = [c for c in (x, y) if c not in df.columns]
    if missing:
        raise AOIError(
            f"AOI file '{path}' has no column {missing[0]!r}: its columns are "
            f"{list(df.columns)}; pass x='<lon column>', y='<lat column>' "
            "(CLI: --x-column, --y-column)"
        )
    if crs is None:
        if (str(x).lower(), str(y).lower()) in _LONLAT_NAMES[:3]:
            crs = "EPSG:4326"
        else:
            raise AOIError(
                f"AOI file '{path}': the CRS of columns {x!r}/{y!r} is unknown; pass crs= "
                "(e.g. crs=4326 for lon/lat degrees)"
            )
    coords = {}
    for col in (x, y):
        num = pd.to_numeric(df[col], errors="coerce")
        bad = num.isna() | ~np.isfinite(num.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise AOIError(
                f"AOI file '{path}', row {row + 2}: column {col!r} has a non-numeric value "
                f"{df[col].iloc[row]!r}; fix or remove that row"
            )
        coords[col] = num
    return gpd.GeoDataFrame(
        df, geometry=gpd.points_from_xy(coords[x], coords[y]), crs=crs
    )


def _json_problem(path: Path) -> str | None:
    """Why a (Geo)JSON file is not UTF-8 JSON text, or None when it is."""
    try:
        json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        return (f"is not UTF-8 text (byte {err.object[err.start]:#04x} at position "
                f"{err.start}); save it as UTF-8")
    except json.JSONDecodeError as err:
        return f"is not valid JSON ({err.msg}: line {err.lineno}, column {err.colno}); fix it"
    return None


def _read_vector(path: Path, layer: str | int | None) -> gpd.GeoDataFrame:
    if path.is_file() and path.stat().st_size == 0:
        raise AOIError(f"AOI file '{path}' is empty (0 bytes); give a file with features")
    try:
        gdf = gpd.read_file(path, layer=layer)
    except Exception as err:  # pyogrio raises several types for unreadable files
        why = _json_problem(path) if path.suffix.lower() in (".json", ".geojson") else None
        if why:
            raise AOIError(f"AOI file '{path}' {why}") from None
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise AOIError(
            f"AOI file '{path}' cannot be read as a vector layer ({msg}); "
            "check it is valid GeoJSON / GPKG / Shapefile, or a CSV with x/y columns"
        ) from None
    if not isinstance(gdf, gpd.GeoDataFrame):
        where = f"layer {layer!r}" if layer is not None else "its first layer"
        raise AOIError(f"AOI file '{path}': {where} has no geometry column (a table of "
                       f"{list(gdf.columns)}); give a layer with geometries (layer=...) or a "
                       "CSV with lon/lat columns")
    return gdf


def _check_coordinates(gdf: gpd.GeoDataFrame, name: str) -> None:
    if not gdf.crs.is_geographic:
        return
    b = gdf.geometry.bounds
    bad = (b.minx < -180) | (b.maxx > 180) | (b.miny < -90) | (b.maxy > 90)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise AOIError(
            f"AOI {name}, feature {gdf['feature_id'].iloc[i]!r}: coordinates "
            f"{tuple(round(v, 4) for v in b.iloc[i])} are outside lon -180..180 / lat -90..90; "
            "are x and y swapped, or is the CRS wrong?"
        )


def _validity(gdf: gpd.GeoDataFrame) -> pd.Series:
    """Why each geometry cannot be used ('' when it can)."""
    geom = gdf.geometry
    reason = pd.Series("", index=gdf.index, dtype=object)
    reason[~geom.isna() & ~geom.is_empty & ~geom.is_valid] = "invalid geometry (self-intersecting?)"
    reason[geom.isna() | geom.is_empty] = "empty geometry"
    return reason


def read_aoi(
    source: str | os.PathLike | gpd.GeoDataFrame,
    *,
    id_column: str | None = None,
    x: str | None = None,
    y: str | None = None,
    crs: object = None,
    layer: str | int | None = None,
    on_invalid: Literal["raise", "drop"] = "raise",
) -> gpd.GeoDataFrame:
    """Read an AOI (GeoJSON, GPKG, Shapefile, CSV of x/y, or a GeoDataFrame).

    Parameters
    ----------
    source
        Path to a vector file readable by pyogrio, a ``.csv`` with coordinate columns, or a
        GeoDataFrame.
    id_column
        Column holding the feature ids. Default: ``feature_id`` or ``id`` if present, else the
        row number (``"0"``, ``"1"``...). Ids become strings (``7.0`` → ``"7"``).
    x, y
        CSV coordinate columns. Default: ``lon``/``lat``, ``longitude``/``latitude`` or ``x``/``y``.
    crs
        CRS of the CSV coordinates, or of a vector file that has none. Lon/lat column names imply
        EPSG:4326. Nothing is reprojected.
    layer
        Layer of a multi-layer file (GPKG).
    on_invalid
        ``"raise"`` (default) on an empty or invalid geometry, or ``"drop"`` it and record
        ``{feature_id: reason}`` in ``gdf.attrs["dropped"]`` (what the batch engine does).

    Returns
    -------
    geopandas.GeoDataFrame
        All input attributes plus a string ``feature_id`` column, in the input CRS.

    Raises
    ------
    xsits.errors.AOIError
        Missing/unreadable file, empty layer, missing columns, non-numeric or out-of-range
        coordinates, missing CRS, invalid or empty geometry.
    xsits.errors.FeatureIdError
        Empty, duplicated or unsafe (``../x``, ``a/b``) feature ids.

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely.geometry import Point
    >>> gdf = gpd.GeoDataFrame({"pt_id": [7, 8]}, geometry=[Point(8.49, 49.85), Point(8.41, 53.1)],
    ...                        crs=4326)
    >>> read_aoi(gdf, id_column="pt_id")["feature_id"].tolist()
    ['7', '8']
    """
    if on_invalid not in ("raise", "drop"):
        raise AOIError(f"on_invalid={on_invalid!r} is not known; use 'raise' or 'drop'")
    if isinstance(source, gpd.GeoDataFrame):
        name = "GeoDataFrame"
        _check_crs(crs, name)
        gdf = source.copy()
        if gdf.crs is None and crs is not None:
            gdf = gdf.set_crs(crs)
    else:
        if not isinstance(source, str | os.PathLike):
            raise AOIError(f"aoi={source!r} must be a file path or a GeoDataFrame, e.g. "
                           "'points.geojson'")
        path = Path(source)
        name = f"file '{path}'"
        if not path.exists():
            raise AOIError(f"AOI file '{path}' does not exist; check the path")
        if path.is_dir() and path.suffix.lower() not in (".gdb", ".shp"):
            raise AOIError(f"AOI file '{path}' is a directory; give the AOI file inside it")
        _check_crs(crs, name)
        if path.suffix.lower() == ".csv":
            gdf = _read_csv(path, x, y, crs)
        else:
            gdf = _read_vector(path, layer)
            if gdf.crs is None and crs is not None:
                gdf = gdf.set_crs(crs)
    if len(gdf) == 0:
        raise AOIError(f"AOI {name} has no features (empty layer); add at least one feature")
    if gdf.crs is None:
        raise AOIError(f"AOI {name} has no CRS; pass crs= (e.g. crs=4326 for lon/lat degrees)")

    if id_column is None:
        id_column = next((c for c in ("feature_id", "id") if c in gdf.columns), None)
    if id_column is None:
        ids = [str(i) for i in range(len(gdf))]
    elif id_column not in gdf.columns:
        raise AOIError(
            f"AOI {name} has no column {id_column!r}; its columns are "
            f"{[c for c in gdf.columns if c != gdf.geometry.name]}; pass another id_column"
        )
    else:
        ids = [_as_id(v) for v in gdf[id_column]]
    for row, fid in enumerate(ids):
        check_feature_id(fid, where=f" (row {row})")
    dup = pd.Series(ids)[pd.Series(ids).duplicated()]
    if len(dup):
        raise FeatureIdError(
            f"AOI {name}: feature id {dup.iloc[0]!r} appears more than once; ids must be unique "
            "(choose another id_column or deduplicate)"
        )
    gdf["feature_id"] = ids
    gdf = gdf.reset_index(drop=True)

    reasons = _validity(gdf)
    bad = reasons != ""
    if bad.any():
        if on_invalid == "raise":
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise AOIError(
                f"AOI {name}, feature {ids[i]!r}: {reasons.iloc[i]}; fix it (e.g. shapely "
                "make_valid) or pass on_invalid='drop'"
            )
        dropped = dict(zip(gdf.loc[bad, "feature_id"], reasons[bad], strict=True))
        gdf = gdf.loc[~bad].reset_index(drop=True)
        gdf.attrs["dropped"] = dropped
    _check_coordinates(gdf, name)
    return gdf
