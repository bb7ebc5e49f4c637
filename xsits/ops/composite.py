"""Temporal composites: a regular time axis (monthly, 10-daily...) reduced with flox."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from xsits._common import append_history, as_float
from xsits.errors import GridError
from xsits.stac.collections import CLASS_BANDS

#: Reductions accepted by :func:`composite`.
HOWS: tuple[str, ...] = ("median", "mean", "max", "min", "count")

#: Scene classification classes considered by the ``"mode"`` of class bands (SCL 1..11).
SCL_CLASSES: tuple[int, ...] = tuple(range(1, 12))


def _mode(var: xr.DataArray, periods: dict) -> xr.DataArray:
    """Most frequent class per period (ties: lowest class); 0 (nodata) for empty periods."""
    counts = xr.concat(
        [(var == k).resample(**periods).sum().fillna(0) for k in SCL_CLASSES], dim="_class"
    )
    mode = (counts.argmax("_class") + SCL_CLASSES[0]).where(counts.sum("_class") > 0, 0)
    out = mode.astype(var.dtype).transpose(*var.dims)
    out.attrs = dict(var.attrs)
    return out


def _reduce(var: xr.DataArray, periods: dict, how: str) -> xr.DataArray:
    data = as_float(var)
    out = getattr(data.resample(**periods), how)()
    if how == "count":  # empty periods: 0 observations, not NaN
        out = out.fillna(0).astype("int64")
    out.attrs = dict(data.attrs)
    return out.transpose(*var.dims)


def composite(
    obj: xr.Dataset | xr.DataArray,
    freq: str = "1MS",
    how: str = "median",
    class_bands: str = "drop",
    dim: str = "time",
    origin: str | pd.Timestamp = "start_day",
) -> xr.Dataset | xr.DataArray:
    """Composite onto a regular time axis: one value per period of ``freq``, via flox.

    Uses xarray's flox-backed ``resample`` (``use_flox=True``), lazy on dask input. Periods
    are labelled by their start (``"1MS"``: first of each month). NaN are skipped; empty
    periods are NaN (``count`` gives 0). Integer reflectance bands are first converted to
    ``float32`` with their ``attrs["nodata"]`` (0) as NaN, so nodata never enters a median.

    Per-date coordinates (``platform``, ``processing_baseline``, ``mgrs_tile``,
    ``boa_offset_applied``...) are dropped; the result gets ``n_dates`` (number of
    acquisitions in each period, 0 when empty) and, when present, ``cloud_cover`` (mean over
    the period, NaN when empty) as coordinates along ``time``.

    Parameters
    ----------
    obj
        A cube (masked with :func:`xsits.ops.mask.scl_mask` first, typically) or a single band.
    freq
        pandas offset alias of the periods: ``"1MS"`` monthly, ``"10D"``, ``"QS"``...
    how
        ``"median"``, ``"mean"``, ``"max"``, ``"min"`` or ``"count"`` (valid observations).
    class_bands
        What happens to class bands (``SCL``): ``"drop"`` them, or ``"mode"``: the most
        frequent SCL class 1..11 of the period (ties: lowest class; 0 = nodata only when the
        period has no other class or no date). A single class band DataArray always gets the
        mode.
    dim
        The time dimension.
    origin
        Where fixed-length periods (``"10D"``) start: pandas' ``resample`` ``origin``
        (``"start_day"``: midnight of the first date; ``"epoch"``; or a timestamp, so that
        cubes with different first dates share one axis). Calendar periods (``"1MS"``) ignore it.

    Returns
    -------
    xarray.Dataset or xarray.DataArray
        The composite, with a line appended to ``attrs["history"]``.

    Raises
    ------
    xsits.errors.GridError
        For an unknown ``how`` or ``class_bands``, or a ``freq`` pandas does not understand.

    Examples
    --------
    >>> from xsits.testing.cubes import make_cube
    >>> from xsits.ops.mask import scl_mask
    >>> ds = scl_mask(make_cube(n_times=6, shape=(2, 2), freq="20D"))
    >>> monthly = composite(ds, "1MS", how="count")
    >>> [str(t)[:10] for t in monthly.time.values]
    ['2024-01-01', '2024-02-01', '2024-03-01', '2024-04-01']
    >>> monthly.n_dates.values.tolist()    # acquisitions per month
    [2, 1, 2, 1]
    >>> monthly.B04[:, 0, 0].values.tolist()  # valid ones at a pixel cloudy in Jan, nodata in Apr
    [1, 1, 2, 0]
    """
    if how not in HOWS:
        raise GridError(f"composite: unknown how={how!r}; use one of {', '.join(HOWS)}")
    if class_bands not in ("drop", "mode"):
        raise GridError(f"composite: unknown class_bands={class_bands!r}; use 'drop' or 'mode'")
    try:
        offset = pd.tseries.frequencies.to_offset(freq)
        fixed = isinstance(offset, (pd.offsets.Tick, pd.offsets.Day))  # pandas' own test
        obj[dim].to_index().to_series().resample(freq, origin=origin if fixed else "start_day")
    except (ValueError, TypeError) as err:
        raise GridError(
            f"composite: invalid freq={freq!r} or origin={origin!r} ({err}); use a pandas "
            "offset alias such as '1MS', '10D' or 'QS' and an origin such as 'epoch'"
        ) from None
    # origin only for fixed periods: pandas warns that calendar periods ignore it
    periods = {"indexer": {dim: freq}, **({"origin": origin} if fixed else {})}
    shown = "" if str(origin) == "start_day" else f", origin={str(origin)!r}"
    entry = f"xsits.ops.composite(freq={freq!r}, how={how!r}, class_bands={class_bands!r}{shown})"
    with xr.set_options(use_flox=True):
        if isinstance(obj, xr.DataArray):
            data = obj.reset_coords(drop=True)
            if obj.name in CLASS_BANDS:
                out = _mode(data, periods)
            else:
                out = _reduce(data, periods, how)
            out.name = obj.name
        else:
            data = obj.drop_vars([n for n, c in obj.coords.items() if dim in c.dims and n != dim])
            reduced = {}
            for name, var in data.data_vars.items():
                if dim not in var.dims:
                    reduced[name] = var
                elif name in CLASS_BANDS:
                    if class_bands == "mode":
                        reduced[name] = _mode(var, periods)
                else:
                    reduced[name] = _reduce(var, periods, how)
            out = xr.Dataset(reduced)
        n_dates = xr.ones_like(obj[dim], dtype="int64").resample(**periods).sum()
        extra = {"n_dates": n_dates.fillna(0).astype("int64")}
        if "cloud_cover" in obj.coords and np.issubdtype(obj["cloud_cover"].dtype, np.number):
            extra["cloud_cover"] = obj["cloud_cover"].reset_coords(drop=True).astype(
                "float64").resample(**periods).mean()
        out = out.assign_coords({k: v.reset_coords(drop=True) for k, v in extra.items()})
    for name in ("spatial_ref",):
        if name in obj.coords and name not in out.coords:
            out = out.assign_coords({name: obj[name]})
    out.attrs = dict(obj.attrs)
    return append_history(out, entry)
