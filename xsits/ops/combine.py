"""One time series across sensors: cubes of several collections on one grid and one time axis.

Each cube is cloud-masked by its own collection's rule (:func:`xsits.ops.mask.cloud_mask`),
converted to surface reflectance (:func:`xsits.ops.reflectance.to_reflectance`), and its bands
standing for the cross-sensor names (the registry's ``common_bands``: ``blue``, ``green``,
``red``, ``nir``, ``swir16``, ``swir22``) are kept under those names; the dates of all cubes
are then one time axis, each with its ``platform`` and ``sensor`` (the registry's label of
that platform, else its title).

Optionally (``bandpass=True``) Sentinel-2 MSI reflectance is made OLI-like with the linear
bandpass adjustment of HLS: ``OLI = slope * MSI + intercept`` per band and platform
(:data:`BANDPASS`), the coefficients of the HLS v1.4 User Guide (Claverie et al., 2018,
"The Harmonized Landsat and Sentinel-2 surface reflectance data set", Remote Sensing of
Environment 219, 145-161; HLS v1.4 User Guide, table of MSI-to-OLI bandpass adjustment).

Owns: :func:`combine` (lazy; numpy == dask).
Must not: open cubes (:func:`xsits.batch.combined.open_combined` does) or read files.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import odc.geo.xr  # noqa: F401  (registers .odc)
import xarray as xr

from xsits._common import append_history
from xsits.errors import BandError
from xsits.ops.mask import cloud_mask
from xsits.ops.reflectance import REFLECTANCE_ATTR, collection_of, to_reflectance
from xsits.stac.collections import COMMON_BANDS, Collection

#: MSI -> OLI bandpass adjustment ``(slope, intercept)`` per platform and cross-sensor band:
#: HLS v1.4 User Guide (Claverie et al. 2018). Sentinel-2C / 2D: Sentinel-2B's coefficients.
BANDPASS: dict[str, dict[str, tuple[float, float]]] = {
    "Sentinel-2A": {"blue": (0.9778, -0.004), "green": (1.0053, -0.0009),
                    "red": (0.9765, 0.0009), "nir": (0.9983, -0.0001),
                    "swir16": (0.9987, -0.0011), "swir22": (1.003, -0.0012)},
    "Sentinel-2B": {"blue": (0.9778, -0.004), "green": (1.0075, -0.0008),
                    "red": (0.9761, 0.001), "nir": (0.9966, 0.0),
                    "swir16": (1.0, -0.0003), "swir22": (0.9867, 0.0004)},
}


def _crs(ds: xr.Dataset) -> str | None:
    """The CRS a cube is on (odc-geo's ``.odc.crs``), as text; None when it has none."""
    crs = ds.odc.crs
    return None if crs is None else str(crs)


def _fid(cubes: Sequence[xr.Dataset]) -> str:
    return str(cubes[0].attrs.get("feature_id", "?"))


def _bandpass(ds: xr.Dataset) -> xr.Dataset:
    """Sentinel-2 dates made OLI-like (per date, by its platform)."""
    platforms = [str(p) for p in np.asarray(ds["platform"].values).ravel()]
    for name in COMMON_BANDS:
        if name not in ds.data_vars:
            continue
        pairs = [BANDPASS.get(p, BANDPASS["Sentinel-2B"])[name] for p in platforms]
        slope = xr.DataArray(np.array([a for a, _ in pairs], "float32"), dims="time")
        icept = xr.DataArray(np.array([b for _, b in pairs], "float32"), dims="time")
        attrs = ds[name].attrs
        ds[name] = (ds[name] * slope + icept).astype("float32").transpose(*ds[name].dims)
        ds[name].attrs = attrs
    return ds


def _has_mask_band(ds: xr.Dataset, entry: Collection) -> bool:
    """Whether ``ds`` still holds its collection's mask band (under any of its names)."""
    if entry.mask is None:
        return False
    band = entry.band(entry.mask.band)
    names = {n.lower() for n in (band.names if band else (entry.mask.band,))}
    return any(str(v).lower() in names for v in ds.data_vars)


def _common(ds: xr.Dataset, *, dilate: int, bandpass: bool) -> xr.Dataset:
    entry = collection_of(ds)
    if not ds.attrs.get(REFLECTANCE_ATTR) or _has_mask_band(ds, entry):
        ds = cloud_mask(ds, dilate=dilate)  # also a cube converted before: its own rule
    ds = to_reflectance(ds)  # (a converted cube is returned as it is)
    names = {}
    lowered = {str(v).lower(): v for v in ds.data_vars}
    for name in COMMON_BANDS:
        band = entry.band(entry.common_bands.get(name, ""))
        var = next((lowered[n.lower()] for n in (band.names if band else ())
                    if n.lower() in lowered), None)
        if var is not None:
            names[var] = name
    if not names:
        raise BandError(f"feature {ds.attrs.get('feature_id', '?')}: the {entry.id} cube has "
                        f"none of the bands {', '.join(entry.common_bands.values())} standing "
                        f"for {', '.join(COMMON_BANDS)}; load them")
    out = ds[list(names)].rename(names)
    if bandpass and entry.harmonize == "s2-boa-offset":
        out = _bandpass(out)
    platforms = np.asarray(out["platform"].values).ravel() if "platform" in out.coords else \
        np.full(out.sizes["time"], "")
    sensor = np.array([entry.sensors.get(str(p).lower(), entry.title) for p in platforms])
    keep = [c for c in ("platform", "cloud_cover") if c in out.coords]
    out = out.reset_coords([c for c in out.coords if c not in (*keep, "time", "x", "y",
                                                                "spatial_ref")], drop=True)
    return out.assign_coords(sensor=("time", sensor))


def combine(cubes: Sequence[xr.Dataset], *, bandpass: bool = False,
            dilate: int = 0) -> xr.Dataset:
    """One cube from cubes of several collections: one grid, one time axis, common bands.

    Each cube is cloud-masked by its own collection's rule and converted to surface
    reflectance (unless already converted), its cross-sensor bands kept as ``blue``,
    ``green``, ``red``, ``nir``, ``swir16``, ``swir22`` (those it has), then all dates are
    sorted into one time axis with ``platform``, ``sensor`` and ``cloud_cover`` per date.

    Parameters
    ----------
    cubes
        Cubes of one feature on the same grid (``open_cubes`` with the same grid options;
        :func:`xsits.batch.combined.open_combined` opens them), any collections of the registry.
    bandpass
        Make Sentinel-2 reflectance OLI-like (:data:`BANDPASS`, HLS v1.4 / Claverie et al.
        2018); other sensors are unchanged.
    dilate
        Pixels by which each cube's clouds and shadows are grown (:func:`cloud_mask`).

    Returns
    -------
    xarray.Dataset
        ``float32`` reflectance bands, lazy on dask input; ``attrs["collection"]`` lists the
        collections joined by ``+``.

    Raises
    ------
    xsits.errors.BandError
        Grids differ, or a cube has none of the common bands.

    Examples
    --------
    >>> from xsits.testing.cubes import make_cube
    >>> s2 = make_cube(n_times=2, shape=(2, 2), bands=("B02", "B04", "B8A", "SCL"))
    >>> ls = make_cube(n_times=2, shape=(2, 2), start="2024-01-03", bands=("red", "qa_pixel"))
    >>> ls = ls.assign(qa_pixel=ls.qa_pixel.astype("uint16") * 0 + 21824)
    >>> ls.attrs["collection"] = "landsat-c2-l2"
    >>> out = combine([s2, ls])
    >>> sorted(out.data_vars), out.sensor.values.tolist()
    (['blue', 'nir', 'red'], ['Sentinel-2 MSI', 'Landsat OLI', 'Sentinel-2 MSI', 'Landsat OLI'])
    >>> bool(abs(out.red[1, 1, 1] - (int(ls.red[0, 1, 1]) * 2.75e-05 - 0.2)) < 1e-6)
    True
    >>> bool(out.blue[1].isnull().all())  # Landsat gave no blue here
    True
    """
    if not cubes:
        raise BandError("combine() needs at least one cube")
    parts = [_common(ds, dilate=dilate, bandpass=bandpass) for ds in cubes]
    first = parts[0]
    for i, ds in enumerate(parts[1:], 1):
        if ds.sizes.get("x") != first.sizes.get("x") or ds.sizes.get("y") != first.sizes.get(
                "y") or not (np.allclose(ds.x, first.x, rtol=0, atol=1e-6)
                             and np.allclose(ds.y, first.y, rtol=0, atol=1e-6)) \
                or _crs(ds) != _crs(first):
            raise BandError(f"feature {_fid(cubes)}: the cubes are on different grids; open "
                            "them with the same crs, resolution, mode and size")
        parts[i] = ds.assign_coords(x=first.x, y=first.y)
    every = list(dict.fromkeys(n for ds in parts for n in ds.data_vars))
    parts = [ds.assign({n: xr.full_like(ds[next(iter(ds.data_vars))], np.nan, "float32")
                        for n in every if n not in ds.data_vars})[every] for ds in parts]
    out = xr.concat(parts, dim="time", join="exact", combine_attrs="override",
                    coords="different", compat="equals")
    out = out.sortby("time")
    for name in out.data_vars:
        out[name].attrs = {"nodata": float("nan"), "units": "1"}
    ids = list(dict.fromkeys(collection_of(ds).id for ds in cubes))
    out.attrs = {**cubes[0].attrs, "collection": "+".join(ids), REFLECTANCE_ATTR: 1}
    return append_history(out, f"xsits.combine({', '.join(ids)}, bandpass={bandpass}, "
                               f"dilate={dilate})")
