"""Small helpers shared by the operation modules (history, band selection)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import xarray as xr

#: Bands that hold classes or flags, never reflectance: never scaled, masked or harmonized.
CLASS_BANDS: frozenset[str] = frozenset({"SCL", "scl", "mask", "label", "labels"})


def reflectance_vars(ds: xr.Dataset, exclude: Iterable[Hashable] = ()) -> list[Hashable]:
    """Names of the data variables that hold reflectance (every band but the class bands).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"B04": ("x", np.ones(2)), "SCL": ("x", np.ones(2, "uint8"))})
    >>> reflectance_vars(ds)
    ['B04']
    """
    skip = set(exclude) | CLASS_BANDS
    return [name for name in ds.data_vars if name not in skip]


def append_history(obj: xr.Dataset | xr.DataArray, entry: str) -> xr.Dataset | xr.DataArray:
    """Return ``obj`` with ``entry`` appended as a new line of ``attrs["history"]``.

    Examples
    --------
    >>> import xarray as xr
    >>> append_history(xr.Dataset(), "xsits.gapfill(method='linear')").attrs["history"]
    "xsits.gapfill(method='linear')"
    """
    old = obj.attrs.get("history", "")
    out = obj.copy(deep=False)
    out.attrs = dict(obj.attrs)
    out.attrs["history"] = f"{old}\n{entry}" if old else entry
    return out
