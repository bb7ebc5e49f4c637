"""Radar backscatter in decibels.

Owns: :func:`to_db`, linear backscatter (Sentinel-1 RTC gamma naught ``vv``, ``vh``...) to
decibels, ``10 * log10(value)``; pixels that have no decibel value (zero, negative, NaN or the
band's nodata) become NaN.
Must not: read files or the network, or touch a band that is not backscatter.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import xarray as xr

from xsits._common import append_history
from xsits.errors import BandError

#: Polarisations recognised as backscatter bands (any case) when ``bands`` is not given.
SAR_BANDS: tuple[str, ...] = ("vv", "vh", "hh", "hv")
#: ``attrs["units"]`` of a band in decibels (:func:`to_db` skips it).
DB_UNITS = "dB"


def backscatter_vars(ds: xr.Dataset) -> list[Hashable]:
    """The backscatter bands of a cube: variables named like :data:`SAR_BANDS` (any case).

    Examples
    --------
    >>> ds = xr.Dataset({"VV": ("x", [1.0]), "vh": ("x", [1.0]), "B04": ("x", [1])})
    >>> backscatter_vars(ds)
    ['VV', 'vh']
    """
    return [name for name in ds.data_vars if str(name).lower() in SAR_BANDS]


def to_db(ds: xr.Dataset, bands: Sequence[Hashable] | None = None) -> xr.Dataset:
    """Backscatter in decibels: ``10 * log10(value)``, NaN where the value is not positive.

    Zero, negative and NaN values and the band's ``attrs["nodata"]`` (Sentinel-1 RTC:
    -32768) become NaN. Floating-point bands keep their dtype, integer bands become
    ``float32``; ``attrs["units"]`` is ``"dB"`` and ``attrs["nodata"]`` NaN. A band whose
    units are already ``"dB"`` is left as it is, so a second call changes nothing. Lazy on
    dask input.

    Parameters
    ----------
    ds
        A cube.
    bands
        The bands to convert. Default: every band named ``vv``, ``vh``, ``hh`` or ``hv``
        (any case, :data:`SAR_BANDS`).

    Returns
    -------
    xarray.Dataset
        The cube with those bands in decibels and a line appended to ``attrs["history"]``.

    Raises
    ------
    xsits.errors.BandError
        A band asked is missing, or ``bands`` is not given and the cube has no backscatter
        band.

    Examples
    --------
    >>> ds = xr.Dataset({"vv": (("time", "x"), np.array([[0.1, 1.0, 0.0, -32768]],
    ...                                                "float32"), {"nodata": -32768})})
    >>> out = to_db(ds)
    >>> out.vv.values.tolist(), out.vv.dtype.name, out.vv.attrs["units"]
    ([[-10.0, 0.0, nan, nan]], 'float32', 'dB')
    >>> to_db(out).vv.equals(out.vv)
    True
    """
    fid = ds.attrs.get("feature_id", "?")
    names = list(bands) if bands is not None else backscatter_vars(ds)
    if not names:
        raise BandError(f"feature {fid}: no backscatter band ({', '.join(SAR_BANDS)}) in the "
                        f"cube (it has {', '.join(map(str, ds.data_vars)) or 'no band'}); "
                        "load one (open_cubes(..., bands=['vv', 'vh'])) or name them "
                        "(to_db(bands=[...]))")
    missing = [name for name in names if name not in ds.data_vars]
    if missing:
        raise BandError(f"feature {fid}: band {missing[0]!r} is missing (the cube has "
                        f"{', '.join(map(str, ds.data_vars))}); ask for a band it has")
    updates = {}
    done = []
    for name in names:
        band = ds[name]
        if band.attrs.get("units") == DB_UNITS:
            continue
        values = band if np.issubdtype(band.dtype, np.floating) else band.astype("float32")
        valid = values > 0
        nodata = band.attrs.get("nodata")
        if nodata is not None and not np.isnan(float(nodata)):
            valid = valid & (values != nodata)
        db = (10 * np.log10(values.where(valid))).astype(values.dtype)
        updates[name] = db.assign_attrs({**band.attrs, "units": DB_UNITS, "nodata": np.nan})
        done.append(str(name))
    if not updates:
        return ds
    out = ds.assign(updates)
    return append_history(out, f"to_db(bands={done})")


__all__ = ["to_db", "backscatter_vars", "SAR_BANDS", "DB_UNITS"]
