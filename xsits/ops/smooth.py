"""Temporal smoothing of each pixel's series: Savitzky-Golay (scipy) or Whittaker (sparse solve).

Owns: :func:`smooth` and its two kernels, applied along ``time`` with
:func:`xarray.apply_ufunc` (``dask="parallelized"``, the whole series of a pixel in one
chunk), so numpy and dask input give the same values.
Must not: resample or fill dates on its own (that is :mod:`xsits.ops.composite` and
:mod:`xsits.ops.gapfill`); both methods treat the dates as equally spaced, as R sits and scipy do.

Examples
--------
>>> import numpy as np, pandas as pd, xarray as xr
>>> da = xr.DataArray([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0], dims="time",
...                   coords={"time": pd.date_range("2024-01-01", periods=7, freq="10D")})
>>> smooth(da, "savgol", window=3, polyorder=1).round(3).values.tolist()[1:-1]
[0.333, 0.667, 0.333, 0.667, 0.333]
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import xarray as xr
from scipy.sparse.linalg import splu

from xsits._common import append_history, as_float
from xsits.errors import GridError
from xsits.stac.collections import CLASS_BANDS

#: Smoothing methods of :func:`smooth`.
METHODS: tuple[str, ...] = ("savgol", "whittaker")
#: ``mode`` values of :func:`scipy.signal.savgol_filter` (how the ends are handled).
SAVGOL_MODES: tuple[str, ...] = ("interp", "mirror", "constant", "nearest", "wrap")


def _savgol_kernel(values: np.ndarray, window: int, polyorder: int, mode: str) -> np.ndarray:
    """:func:`scipy.signal.savgol_filter` along the last axis, in float64, back to the dtype.

    scipy refuses NaN (``mode="interp"``) or spreads them unevenly: series with NaN are
    filtered twice, with the NaN as 0 and as 1, and the values that differ (those whose
    window holds a NaN, ends included) are NaN.
    """
    from scipy.signal import savgol_filter  # heavy: imported on use (+0.5 s to import xsits)

    flat = values.reshape(-1, values.shape[-1]).astype("float64")
    holes = np.isnan(flat)
    gappy = holes.any(axis=-1)
    out = np.empty_like(flat)
    if (~gappy).any():
        out[~gappy] = savgol_filter(flat[~gappy], window, polyorder, axis=-1, mode=mode)
    if gappy.any():
        sub, where = flat[gappy], holes[gappy]
        low = savgol_filter(np.where(where, 0.0, sub), window, polyorder, axis=-1, mode=mode)
        high = savgol_filter(np.where(where, 1.0, sub), window, polyorder, axis=-1, mode=mode)
        out[gappy] = np.where(low == high, low, np.nan)
    return out.reshape(values.shape).astype(values.dtype)


def _difference_penalty(n: int, order: int):
    """``D'D`` of the ``order``-th differences of ``n`` equally spaced values (sparse CSC)."""
    coefs = np.diff(np.eye(order + 1), order, axis=0)[0]  # order 2: [1, -2, 1]
    d = sp.diags(list(coefs), offsets=list(range(order + 1)), shape=(n - order, n))
    return (d.T @ d).tocsc()


def _whittaker_kernel(values: np.ndarray, lam: float, order: int) -> np.ndarray:
    """Weighted Whittaker smoother along the last axis: ``(W + lam D'D) z = W y``.

    Weights are 1 at valid values and 0 at NaN (Eilers 2003: missing values are filled by
    the smoother). Series sharing a pattern of valid dates share one sparse LU factorisation
    (:func:`scipy.sparse.linalg.splu`), solved for all of them at once. A series with fewer
    than ``order`` valid values has no unique solution: it stays NaN.
    """
    n = values.shape[-1]
    if n <= order:  # nothing to penalise
        return values.copy()
    flat = values.reshape(-1, n).astype("float64")
    valid = ~np.isnan(flat)
    out = np.full_like(flat, np.nan)
    penalty = lam * _difference_penalty(n, order)
    patterns, which = np.unique(valid, axis=0, return_inverse=True)
    which = which.reshape(-1)
    for k, weights in enumerate(patterns):
        if weights.sum() < order:
            continue
        rows = np.flatnonzero(which == k)
        lu = splu((sp.diags(weights.astype("float64")) + penalty).tocsc())
        rhs = np.where(weights, flat[rows], 0.0).T  # (time, series)
        out[rows] = lu.solve(np.ascontiguousarray(rhs)).T
    return out.reshape(values.shape).astype(values.dtype)


def _smoothable(var: xr.DataArray, dim: str) -> bool:
    """Reflectance-like variables along ``dim``: not class bands, numeric."""
    return dim in var.dims and var.name not in CLASS_BANDS and var.dtype.kind in "iuf"


def _smooth_one(var: xr.DataArray, dim: str, kernel, kwargs: dict) -> xr.DataArray:
    data = as_float(var)
    if data.chunks is not None:  # a pixel's whole series in one chunk, lazily
        data = data.chunk({dim: -1})
    out = xr.apply_ufunc(
        kernel, data, kwargs=kwargs, input_core_dims=[[dim]], output_core_dims=[[dim]],
        dask="parallelized", output_dtypes=[data.dtype], keep_attrs=True,
    ).transpose(*var.dims)
    out.attrs = dict(data.attrs)
    return out


def _check(method: str, n: int, window: int, polyorder: int, mode: str, lam: float,
           order: int) -> None:
    if method not in METHODS:
        raise GridError(f"smooth: unknown method={method!r}; use one of {', '.join(METHODS)}")
    if method == "savgol":
        for name, value in (("window", window), ("polyorder", polyorder)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise GridError(f"smooth: {name}={value!r} must be an integer, e.g. 5")
        if mode not in SAVGOL_MODES:
            raise GridError(f"smooth: unknown mode={mode!r}; use one of "
                            f"{', '.join(SAVGOL_MODES)}")
        if not 0 <= polyorder < window:
            raise GridError(f"smooth: polyorder={polyorder} must be >= 0 and below "
                            f"window={window}; e.g. window=5, polyorder=3")
        if mode == "interp" and window > n:
            raise GridError(f"smooth: window={window} is longer than the series ({n} dates); "
                            f"use window <= {n} or mode='mirror'")
    else:
        if not isinstance(lam, (int, float, np.number)) or not lam > 0:
            raise GridError(f"smooth: lam={lam!r} must be a positive number, e.g. 0.5")
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
            raise GridError(f"smooth: order={order!r} must be a positive integer, e.g. 2")


def smooth(
    obj: xr.Dataset | xr.DataArray,
    method: str = "savgol",
    *,
    window: int = 5,
    polyorder: int = 3,
    mode: str = "interp",
    lam: float = 0.5,
    order: int = 2,
    dim: str = "time",
) -> xr.Dataset | xr.DataArray:
    """Smooth every pixel's series along time: Savitzky-Golay or Whittaker.

    - ``"savgol"``: :func:`scipy.signal.savgol_filter` (a polynomial of degree ``polyorder``
      fitted in a moving window of ``window`` dates; the ends by ``mode``). Defaults are R
      sits' ``sits_sgolay(order = 3, length = 5)``. NaN spread to every value whose window
      holds one: gap-fill first (:func:`xsits.ops.gapfill.gapfill`).
    - ``"whittaker"``: the Whittaker smoother (Eilers 2003), the ``z`` minimising
      ``sum w (y - z)^2 + lam * sum (Δ^order z)^2``, solved as the sparse system
      ``(W + lam D'D) z = W y``. Weights are 0 at NaN, so gaps are filled by the smoother
      (a series with fewer than ``order`` valid dates stays NaN). Defaults are R sits'
      ``sits_whittaker(lambda = 0.5)`` (second differences); larger ``lam`` smooths more.

    Both treat consecutive dates as equally spaced (a composite, :func:`xsits.ops.composite`,
    gives a regular axis). Integer reflectance bands become ``float32`` with their
    ``attrs["nodata"]`` as NaN; class bands (``SCL``) are returned unchanged. Values are
    computed in float64 and returned in the band's float dtype. Lazy on dask input (the time
    axis is merged into one chunk; spatial chunks are kept), with the same values as numpy.

    Parameters
    ----------
    obj
        A cube or a single band.
    method
        ``"savgol"`` (default) or ``"whittaker"``.
    window, polyorder, mode
        Savitzky-Golay: window length in dates, polynomial degree (< ``window``) and the
        treatment of the ends (``"interp"``, ``"mirror"``, ``"nearest"``, ``"constant"``,
        ``"wrap"``: scipy's). With ``"interp"``, ``window`` must not exceed the series.
    lam, order
        Whittaker: smoothing parameter (> 0) and order of the differences penalised.
    dim
        The time dimension.

    Returns
    -------
    xarray.Dataset or xarray.DataArray
        Same type, dims and coordinates, with a line appended to ``attrs["history"]``.

    Raises
    ------
    xsits.errors.GridError
        Unknown method or mode, or parameters the method cannot use.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> from scipy.signal import savgol_filter
    >>> y = np.array([1.0, 3.0, 2.0, 5.0, 4.0, 6.0, 5.0, 8.0])
    >>> da = xr.DataArray(y, dims="time",
    ...                   coords={"time": pd.date_range("2024-01-01", periods=8, freq="5D")})
    >>> bool(np.allclose(smooth(da).values, savgol_filter(y, 5, 3)))
    True
    >>> w = smooth(da.where(da != 5.0), "whittaker", lam=10.0)  # NaN filled by the smoother
    >>> w.round(2).values.tolist()
    [1.16, 1.98, 2.78, 3.66, 4.61, 5.65, 6.73, 7.82]
    """
    n = int(obj.sizes.get(dim, 0))
    _check(method, n, window, polyorder, mode, lam, order)
    if method == "savgol":
        kernel, kwargs = _savgol_kernel, {"window": int(window), "polyorder": int(polyorder),
                                          "mode": mode}
        entry = f"xsits.ops.smooth(method='savgol', window={window}, polyorder={polyorder}, " \
                f"mode={mode!r})"
    else:
        kernel, kwargs = _whittaker_kernel, {"lam": float(lam), "order": int(order)}
        entry = f"xsits.ops.smooth(method='whittaker', lam={lam}, order={order})"
    if isinstance(obj, xr.DataArray):
        out = _smooth_one(obj, dim, kernel, kwargs) if _smoothable(obj, dim) else obj
        return append_history(out, entry)
    updates = {name: _smooth_one(var, dim, kernel, kwargs)
               for name, var in obj.data_vars.items() if _smoothable(var, dim)}
    out = obj.assign(updates)
    out.attrs = dict(obj.attrs)
    return append_history(out, entry)
