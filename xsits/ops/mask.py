"""SCL cloud masking: pixels of unwanted scene classes become NaN; cloudy dates are dropped.

The Sentinel-2 L2A Scene Classification Layer (SCL) classes masked by default are
0 nodata, 1 saturated/defective, 3 cloud shadow, 8 cloud medium probability,
9 cloud high probability and 10 thin cirrus. The SCL band is found under either name,
``SCL`` (Planetary Computer) or ``scl`` (Earth Search).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import numpy as np
import xarray as xr

from xsits._common import append_history, reflectance_vars
from xsits.errors import BandError
from xsits.stac.providers import find_band

#: SCL classes masked by default: nodata, saturated, shadow, cloud medium/high, cirrus.
DEFAULT_CLASSES: tuple[int, ...] = (0, 1, 3, 8, 9, 10)


def _fid(ds: xr.Dataset) -> str:
    return str(ds.attrs.get("feature_id", "?"))


def _scl_name(ds: xr.Dataset, band: Hashable | None) -> Hashable:
    """The SCL variable of ``ds``: ``band``, else ``SCL`` or ``scl`` (whichever it has)."""
    if band is not None:
        return band
    return find_band(ds, "SCL") or "SCL"


def _bad_pixels(
    ds: xr.Dataset, classes: Iterable[int], band: Hashable, mask: xr.DataArray | None
) -> xr.DataArray:
    """Boolean DataArray, True where a pixel is masked (from ``mask`` or the SCL band)."""
    if mask is not None:
        if not isinstance(mask, xr.DataArray) or mask.dtype != bool:
            raise BandError(
                f"feature {_fid(ds)}: mask must be a boolean xarray.DataArray (True = masked), "
                f"got {type(mask).__name__} of dtype {getattr(mask, 'dtype', '?')}"
            )
        return mask
    if band not in ds.data_vars:
        raise BandError(
            f"feature {_fid(ds)}: band {band!r} is missing (the cube has "
            f"{', '.join(map(str, ds.data_vars))}); load it "
            f"(open_cubes(..., bands=[..., {band!r}])), keep it (scl_mask(keep_band=True)) "
            "or pass mask=<boolean DataArray>"
        )
    return ds[band].isin(list(classes))


def scl_mask(
    ds: xr.Dataset,
    classes: Iterable[int] = DEFAULT_CLASSES,
    band: Hashable | None = None,
    keep_band: bool = True,
    mask: xr.DataArray | None = None,
) -> xr.Dataset:
    """Mask pixels whose SCL class is in ``classes``: they become NaN in every reflectance band.

    Integer reflectance bands become ``float32`` (float bands keep their dtype), and their
    ``attrs["nodata"]`` pixels (0) become NaN too; ``attrs["nodata"]`` is then NaN. The SCL
    band itself is never converted: it stays ``uint8`` with all its class values (or is
    dropped with ``keep_band=False``). Lazy on dask input.

    Parameters
    ----------
    ds
        A cube (see the data model in CONTRIBUTING.md).
    classes
        SCL classes to mask (default: nodata 0, saturated 1, shadow 3, clouds 8 and 9,
        cirrus 10).
    band
        Name of the SCL band. Default: ``SCL`` or ``scl``, whichever the cube has.
    keep_band
        Keep the SCL band in the output (unchanged) or drop it.
    mask
        A boolean DataArray broadcastable to the bands (True = masked) used instead of SCL,
        aligned to the cube's coordinates (pixels it does not cover are not masked);
        ``classes`` and ``band`` are then ignored (the SCL band, if any, is still kept or
        dropped according to ``keep_band``).

    Returns
    -------
    xarray.Dataset
        The masked cube, with a line appended to ``attrs["history"]``.

    Raises
    ------
    xsits.errors.BandError
        If ``mask`` is None and the SCL band is missing, or ``mask`` is not boolean.

    Examples
    --------
    >>> from xsits.testing.cubes import make_cube
    >>> ds = make_cube(n_times=3, shape=(4, 4))
    >>> out = scl_mask(ds)
    >>> int(ds.SCL[1, 0, 0]), bool(out.B04[1, 0, 0].isnull())    # cloud -> NaN
    (9, True)
    >>> float(out.B04[0, 0, 0]) == int(ds.B04[0, 0, 0])           # clear -> its DN
    True
    >>> str(out.B04.dtype), str(out.SCL.dtype)
    ('float32', 'uint8')
    """
    band = _scl_name(ds, band)
    bad = _bad_pixels(ds, classes, band, mask)
    if mask is not None:  # on the cube's coordinates: pixels the mask does not cover are kept
        bad = bad.reindex_like(ds, fill_value=False)
    bad = bad.variable  # the bands share the cube's coordinates: no alignment per band
    updates = {}
    for name in reflectance_vars(ds, exclude=[band]):
        var = ds[name].variable
        nodata = var.attrs.get("nodata")
        values = var if np.issubdtype(var.dtype, np.floating) else var.astype("float32")
        invalid = bad
        if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
            invalid = invalid | (var == nodata)
        masked = values.where(~invalid).transpose(*var.dims)
        masked.attrs = {**var.attrs, "nodata": float("nan")}
        updates[name] = masked
    out = ds.assign(updates)
    if not keep_band and band in out.data_vars:
        out = out.drop_vars(band)
    out.attrs = dict(ds.attrs)
    source = "mask" if mask is not None else f"{band} in {tuple(classes)}"
    return append_history(out, f"xsits.scl_mask({source}, keep_band={keep_band})")


def masked_fraction(
    ds: xr.Dataset,
    classes: Iterable[int] = DEFAULT_CLASSES,
    band: Hashable | None = None,
    mask: xr.DataArray | None = None,
) -> xr.DataArray:
    """Fraction (0..1) of masked pixels per date, as a lazy DataArray over ``time``.

    Pixels count as masked when their SCL class is in ``classes`` (or where ``mask`` is
    True). Parameters are those of :func:`scl_mask`.

    Examples
    --------
    >>> from xsits.testing.cubes import make_cube
    >>> ds = make_cube(n_times=4, shape=(4, 4))
    >>> masked_fraction(ds).values.tolist()  # 1: cloudy quarter; 2: shadow; 3: nodata pixel
    [0.0, 0.25, 0.0625, 0.0625]
    """
    bad = _bad_pixels(ds, classes, _scl_name(ds, band), mask)
    spatial = [d for d in bad.dims if d != "time"]
    frac = bad.mean(dim=spatial).astype("float64")
    frac.name = "masked_fraction"
    frac.attrs = {"long_name": "fraction of masked pixels", "units": "1"}
    return frac


def drop_cloudy(
    ds: xr.Dataset,
    max_fraction: float = 0.5,
    classes: Iterable[int] = DEFAULT_CLASSES,
    band: Hashable | None = None,
    mask: xr.DataArray | None = None,
) -> xr.Dataset:
    """Drop the dates whose masked fraction (:func:`masked_fraction`) exceeds ``max_fraction``.

    The one documented exception to laziness: on dask input the small per-date fraction
    vector is computed (reading the SCL band) to know which dates to keep; the bands
    themselves stay lazy.

    Parameters
    ----------
    ds
        A cube; masked (:func:`scl_mask` with ``keep_band=True``) or not.
    max_fraction
        Keep dates with at most this fraction (0..1) of masked pixels.
    classes, band, mask
        As in :func:`scl_mask`.

    Returns
    -------
    xarray.Dataset
        The cube without the cloudy dates, with a line appended to ``attrs["history"]``.

    Examples
    --------
    >>> from xsits.testing.cubes import make_cube
    >>> ds = make_cube(n_times=3, shape=(4, 4))
    >>> drop_cloudy(ds, max_fraction=0.2).sizes["time"]  # date 1 is 25 % cloudy
    2
    """
    frac = masked_fraction(ds, classes=classes, band=band, mask=mask)
    keep = np.asarray((frac <= max_fraction).values, dtype=bool)  # the one allowed compute
    out = ds.isel(time=np.flatnonzero(keep))
    out.attrs = dict(ds.attrs)
    return append_history(
        out,
        f"xsits.drop_cloudy(max_fraction={max_fraction}): kept {int(keep.sum())} of "
        f"{keep.size} dates",
    )
