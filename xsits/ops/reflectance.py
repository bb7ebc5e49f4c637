"""Physical values: DN * scale + offset, per band, by the cube's collection.

Owns: :func:`to_reflectance` and :func:`physical` (one band): the scale and offset of a band
are its ``raster:bands``' (recorded by the loader in the band's ``attrs["scale"]`` /
``attrs["offset"]``) else the registry's (:mod:`xsits.stac.collections`); Sentinel-2 is
harmonized first (:func:`xsits.ops.harmonize.harmonize`: its +1000 offset is decided per
date, not by ``raster:bands``) and then scaled by 1e-4. Landsat Collection 2 surface
reflectance: ``DN * 2.75e-05 - 0.2``; HLS: ``DN * 1e-4``. Nodata becomes NaN.
Must not: mask clouds (:mod:`xsits.ops.mask`) or know a collection but through the registry.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import xarray as xr

from xsits._common import append_history
from xsits.errors import BandError
from xsits.ops.harmonize import harmonize
from xsits.stac.collections import CLASS_BANDS, Collection, lookup

#: Attribute set on cubes in physical values (a second call is a no-op; indices do not scale).
REFLECTANCE_ATTR = "xsits_reflectance"
#: Band roles converted to physical values (never ``mask`` / ``qa``).
PHYSICAL_ROLES = frozenset({"reflectance", "temperature", "atmosphere", "angle"})


def collection_of(ds: xr.Dataset) -> Collection:
    """The registry entry of a cube (``attrs["collection"]``; none: Sentinel-2 L2A).

    Raises
    ------
    xsits.errors.BandError
        The collection is not in the registry.

    Examples
    --------
    >>> collection_of(xr.Dataset(attrs={"collection": "landsat-c2-l2"})).id
    'landsat-c2-l2'
    """
    name = ds.attrs.get("collection") or "sentinel-2-l2a"
    entry = lookup(str(name))
    if entry is None:
        raise BandError(f"feature {ds.attrs.get('feature_id', '?')}: collection {name!r} is not "
                        "in xsits.stac.collections; add its entry (bands with scale / offset) "
                        "or scale the bands yourself")
    return entry


def scale_of(var: xr.DataArray, entry: Collection) -> tuple[float, float] | None:
    """``(scale, offset)`` of a band: its ``raster:bands``', else the registry's; None: keep.

    Sentinel-2 (harmonized by :func:`to_reflectance`) always takes the registry's.

    Examples
    --------
    >>> from xsits.stac.collections import lookup
    >>> da = xr.DataArray([1], name="red", attrs={"scale": 2.75e-05, "offset": -0.2})
    >>> scale_of(da, lookup("landsat-c2-l2"))
    (2.75e-05, -0.2)
    >>> scale_of(xr.DataArray([1], name="B04"), lookup("hls2-s30"))  # no raster:bands
    (0.0001, 0.0)
    """
    band = entry.band(var.name)
    if band is None or band.role not in PHYSICAL_ROLES or var.name in CLASS_BANDS:
        return None
    if entry.harmonize is None and "scale" in var.attrs:
        return float(var.attrs["scale"]), float(var.attrs.get("offset", 0.0))
    return band.scale, band.offset


def physical(var: xr.DataArray, scale: float, offset: float) -> xr.DataArray:
    """``var * scale + offset`` as ``float32``, ``attrs["nodata"]`` -> NaN (lazy).

    Examples
    --------
    >>> da = xr.DataArray(np.array([0, 10000], "uint16"), dims="x", attrs={"nodata": 0})
    >>> physical(da, 2.75e-05, -0.2).values.astype("float64").round(4).tolist()
    [nan, 0.075]
    """
    data = var.astype("float32")
    nodata = var.attrs.get("nodata")
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        data = data.where(var != nodata)
    out = (data * np.float32(scale) + np.float32(offset)).astype("float32")
    out.attrs = {k: v for k, v in var.attrs.items() if k not in ("scale", "offset")}
    out.attrs["nodata"] = float("nan")
    return out


def to_reflectance(ds: xr.Dataset) -> xr.Dataset:
    """Bands in physical values: surface reflectance 0..1, temperature, degrees (``float32``).

    Per band ``DN * scale + offset`` (:func:`scale_of`: the items' ``raster:bands``, else the
    registry): Landsat Collection 2 SR ``DN * 2.75e-05 - 0.2``, HLS ``DN * 1e-4``;
    Sentinel-2 is harmonized first (the +1000 offset of baseline >= 04.00 removed where the
    date carries it) then ``DN * 1e-4``; temperatures as their collection gives them
    (Landsat ``lwir11`` in kelvin, HLS L30 ``B10`` / ``B11`` in degrees Celsius). Nodata
    becomes NaN; class / QA bands and bands the registry does not know are kept; a cube
    converted before is returned as it is. Lazy on dask input.

    Parameters
    ----------
    ds
        A cube, masked or not (:func:`xsits.ops.mask.cloud_mask` works before or after).

    Returns
    -------
    xarray.Dataset
        With ``attrs["xsits_reflectance"] = 1`` (a second call returns it unchanged) and a
        line appended to ``attrs["history"]``.

    Raises
    ------
    xsits.errors.BandError
        The cube's collection is not in the registry.

    Examples
    --------
    >>> from xsits.testing.cubes import make_cube
    >>> ds = make_cube(n_times=1, shape=(2, 2), baseline="05.11")
    >>> out = to_reflectance(ds)
    >>> bool(abs(out.B04[0, 1, 1] - (int(ds.B04[0, 1, 1]) - 1000) / 1e4) < 1e-6)
    True
    >>> str(out.B04.dtype), str(out.SCL.dtype), bool(out.B04[0, 0, 0].isnull())
    ('float32', 'uint8', True)
    """
    if ds.attrs.get(REFLECTANCE_ATTR):
        return ds
    entry = collection_of(ds)
    if entry.harmonize == "s2-boa-offset":
        ds = harmonize(ds)
    updates: dict[Hashable, xr.DataArray] = {}
    done = []
    for name in ds.data_vars:
        factors = scale_of(ds[name], entry)
        if factors is None:
            continue
        updates[name] = physical(ds[name], *factors)
        done.append(f"{name}*{factors[0]:g}{factors[1]:+g}")
    out = ds.assign(updates)
    out.attrs = dict(ds.attrs)
    out.attrs[REFLECTANCE_ATTR] = 1
    return append_history(out, f"xsits.to_reflectance({entry.id}: {', '.join(done)})")
