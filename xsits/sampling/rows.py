"""Points' rows: read windows of pixels through the steps into per-point columns, then a table.

The cubes of points (or the windows read without cubes, :mod:`xsits.cube.points`) are turned
into one :class:`Rows` per point: the steps run on the cube (pixelwise steps on many points'
cubes side by side, :func:`side_by_side`), the indices are added, each window is reduced to
a value per date, and ``masked`` says which dates had no clear pixel. :func:`assemble` makes
one table of all points' rows, in AOI order.

Owns: :class:`Rows`, running the steps and indices on point windows (:func:`batch_rows`) and
the table's columns (:func:`assemble`).
Must not: search, read files or choose what is read when (:mod:`xsits.sampling.read`),
check :func:`xsits.sample`'s arguments or write the table.

Examples
--------
>>> import numpy as np, xarray as xr
>>> cube = xr.Dataset({"B04": (("time", "y", "x"), np.arange(18.0).reshape(2, 3, 3))},
...                   coords={"time": np.array(["2024-06-01", "2024-06-06"], "M8[ns]")})
>>> rows = batch_rows(cube, 1, [], 3, "mean", [], (8, 9))
>>> rows[0].values["B04"].tolist()
[4.0, 13.0]
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr

from xsits._common import as_float
from xsits.cube.dates import time_coords
from xsits.cube.load import GroupPlan
from xsits.cube.plan import band_attrs
from xsits.cube.points import Batch
from xsits.errors import SampleError
from xsits.ops import steps as steps_mod
from xsits.ops.indices import indices as compute_indices
from xsits.ops.mask import DEFAULT_CLASSES
from xsits.stac.collections import CLASS_BANDS, asset_scale

__all__ = ["Rows", "assemble", "batch_cube", "batch_rows", "dates_key", "keep_rows",
           "scl_classes", "side_by_side"]


class Rows(NamedTuple):
    """One feature's columns: dates, bands (and indices), ``masked``, per-date coordinates."""

    time: np.ndarray
    values: dict[str, np.ndarray]
    masked: np.ndarray | None
    per_date: dict[str, np.ndarray]


def scl_classes(steps: Sequence[Callable]) -> tuple[int, ...]:
    """The SCL classes masked by the steps' ``scl_mask`` (its defaults when there is none)."""
    for step in steps:
        if isinstance(step, steps_mod.scl_mask) and step.classes is not None:
            return tuple(step.classes)
    return DEFAULT_CLASSES


def dates_key(ds: xr.Dataset) -> tuple:
    """Cubes with equal keys have the same dates, per-date coordinates and variables."""
    coords = tuple((str(k), c.values.tobytes()) for k, c in sorted(ds.coords.items())
                   if c.dims == ("time",))
    variables = tuple((str(k), str(v.dtype), v.dims) for k, v in ds.data_vars.items())
    return coords, variables, tuple(ds.sizes.items())


def side_by_side(cubes: Sequence[xr.Dataset]) -> xr.Dataset:
    """Cubes of the same dates as one cube, concatenated along ``x`` (no x/y coordinates).

    What pixelwise steps (:attr:`xsits.ops.steps.Step.pixelwise`) can run on at once: their
    result at a pixel depends only on its series and the per-date coordinates.
    """
    if len(cubes) == 1:
        return cubes[0]
    first = cubes[0]
    data = {name: (var.dims, np.concatenate([c[name].values for c in cubes],
                                            axis=var.get_axis_num("x")), var.attrs)
            for name, var in first.data_vars.items()}
    coords = {k: c.variable for k, c in first.coords.items() if not {"x", "y"} & set(c.dims)}
    return xr.Dataset(data, coords=coords, attrs=first.attrs)


def _points(var: xr.DataArray, n: int, reduce: str | None) -> np.ndarray:
    """``(time, n)`` values of ``n`` windows side by side: the centre pixel, or ``reduce``."""
    if set(var.dims) != {"time", "y", "x"}:
        raise SampleError(f"sample: variable {var.name!r} has dims {var.dims} after the steps; "
                          "sample takes (time, y, x) cubes")
    ny, nx = var.sizes["y"], var.sizes["x"] // n
    if reduce is None:
        return var.transpose("time", "y", "x").values.reshape(-1, ny, n, nx)[:, ny // 2, :,
                                                                             nx // 2]
    values = as_float(var).transpose("time", "y", "x").values.reshape(-1, ny, n, nx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # windows without a valid pixel
        return getattr(np, f"nan{reduce}")(values, axis=(1, 3)).astype(values.dtype)


def _unclear(raw: xr.Dataset, classes: tuple[int, ...]) -> np.ndarray | None:
    """``(time, y, x)``: the pixels that are not clear, else None.

    SCL in ``classes``; in a cube of several sensors (each masked by its own rule already):
    NaN in every band.
    """
    if "SCL" in raw.data_vars:
        return np.isin(raw["SCL"].transpose("time", "y", "x").values, classes)
    if "sensor" in raw.coords and raw.data_vars:
        return np.logical_and.reduce([np.isnan(v.transpose("time", "y", "x").values)
                                      for v in raw.data_vars.values()])
    return None


def batch_rows(raw: xr.Dataset, n: int, steps: Sequence[Callable], window: int,
                reduce: str, indices: Sequence[str], classes: tuple[int, ...]) -> list[Rows]:
    """The steps, the indices and the windows' reduction on ``n`` windows side by side."""
    ds = raw
    for step in steps:
        ds = step(ds)
    if indices:
        ds = ds.assign(compute_indices(ds, list(indices)).data_vars)
    ds = ds.compute()  # a step may have returned lazy data (of these small numpy cubes)
    values = {str(name): _points(var, n, None if window == 1 or name in CLASS_BANDS
                                 else reduce)
              for name, var in ds.data_vars.items()}
    times = ds["time"].values
    masked = None
    where = pd.Index(raw["time"].values).get_indexer(times)
    bad = _unclear(raw, classes)
    if bad is not None and (where >= 0).all():  # the steps kept acquisition dates
        bad = bad.reshape(bad.shape[0], bad.shape[1], n, -1)
        masked = bad.all(axis=(1, 3))[where]  # (time, point): no clear pixel in the window
    per_date = {str(k): c.values for k, c in ds.coords.items()
                if c.dims == ("time",) and k != "time"}
    return [Rows(times, {k: v[:, i] for k, v in values.items()},
                  None if masked is None else masked[:, i], per_date) for i in range(n)]


def keep_rows(fids: Sequence[str], got_rows: Sequence[Rows], rows: dict[str, Rows],
          missing: dict[str, str]) -> None:
    """File each feature's rows, or why it has none."""
    for fid, got in zip(fids, got_rows, strict=True):
        if len(got.time):
            rows[fid] = got
        else:
            missing[fid] = "no date left after the steps"


def batch_cube(gp: GroupPlan, batch: Batch) -> xr.Dataset:
    """Points read side by side as one cube: what :func:`side_by_side` makes of cubes."""
    plan = gp.items
    groups = [[plan.items[i] for i in g] for g in batch.groups]
    times = np.array([plan.parsed[g[0]].nominal_datetime.replace(tzinfo=None)
                      for g in batch.groups], dtype="datetime64[ns]")
    data = {gp.renames.get(b, b): (("time", "y", "x"), arr,
                                   {**band_attrs(plan, b), **asset_scale(plan.items, b)})
            for b, arr in batch.values.items()}
    return xr.Dataset(data, coords={"time": times, **time_coords(groups)},
                      attrs={"collection": gp.search.query.collection})


def _concat_per_date(pieces: Sequence[np.ndarray]) -> Any:
    """One per-date column of many points; strings without a copy per row.

    The pieces are the per-date coordinates of each point, the same few arrays over and over
    (points with the same dates share them): strings are taken from their distinct values by
    index, not concatenated as fixed-width unicode.
    """
    if pieces[0].dtype.kind != "U":
        return np.concatenate(pieces)
    ids: dict[int, int] = {}
    for p in pieces:
        ids.setdefault(id(p), len(ids))
    distinct = list({id(p): p for p in pieces}.values())
    starts = np.cumsum([0] + [len(p) for p in distinct])
    values = pd.array(np.concatenate(distinct), dtype="str")
    codes = np.concatenate([np.arange(starts[ids[id(p)]], starts[ids[id(p)]] + len(p))
                            for p in pieces])
    return values.take(codes)


def assemble(aoi: gpd.GeoDataFrame, columns: list[str], rows: Mapping[str, Rows],
              geometry: bool) -> pd.DataFrame:
    """One DataFrame in AOI order (see :func:`sample` for its columns)."""
    lonlat = aoi.geometry.to_crs("EPSG:4326")
    at_of: dict[tuple, list[int]] = {}  # features with the same columns, built at once
    for i, fid in enumerate(aoi["feature_id"]):
        if fid in rows:
            g = rows[fid]
            at_of.setdefault((g.masked is None, tuple(g.values), tuple(g.per_date)),
                             []).append(i)
    parts = []
    for at in at_of.values():
        got = [rows[aoi["feature_id"].iloc[i]] for i in at]
        rep = np.repeat(np.array(at, dtype=int), [len(g.time) for g in got])
        part = {"feature_id": aoi["feature_id"].to_numpy(dtype=object)[rep]}
        part.update({str(c): aoi[c].to_numpy()[rep] for c in columns})
        part["time"] = np.concatenate([g.time for g in got])
        part.update({k: np.concatenate([g.values[k] for g in got]) for k in got[0].values})
        part["lon"] = lonlat.x.to_numpy()[rep]
        part["lat"] = lonlat.y.to_numpy()[rep]
        if got[0].masked is not None:
            part["masked"] = np.concatenate([g.masked for g in got])
        part.update({k: _concat_per_date([g.per_date[k] for g in got]) for k in got[0].per_date})
        if geometry:
            part["geometry"] = aoi.geometry.to_numpy()[rep]
        part["_at"] = rep
        parts.append(pd.DataFrame(part, copy=False))
    if len(parts) > 1:  # back to the AOI's order
        parts = [pd.concat(parts, ignore_index=True).sort_values("_at", kind="stable")]
    parts = [p.drop(columns="_at") for p in parts]
    if parts:
        df = pd.concat(parts, ignore_index=True)
    else:
        df = pd.DataFrame({"feature_id": pd.Series([], dtype=object),
                           **{str(c): aoi[c].iloc[:0] for c in columns},
                           "time": pd.Series([], dtype="datetime64[ns]")})
    for col in columns:  # categories, nullable ints... as in the AOI
        df[str(col)] = df[str(col)].astype(aoi[col].dtype)
    if geometry:
        return gpd.GeoDataFrame(df, geometry="geometry" if parts else None, crs=aoi.crs)
    return df
