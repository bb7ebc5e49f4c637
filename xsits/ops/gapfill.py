"""Temporal gap filling: interpolate the NaNs left by masking along ``time``.

Owns: :func:`gapfill`, its methods (:data:`METHODS`), ``max_gap`` as a count of dates or a
time span, and the linear fallback for pixels with fewer valid dates than a method needs.
Must not: compute (lazy on dask input) or touch integer class bands.
"""

from __future__ import annotations

import datetime as _dt
import functools

import bottleneck
import dask.array
import numpy as np
import pandas as pd
import xarray as xr

from xsits._common import append_history
from xsits.errors import GapfillError
from xsits.stac.collections import CLASS_BANDS

#: Interpolation methods and the valid dates a pixel needs for each (fewer: linear).
METHODS: dict[str, int] = {"linear": 1, "nearest": 1, "zero": 1, "slinear": 1,
                           "quadratic": 3, "cubic": 4, "spline": 4, "barycentric": 1,
                           "krogh": 1, "pchip": 1, "akima": 1, "makima": 1}

MaxGap = int | str | pd.Timedelta | np.timedelta64 | _dt.timedelta | None


def _fillable(var: xr.DataArray, dim: str) -> bool:
    """Float variables along ``dim`` that are not class bands (integers have no NaN)."""
    return (
        dim in var.dims
        and np.issubdtype(var.dtype, np.floating)
        and var.name not in CLASS_BANDS
    )


def _ffill(a: np.ndarray, axis: int) -> np.ndarray:
    """Forward fill of NaNs along ``axis`` (bottleneck, as xarray's ``ffill``)."""
    return bottleneck.push(a, axis=axis)


def _bfill(a: np.ndarray, axis: int) -> np.ndarray:
    flip = (slice(None),) * (axis % a.ndim) + (slice(None, None, -1),)
    return _ffill(a[flip], axis)[flip]


def _edges_kernel(values: np.ndarray, axis: int, dtype: np.dtype) -> np.ndarray:
    """Leading NaNs get the first valid value, trailing NaNs the last one (along ``axis``)."""
    out = np.where(np.isnan(_ffill(values, axis)), _bfill(values, axis), values)
    return np.where(np.isnan(_bfill(values, axis)), _ffill(values, axis), out).astype(dtype)


def _linear_kernel(values: np.ndarray, axis: int, days: np.ndarray,
                   max_gap_days: float | None, edges: bool, dtype: np.dtype,
                   shared: list | None = None, max_gap_steps: int | None = None) -> np.ndarray:
    """Time-weighted linear interpolation of interior NaNs along ``axis`` (and the edges).

    The same values as ``interpolate_na(method="linear", use_coordinate=True)`` (and its
    ``max_gap``: the span between the valid dates around a gap; ``max_gap_steps``: the
    number of missing dates in a gap), then :func:`_edges_kernel`'s
    edges, without one ``np.interp`` call per pixel series: the valid dates before and after
    each position come from two running maxima / minima of date indices, and only the NaN
    positions are computed. ``shared`` (a list, for bands of one cube) keeps those positions
    and weights: bands masked alike (by one ``scl_mask``) reuse them.
    """
    series = np.moveaxis(values, axis, 0)
    n = series.shape[0]
    flat = np.ascontiguousarray(series).reshape(n, -1)  # (time, pixel); no copy usually
    valid = ~np.isnan(flat)
    where = next((w for v, w in shared or () if np.array_equal(v, valid)), None)
    if where is None:
        where = _linear_where(valid, np.asarray(days, dtype="float64"), max_gap_days,
                              max_gap_steps)
        if shared is not None:
            shared.append((valid, where))
    out = flat.astype(dtype, copy=True)
    ti, pi, before, after, weight, keep, has_before, has_after = where
    if ti.size:
        v_prev, v_next = flat[before, pi], flat[after, pi]
        res = v_prev + weight * (v_next - v_prev)  # NaN unless both sides are valid
        if keep is not None:
            res = np.where(keep, res, np.nan)
        if edges:  # before the first valid date: the first value; after the last: the last one
            res = np.where(has_before, res, v_next)
            res = np.where(has_after, res, v_prev)
        out[ti, pi] = res
    return np.moveaxis(out.reshape(series.shape), 0, axis)


def _linear_where(valid: np.ndarray, days: np.ndarray, max_gap_days: float | None,
                  max_gap_steps: int | None = None) -> tuple:
    """For the NaN positions of a ``(time, pixel)`` array: the valid dates around each.

    ``(date, pixel, date before, date after, weight, kept, has before, has after)``; dates
    without a valid side are clamped to the first / last date (NaN there, as wanted).
    """
    n = valid.shape[0]
    ti, pi = np.nonzero(~valid)  # the NaN positions: (date, pixel)
    if not ti.size:
        return ti, pi, None, None, None, None, None, None
    order = np.arange(n, dtype="int32")[:, None]
    before = np.maximum.accumulate(np.where(valid, order, -1), axis=0)[ti, pi]
    after = np.minimum.accumulate(np.where(valid, order, n)[::-1], axis=0)[::-1][ti, pi]
    has_before, has_after = before >= 0, after < n
    before, after = np.maximum(before, 0), np.minimum(after, n - 1)
    t_prev, t_next = days[before], days[after]
    span = t_next - t_prev
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = np.where(span > 0, (days[ti] - t_prev) / span, 0.0)
    keep = None if max_gap_days is None else span <= max_gap_days
    if max_gap_steps is not None:
        keep = after - before - 1 <= max_gap_steps
    return ti, pi, before, after, weight, keep, has_before, has_after


def _long_gaps_kernel(values: np.ndarray, axis: int, max_steps: int,
                      dtype: np.dtype) -> np.ndarray:
    """True at the NaNs of interior gaps of more than ``max_steps`` dates (along ``axis``)."""
    series = np.moveaxis(values, axis, 0)
    flat = np.ascontiguousarray(series).reshape(series.shape[0], -1)
    ti, pi, before, after, _, _, has_before, has_after = _linear_where(
        ~np.isnan(flat), np.zeros(flat.shape[0]), None)
    out = np.zeros(flat.shape, dtype=bool)
    if ti.size:
        out[ti, pi] = has_before & has_after & (after - before - 1 > max_steps)
    return np.moveaxis(out.reshape(series.shape), 0, axis)


def _blockwise(kernel, var: xr.Variable, dim: str, **kwargs) -> xr.Variable:
    """``kernel(values, axis=..., **kwargs)`` along ``dim`` of a Variable (numpy or dask)."""
    fill = functools.partial(kernel, axis=var.get_axis_num(dim), **kwargs)
    data = var.data
    if isinstance(data, dask.array.Array):  # interpolation needs the whole series per block
        out = data.rechunk({fill.keywords["axis"]: -1}).map_blocks(fill, dtype=kwargs["dtype"])
    else:
        out = fill(np.asarray(data))
    return var.copy(deep=False, data=out)


def _check(obj: xr.Dataset | xr.DataArray, method: str, max_gap: MaxGap, edges: bool,
           dim: str) -> int | pd.Timedelta | None:
    """``max_gap`` as a count of dates (int) or a span (Timedelta); raise on bad arguments."""
    if not isinstance(method, str) or method not in METHODS:
        raise GapfillError(f"method={method!r} is not a gap-filling method; use one of "
                           f"{', '.join(METHODS)}")
    if not isinstance(edges, bool):
        raise GapfillError(f"edges={edges!r} must be True or False")
    if dim not in obj.dims:
        raise GapfillError(f"dim={dim!r} is not a dimension of the cube {tuple(obj.dims)}; "
                           "pass dim='time'")
    if max_gap is None:
        return None
    if isinstance(max_gap, int | np.integer) and not isinstance(max_gap, bool | np.bool_):
        if max_gap < 0:
            raise GapfillError(f"max_gap={max_gap!r} must be >= 0 dates, e.g. max_gap=3")
        return int(max_gap)
    if isinstance(max_gap, str | pd.Timedelta | np.timedelta64 | _dt.timedelta):
        try:
            span = pd.Timedelta(max_gap)
        except (ValueError, TypeError):
            span = pd.NaT
        if not pd.isna(span) and span >= pd.Timedelta(0):
            if not np.issubdtype(obj[dim].dtype, np.datetime64):
                raise GapfillError(f"max_gap={max_gap!r} is a time span but {dim!r} holds no "
                                   "dates; give a count of dates, e.g. max_gap=3")
            return span
    raise GapfillError(f"max_gap={max_gap!r} must be a count of dates (int, e.g. 3) or a time "
                       "span (e.g. '20D')")


def _fill_one(
    var: xr.DataArray,
    dim: str,
    method: str,
    max_gap: int | pd.Timedelta | None,
    edges: bool,
    shared: list | None = None,
) -> xr.Variable:
    """One band filled, as a Variable (on the band's own coordinates).

    ``max_gap``: a count of dates or a span, checked by :func:`_check`. ``shared``: see
    :func:`_linear_kernel` (numpy data only: dask blocks are filled apart).
    """
    steps = max_gap if isinstance(max_gap, int) else None
    span = None if steps is not None else max_gap
    if method == "linear" and np.issubdtype(var[dim].dtype, np.datetime64):
        times = var[dim].values
        days = (times - times[0]) / np.timedelta64(1, "D")
        gap = None if span is None else span / pd.Timedelta("1D")
        lazy = isinstance(var.data, dask.array.Array)
        return _blockwise(_linear_kernel, var.variable, dim, days=days, max_gap_days=gap,
                          edges=edges, dtype=var.dtype, shared=None if lazy else shared,
                          max_gap_steps=steps)
    data = var.reset_coords(drop=True)  # per-date coordinates would be compared (computed)
    if data.chunks is not None:  # interpolation needs the whole series in one chunk
        data = data.chunk({dim: -1})
    need = METHODS[method]
    rich = data.notnull().sum(dim) >= need if need > 1 else None
    source = data if rich is None else data.where(rich)  # too few dates: all NaN, left alone
    out = source.interpolate_na(dim=dim, method=method, max_gap=span,
                                use_coordinate=True).variable
    if steps is not None:
        out = out.where(~_blockwise(_long_gaps_kernel, data.variable, dim, max_steps=steps,
                                    dtype=bool))
    if edges:
        out = _blockwise(_edges_kernel, out, dim, dtype=var.dtype)
    if rich is not None:  # pixels with fewer valid dates than the method needs: linear
        linear = _fill_one(var, dim, "linear", max_gap, edges)
        out = out.where(rich.variable, linear)
    out = out.astype(var.dtype)
    out.attrs = dict(var.attrs)
    return out


def gapfill(
    obj: xr.Dataset | xr.DataArray,
    method: str = "linear",
    max_gap: MaxGap = None,
    edges: bool = True,
    dim: str = "time",
) -> xr.Dataset | xr.DataArray:
    """Fill NaNs along time by interpolation, weighted by the actual dates.

    Uses :meth:`xarray.DataArray.interpolate_na` along ``dim`` with the time coordinate
    (dates at days 0, 10, 30 with values 1, NaN, 4 give 2.0 at day 10); ``"linear"`` along a
    datetime axis computes the same values from vectorised ``ffill``/``bfill`` (about 4x
    faster than ``interpolate_na``'s per-pixel ``np.interp``). On dask input the
    time axis is merged into one chunk, lazily (spatial chunks are kept). Only float
    variables are filled: integer class bands (``SCL``) and unmasked integer bands are
    returned unchanged.

    Parameters
    ----------
    obj
        A cube or a single band.
    method
        Interpolation method of ``interpolate_na`` (:data:`METHODS`): ``"linear"``,
        ``"nearest"``, ``"slinear"``, ``"quadratic"``, ``"cubic"``, ``"pchip"``,
        ``"akima"``... A pixel with fewer valid dates than the method needs (3 for
        ``"quadratic"``, 4 for ``"cubic"`` and ``"spline"``) is filled linearly instead.
    max_gap
        Largest gap to fill: a count of consecutive missing dates (``3``), or a time span
        (``"20D"``, ``pd.Timedelta``...: the span between the valid dates around the gap).
        Longer interior gaps stay NaN entirely. ``None`` fills every interior gap.
    edges
        Also fill NaNs before the first valid date with the first valid value and after the
        last valid date with the last one (nearest valid value; not limited by ``max_gap``).
        Pixels without any valid date stay NaN.
    dim
        The time dimension.

    Returns
    -------
    xarray.Dataset or xarray.DataArray
        Same type, dims, dtypes and coordinates, with a line appended to ``attrs["history"]``.

    Raises
    ------
    xsits.errors.GapfillError
        An unknown method, a ``max_gap`` that is neither a count nor a span, a missing ``dim``.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> time = pd.to_datetime(["2024-01-01", "2024-01-11", "2024-01-31", "2024-02-10"])
    >>> da = xr.DataArray([np.nan, 1.0, np.nan, 4.0], dims="time", coords={"time": time})
    >>> gapfill(da).values.tolist()                  # day 30 between day 10 (1) and day 40 (4)
    [1.0, 1.0, 3.0, 4.0]
    >>> gapfill(da, edges=False).values.tolist()
    [nan, 1.0, 3.0, 4.0]
    >>> gapfill(da, max_gap="20D").values.tolist()   # the 30-day gap is too long
    [1.0, 1.0, nan, 4.0]
    >>> gapfill(da, max_gap=1).values.tolist()       # one missing date: filled
    [1.0, 1.0, 3.0, 4.0]
    """
    entry = f"xsits.ops.gapfill(method={method!r}, max_gap={max_gap!r}, edges={edges})"
    gap = _check(obj, method, max_gap, edges, dim)
    if isinstance(obj, xr.DataArray):
        out = obj.copy(deep=False, data=_fill_one(obj, dim, method, gap, edges).data) \
            if _fillable(obj, dim) else obj
        return append_history(out, entry)
    shared: list = []  # bands masked alike share the positions to fill
    updates = {
        name: _fill_one(var, dim, method, gap, edges, shared)
        for name, var in obj.data_vars.items()
        if _fillable(var, dim)
    }
    out = obj.assign(updates)
    out.attrs = dict(obj.attrs)
    return append_history(out, entry)
