"""Spectral indices (NDVI, EVI, NDWI...) computed with spyndex (optional extra ``indices``).

Bands are taken in physical values: a cube already converted (:func:`xsits.ops.reflectance.
to_reflectance`, or a combined cube) as it is; else each band's scale and offset from the
registry of its collection (Landsat ``DN * 2.75e-05 - 0.2``, HLS and harmonized Sentinel-2
``DN * 1e-4``). Which band is which spyndex symbol comes from the registry's common names.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Hashable, Iterable, Mapping

import numpy as np
import xarray as xr

from xsits._common import append_history
from xsits.errors import BandError, IndexNameError, MissingDependencyError
from xsits.ops.harmonize import needs_offset
from xsits.ops.reflectance import REFLECTANCE_ATTR, collection_of, physical, scale_of
from xsits.stac.collections import COMMON_BANDS, Collection

#: Default band name -> spyndex standard band symbol, for Sentinel-2 asset names as loaded by
#: xsits (``B04``) and their common-name aliases (``red``).
S2_BANDS: dict[str, str] = {
    "B01": "A", "B02": "B", "B03": "G", "B04": "R", "B05": "RE1", "B06": "RE2",
    "B07": "RE3", "B08": "N", "B8A": "N2", "B11": "S1", "B12": "S2",
    "coastal": "A", "blue": "B", "green": "G", "red": "R", "rededge1": "RE1",
    "rededge2": "RE2", "rededge3": "RE3", "nir": "N", "nir08": "N2", "swir16": "S1",
    "swir22": "S2",
}


#: STAC ``eo:bands`` common name -> spyndex symbol.
COMMON_SYMBOLS: dict[str, str] = {"coastal": "A", "blue": "B", "green": "G", "red": "R",
                                  "nir": "N", "nir08": "N2", "swir16": "S1", "swir22": "S2"}


def band_symbols(entry: Collection) -> dict[str, str]:
    """Band name -> spyndex symbol for a collection, from its common names.

    The band standing for the cross-sensor ``nir`` is ``N`` when no band's common name is
    ``nir`` (Landsat's ``nir08``, HLS L30's ``B05``).

    Examples
    --------
    >>> from xsits.stac.collections import lookup
    >>> s = band_symbols(lookup("landsat-c2-l2"))
    >>> s["red"], s["nir08"]
    ('R', 'N')
    >>> band_symbols(lookup("sentinel-2-l2a"))["B8A"]
    'N2'
    """
    out: dict[str, str] = dict(S2_BANDS) if entry.harmonize == "s2-boa-offset" else {}
    for band in entry.bands:
        symbol = COMMON_SYMBOLS.get(band.common or "")
        for name in band.names if symbol else ():
            out.setdefault(name, symbol)  # type: ignore[arg-type]
    for name in COMMON_BANDS:
        band = entry.band(entry.common_bands.get(name, ""))
        if band is not None and COMMON_SYMBOLS[name] not in out.values():
            out.update(dict.fromkeys(band.names, COMMON_SYMBOLS[name]))
    return out


def _spyndex():
    try:
        import spyndex
    except ImportError:
        raise MissingDependencyError(
            "spectral indices need spyndex: pip install 'xsits[indices]'"
        ) from None
    return spyndex


def _reflectance(var: xr.DataArray, scale: float) -> xr.DataArray:
    """DN -> reflectance 0..1 as float32; integer ``attrs["nodata"]`` pixels -> NaN."""
    data = var if np.issubdtype(var.dtype, np.floating) else var.astype("float32")
    nodata = var.attrs.get("nodata")
    if not np.issubdtype(var.dtype, np.floating) and nodata is not None:
        data = data.where(var != nodata)
    return data / np.float32(scale)


def _band_reflectance(var: xr.DataArray, scale: float | None,
                      entry: Collection | None) -> xr.DataArray:
    """A band as reflectance 0..1: as it is, ``DN / scale``, or by the registry."""
    if scale is not None:
        return _reflectance(var, scale)
    if entry is None:
        return var if np.issubdtype(var.dtype, np.floating) else _reflectance(var, 1.0)
    factors = scale_of(var, entry)
    if factors is None:  # a band the registry does not know: its surface reflectance scale
        ref = next((b for b in entry.bands if b.role == "reflectance"), None)
        if ref is None:  # no reflectance at all (radar backscatter): the values as they are
            return var if np.issubdtype(var.dtype, np.floating) else _reflectance(var, 1.0)
        factors = (ref.scale, ref.offset)
    return physical(var, *factors)


def indices(
    ds: xr.Dataset,
    names: str | Iterable[str],
    mapping: Mapping[Hashable, str] | None = None,
    scale: float | None = None,
    constants: Mapping[str, float] | None = None,
) -> xr.Dataset:
    """Spectral indices from the Awesome Spectral Indices catalogue, via spyndex.

    Reflectance bands are taken as surface reflectance 0..1 (float32; integer nodata pixels
    become NaN) before the formula is evaluated lazily on the bands: as they are in a cube
    converted by :func:`xsits.ops.reflectance.to_reflectance`, else scaled by the registry
    of the cube's collection. On Sentinel-2, run :func:`xsits.ops.harmonize.harmonize` (or
    ``to_reflectance``) first: a cube that still carries the +1000 offset of baseline
    >= 04.00 gives wrong indices (a ``UserWarning`` says so).

    Parameters
    ----------
    ds
        A cube (masked or not).
    names
        One index name or several (``"NDVI"``, ``["NDVI", "EVI"]``; spyndex spelling).
    mapping
        Band name -> spyndex band symbol, updating the collection's mapping
        (:func:`band_symbols`; Sentinel-2: :data:`S2_BANDS`, ``B02``->B, ``B03``->G,
        ``B04``->R, ``B08``->N, ``B8A``->N2, ``B05``..``B07``->RE1..RE3, ``B11``->S1,
        ``B12``->S2, plus common names; Landsat ``nir08``->N).
    scale
        DN of a reflectance of 1, for every band (no offset). Default: the registry's scale
        and offset of each band (the cube's collection), or none when the cube is already in
        reflectance.
    constants
        Values of formula constants (``{"L": 0.5}``), overriding spyndex's defaults.

    Returns
    -------
    xarray.Dataset
        One float32 variable per index, on the cube's coordinates and attrs, with a line
        appended to ``attrs["history"]``.

    Raises
    ------
    xsits.errors.MissingDependencyError
        If spyndex is not installed.
    xsits.errors.IndexNameError
        For an unknown index name.
    xsits.errors.BandError
        If a band (or a constant without default) needed by an index is missing.

    Examples
    --------
    >>> from xsits.testing.cubes import make_cube
    >>> from xsits.ops.harmonize import harmonize
    >>> ds = harmonize(make_cube(n_times=2, shape=(2, 2)))
    >>> out = indices(ds, ["NDVI", "GNDVI"])
    >>> list(out.data_vars), str(out.NDVI.dtype)
    (['NDVI', 'GNDVI'], 'float32')
    >>> n, r = ds.B08[0, 1, 1] / 10000, ds.B04[0, 1, 1] / 10000
    >>> bool(abs(out.NDVI[0, 1, 1] - (n - r) / (n + r)) < 1e-6)
    True
    """
    spyndex = _spyndex()
    names = [names] if isinstance(names, str) else list(names)
    fid = ds.attrs.get("feature_id", "?")
    catalogue = spyndex.indices
    for name in names:
        if name not in catalogue:
            close = difflib.get_close_matches(name, list(catalogue), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise IndexNameError(
                f"unknown spectral index {name!r}{hint} (see spyndex.indices for the list)"
            )
    if not ds.attrs.get("xsits_harmonized") and "processing_baseline" in ds.coords:

        if bool(needs_offset(ds).any()):
            warnings.warn(
                f"feature {fid}: reflectance still has the +1000 offset of baseline >= 04.00; "
                "call harmonize() before indices()",
                UserWarning,
                stacklevel=2,
            )
    converted = bool(ds.attrs.get(REFLECTANCE_ATTR))
    entry = None if converted or scale is not None else collection_of(ds)
    symbols = {**S2_BANDS, **(band_symbols(entry) if entry is not None else {}),
               **dict(mapping or {})}
    band_of = {}  # spyndex symbol -> band name in ds
    for band, symbol in symbols.items():
        if band in ds.data_vars:
            band_of.setdefault(symbol, band)
    out_vars = {}
    cache: dict[Hashable, xr.DataArray] = {}
    for name in names:
        spec = catalogue[name]
        params: dict[str, object] = {}
        for symbol in spec.bands:
            if constants and symbol in constants:
                params[symbol] = float(constants[symbol])
            elif symbol in band_of:
                band = band_of[symbol]
                if band not in cache:
                    cache[band] = _band_reflectance(ds[band], scale, entry)
                params[symbol] = cache[band]
            elif symbol in spyndex.constants and spyndex.constants[symbol].default is not None:
                params[symbol] = float(spyndex.constants[symbol].default)
            else:
                wanted = [b for b, s in symbols.items() if s == symbol]
                what = f"band {wanted[0]!r} (spyndex {symbol!r})" if wanted else f"{symbol!r}"
                raise BandError(
                    f"feature {fid}: index {name} needs {what}, missing from the cube; load it, "
                    f"or pass mapping={{'<band>': {symbol!r}}} or constants={{{symbol!r}: ...}}"
                )
        result = spyndex.computeIndex(index=name, params=params)
        if not isinstance(result, xr.DataArray):  # formula of constants only
            raise BandError(f"feature {fid}: index {name} uses no band of the cube")
        result = result.astype("float32")
        result.attrs = {"long_name": spec.long_name, "formula": spec.formula, "units": "1"}
        out_vars[name] = result
    out = xr.Dataset(out_vars)
    out.attrs = dict(ds.attrs)
    return append_history(out, f"xsits.ops.indices({names!r}, scale={scale})")
