"""Stacked patches: many equal-size cubes as one lazy Dataset with dims (feature, time, y, x).

Owns: :func:`stack`, the layout of a training set of patches (one feature per dask chunk,
ready for Zarr, xbatcher or a PyTorch ``DataLoader``) and how the time axes of the features
are aligned (a common composite axis, or the union of their dates).
Must not: read pixels or write files (``stacked.sits.export("train.zarr")`` writes it, see
:mod:`xsits.out.export`), or cut patches (that is :func:`xsits.ops.patch.to_patch`).

Examples
--------
>>> from xsits.testing.cubes import make_cube
>>> cubes = {f: make_cube(feature_id=f, n_times=3, shape=(4, 4)) for f in ("a", "b")}
>>> st = stack(cubes)
>>> dict(st.sizes), st.feature.values.tolist()
({'feature': 2, 'time': 3, 'y': 4, 'x': 4}, ['a', 'b'])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from xsits._common import append_history
from xsits.errors import AOIError, BandError, GridError
from xsits.ops.composite import composite

if TYPE_CHECKING:
    import geopandas as gpd

#: Cube attributes that differ per feature: coordinates along ``feature`` (when numbers or
#: text), never attributes of the stack.
PER_FEATURE_ATTRS: tuple[str, ...] = ("feature_id", "crs", "center_x", "center_y", "geometry")
#: Names an AOI column cannot take (they are dims or coordinates of the stack).
RESERVED: frozenset[str] = frozenset({"feature", "time", "y", "x", "easting", "northing",
                                      "crs", "center_x", "center_y", "observed", "n_dates"})


def _fill(var: xr.DataArray) -> Any:
    """The value of a date a feature does not have: NaN, nodata (0), False or ''."""
    kind = var.dtype.kind
    if kind == "f":
        return np.nan
    if kind in "iu":
        nodata = var.attrs.get("nodata", 0)
        return 0 if nodata is None or (isinstance(nodata, float) and np.isnan(nodata)) \
            else nodata
    if kind == "b":
        return False
    if kind == "M":
        return np.datetime64("NaT")
    return ""


def _check(cubes: Mapping[str, xr.Dataset]) -> tuple[int, int]:
    """The common ``(ny, nx)``; the same variables everywhere."""
    if not isinstance(cubes, Mapping) or not cubes:
        raise GridError("stack: pass a non-empty dict of cubes {feature_id: Dataset} "
                        "(e.g. xsits.open_cubes(..., mode='patch'))")
    first_id, first = next(iter(cubes.items()))
    shape = (first.sizes.get("y"), first.sizes.get("x"))
    names = set(first.data_vars)
    for fid, ds in cubes.items():
        if not isinstance(ds, xr.Dataset) or "time" not in ds.dims:
            raise GridError(f"stack: cubes[{fid!r}] is not a cube with a time dimension")
        got = (ds.sizes.get("y"), ds.sizes.get("x"))
        if got != shape:
            raise GridError(f"stack: feature {fid!r} is {got[1]}x{got[0]} pixels, feature "
                            f"{first_id!r} {shape[1]}x{shape[0]}; stack equal patches "
                            "(open_cubes(mode='patch', size=...) or ds.sits.to_patch(w, h))")
        if set(ds.data_vars) != names:
            raise BandError(f"stack: feature {fid!r} has variables {sorted(map(str, ds.data_vars))}"
                            f", feature {first_id!r} {sorted(map(str, names))}; select the same "
                            "bands in every cube")
    return shape


def _aoi_columns(aoi: gpd.GeoDataFrame, fids: Sequence[str],
                 columns: Sequence[str] | None) -> dict[str, np.ndarray]:
    """The AOI's attribute columns (``columns``: default all but geometry), in ``fids`` order."""
    if "feature_id" not in aoi.columns:
        raise AOIError("stack: the AOI has no feature_id column; read it with xsits.read_aoi")
    table = aoi.drop(columns=[aoi.geometry.name]) if hasattr(aoi, "geometry") else aoi
    table = pd.DataFrame(table).set_index("feature_id")
    wanted = [c for c in table.columns] if columns is None else list(columns)
    for col in wanted:
        if col not in table.columns:
            raise AOIError(f"stack: AOI column {col!r} not found (columns: "
                           f"{', '.join(map(str, table.columns))}); fix columns=")
        if str(col) in RESERVED:
            raise AOIError(f"stack: AOI column {col!r} would clash with a coordinate of the "
                           f"stack; rename it (aoi.rename(columns={{{col!r}: 'label'}}))")
    missing = [f for f in fids if f not in table.index]
    if missing:
        raise AOIError(f"stack: feature {missing[0]!r} is not in the AOI; pass the AOI the "
                       "cubes were opened from")
    rows = table.loc[list(fids), wanted]
    out = {}
    for col in wanted:
        values = rows[col]
        if values.dtype.kind in "biufM":
            out[str(col)] = values.to_numpy()
        elif pd.api.types.is_numeric_dtype(values):  # nullable Int64 / Float64 / boolean
            out[str(col)] = values.to_numpy(dtype="float64", na_value=np.nan)
        else:
            out[str(col)] = np.array(["" if pd.isna(v) else str(v) for v in values], dtype=str)
    return out


def _prepared(ds: xr.Dataset, freq: str | None, how: str,
              origin: pd.Timestamp | None) -> xr.Dataset:
    """One cube on the common time axis, its grid moved to ``easting``/``northing``."""
    if freq is not None:

        ds = composite(ds, freq=freq, how=how, origin=origin)
        ds = ds.assign_coords(observed=ds["n_dates"] > 0)
    else:
        ds = ds.assign_coords(observed=("time", np.ones(ds.sizes["time"], dtype=bool)))
    easting, northing = ds["x"].values, ds["y"].values
    ds = ds.drop_vars([n for n in ("x", "y", "spatial_ref") if n in ds.variables])
    return ds.assign_coords(easting=("x", easting), northing=("y", northing))


def stack(
    cubes: Mapping[str, xr.Dataset],
    aoi: gpd.GeoDataFrame | None = None,
    *,
    columns: Sequence[str] | None = None,
    freq: str | None = None,
    how: str = "median",
) -> xr.Dataset:
    """Stack equal-size patch cubes into one lazy Dataset with dims ``(feature, time, y, x)``.

    The time axes of the features are aligned in one of two ways:

    - ``freq`` (e.g. ``"1MS"``, ``"10D"``): every cube is composited
      (:func:`xsits.ops.composite.composite` with ``how``) onto one regular axis, starting at the
      earliest date of all cubes (``origin``); periods a feature does not cover are empty.
      Class bands (``SCL``) are dropped, as ``composite`` does.
    - ``freq=None`` (default): the union of all acquisition times (exact timestamps: features
      of different tiles or orbits rarely share one, so prefer ``freq`` for training sets). A
      feature's missing dates are NaN in float bands and ``attrs["nodata"]`` (0) in integer
      bands (``SCL``, unmasked ``uint16``); per-date coordinates get NaN, ``""`` or False.

    Coordinates: ``feature`` (the ids, in the order of ``cubes``), ``observed``
    ``(feature, time)`` (True where the feature has a date / a non-empty period), the
    per-date coordinates as ``(feature, time)``, ``easting (feature, x)`` and
    ``northing (feature, y)`` (pixel centres of each patch in its own CRS), ``crs``,
    ``center_x``, ``center_y`` along ``feature``, and the AOI's attribute columns (labels)
    along ``feature``. Attributes equal in every cube are kept. Data variables are dask arrays
    chunked one feature per chunk (all dates and pixels), so
    ``stacked.sits.export("train.zarr")`` writes one Zarr chunk per feature.

    Parameters
    ----------
    cubes
        ``{feature_id: cube}`` of equal ``y``/``x`` sizes and the same variables, e.g.
        ``xsits.open_cubes(..., mode="patch")`` after the cleaning steps.
    aoi
        The AOI GeoDataFrame the cubes were opened from (:func:`xsits.read_aoi`), for its
        attribute columns. Default ``None``: none.
    columns
        AOI columns to keep. Default: all but the geometry.
    freq, how
        Composite period and reduction (see above); ``freq=None``: union of dates.

    Returns
    -------
    xarray.Dataset
        Lazy, dims ``(feature, time, y, x)``, with a line appended to ``attrs["history"]``.

    Raises
    ------
    xsits.errors.GridError
        No cube, cubes of different sizes, no time dimension, or a bad ``freq`` / ``how``.
    xsits.errors.BandError
        The cubes do not have the same variables.
    xsits.errors.AOIError
        An AOI column is missing or clashes with a coordinate, or a feature is not in the AOI.

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely.geometry import Point
    >>> from xsits.testing.cubes import make_cube
    >>> cubes = {"a": make_cube(feature_id="a", n_times=4, shape=(2, 2), start="2024-01-01"),
    ...          "b": make_cube(feature_id="b", n_times=4, shape=(2, 2), start="2024-01-21")}
    >>> aoi = gpd.GeoDataFrame({"feature_id": ["a", "b"], "crop": ["maize", "wheat"]},
    ...                        geometry=[Point(9, 49.6), Point(9, 49.6)], crs=4326)
    >>> st = stack(cubes, aoi)                     # the union of dates
    >>> st.sizes["time"], st.observed.values.astype(int).tolist()
    (6, [[1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1]])
    >>> st.crop.values.tolist(), st.B04.chunks[0]
    (['maize', 'wheat'], (1, 1))
    >>> monthly = stack(cubes, aoi, freq="1MS")    # a regular axis
    >>> [str(t)[:7] for t in monthly.time.values], monthly.n_dates.values.tolist()
    (['2024-01', '2024-02'], [[4, 0], [2, 2]])
    """
    _check(cubes)
    fids = [str(f) for f in cubes]
    origin = None
    if freq is not None:
        origin = min(pd.Timestamp(ds["time"].values.min()) for ds in cubes.values()
                     if ds.sizes["time"]).floor("D")
    prepared = [_prepared(ds, freq, how, origin) for ds in cubes.values()]
    times = pd.DatetimeIndex(sorted(set().union(*(ds["time"].values for ds in prepared))))
    if freq is not None and len(times):  # a regular axis, empty periods included
        times = pd.date_range(times[0], times[-1], freq=freq)
    prepared = [_prepared_on(ds, times) for ds in prepared]
    out = xr.concat(prepared, dim="feature", data_vars="all", coords="all", compat="equals",
                    join="exact", combine_attrs="drop")
    per_feature: dict[str, Any] = {"feature": np.array(fids, dtype=str)}
    for key in PER_FEATURE_ATTRS[1:4]:
        values = [ds.attrs.get(key) for ds in cubes.values()]
        if all(v is not None for v in values):
            per_feature[key] = np.array(values, dtype=str if key == "crs" else "float64")
    if aoi is not None:
        per_feature.update(_aoi_columns(aoi, fids, columns))
    out = out.assign_coords({k: ("feature", v) for k, v in per_feature.items()})
    out = out.assign({name: var.chunk({"feature": 1, "time": -1, "y": -1, "x": -1})
                      for name, var in out.data_vars.items()})
    out = out.transpose("feature", "time", "y", "x", ...)
    attrs = [ds.attrs for ds in cubes.values()]
    out.attrs = {k: v for k, v in attrs[0].items() if k not in PER_FEATURE_ATTRS
                 and all(k in a and _same(a[k], v) for a in attrs[1:])}
    return append_history(out, f"xsits.stack(features={len(fids)}, freq={freq!r}"
                               + (f", how={how!r})" if freq is not None else ")"))


def _prepared_on(ds: xr.Dataset, times: pd.DatetimeIndex) -> xr.Dataset:
    """``ds`` reindexed on ``times``: missing dates get :func:`_fill` values."""
    if len(ds["time"]) == len(times) and bool((ds["time"].values == times.values).all()):
        return ds
    fills = {name: _fill(var) for name, var in ds.variables.items() if name != "time"}
    return ds.reindex(time=times, fill_value=fills)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(np.all(a == b))
    except (TypeError, ValueError):
        return False
