"""Cloud masking: pixels of unwanted classes or QA flags become NaN; cloudy dates are dropped.

:func:`cloud_mask` picks the rule of the cube's collection from the registry
(:mod:`xsits.stac.collections`, by ``attrs["collection"]``): Sentinel-2 SCL classes, Landsat
Collection 2 ``qa_pixel`` bits (fill, dilated cloud, cirrus, cloud, shadow, snow and their
confidence), HLS ``Fmask`` bits (cloud, adjacent, shadow, snow; fill 255); ``dilate=`` grows
clouds and shadows by that many pixels. :func:`scl_mask` is the Sentinel-2 rule with classes
of one's choosing. The SCL classes masked by default are 0 nodata, 1 saturated/defective,
3 cloud shadow, 8 cloud medium probability, 9 cloud high probability and 10 thin cirrus. The
mask band is found under any of its names (``SCL`` on Planetary Computer, ``scl`` on Earth
Search).

Owns: reading a mask rule on a cube (:func:`rule_mask`), growing it (:func:`dilate_mask`),
setting masked pixels to NaN in every band but the class / QA bands.
Must not: read files or know a collection but through the registry.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import numpy as np
import xarray as xr

from xsits._common import append_history
from xsits.errors import BandError
from xsits.stac.collections import CLASS_BANDS, MaskRule, lookup
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
    if band not in ds.data_vars and tuple(classes) == DEFAULT_CLASSES:
        entry = lookup(str(ds.attrs.get("collection") or ""))
        if entry is not None and entry.mask is not None and entry.mask.kind == "bits":
            rule, var = collection_rule(ds)  # Landsat, HLS: their QA rule
            return rule_mask(ds[var], rule)
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
    source = "mask" if mask is not None else f"{band} in {tuple(classes)}"
    return _apply(ds, bad, band, keep_band, f"xsits.scl_mask({source}, keep_band={keep_band})")


def _apply(ds: xr.Dataset, bad: xr.DataArray, band: Hashable | None, keep_band: bool,
           history: str) -> xr.Dataset:
    """NaN where ``bad`` (and at each band's nodata) in every band but class / QA bands."""
    bad = bad.variable  # the bands share the cube's coordinates: no alignment per band
    updates = {}
    for name in (v for v in ds.data_vars if v != band and v not in CLASS_BANDS):
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
    return append_history(out, history)


def collection_rule(ds: xr.Dataset) -> tuple[MaskRule, Hashable]:
    """The mask rule of the cube's collection and the variable holding its band.

    Raises
    ------
    xsits.errors.BandError
        The collection has no rule in the registry (Sentinel-1: no cloud mask at all), or
        the cube lacks its mask band.

    Examples
    --------
    >>> from xsits.testing.cubes import make_cube
    >>> rule, band = collection_rule(make_cube(n_times=1, shape=(1, 1)))
    >>> rule.kind, band
    ('classes', 'SCL')
    """
    collection = ds.attrs.get("collection") or "sentinel-2-l2a"
    entry = lookup(str(collection))
    if entry is not None and entry.mask is None:  # Sentinel-1: nothing to mask
        why = " (radar sees through clouds)" if entry.names("backscatter") else ""
        raise BandError(f"feature {_fid(ds)}: collection {collection!r} ({entry.title}) has no "
                        f"cloud mask{why}; leave cloud_mask out of its steps")
    if entry is None:
        raise BandError(f"feature {_fid(ds)}: collection {collection!r} has no cloud-mask rule "
                        "in xsits.stac.collections; add one, or use scl_mask(mask=...)")
    names = entry.band(entry.mask.band).names if entry.band(entry.mask.band) else ()
    lowered = {str(v).lower(): v for v in ds.data_vars}
    var = next((lowered[n.lower()] for n in (entry.mask.band, *names) if n.lower() in lowered),
               None)
    if var is None:
        raise BandError(f"feature {_fid(ds)}: the {collection} mask band {entry.mask.band!r} is "
                        f"missing (the cube has {', '.join(map(str, ds.data_vars))}); load it "
                        f"(open_cubes(..., bands=[..., {entry.mask.band!r}]))")
    return entry.mask, var


def rule_mask(qa: xr.DataArray, rule: MaskRule, *, only: Iterable = ()) -> xr.DataArray:
    """Boolean, True where ``rule`` masks a pixel of its band ``qa`` (lazy on dask).

    ``only``: just these classes / flag names (what :func:`dilate_mask` grows); the fill
    value then counts for nothing.

    Examples
    --------
    >>> from xsits.stac.collections import lookup
    >>> qa = xr.DataArray(np.array([21824, 22280, 23888, 1, 21762], "uint16"), dims="x")
    >>> rule_mask(qa, lookup("landsat-c2-l2").mask).values.tolist()
    [False, True, True, True, True]
    >>> rule_mask(qa, lookup("landsat-c2-l2").mask, only=["cloud"]).values.tolist()
    [False, True, False, False, False]
    """
    only = tuple(only)
    if rule.kind == "classes":
        return qa.isin(list(only or rule.classes))
    bad = xr.zeros_like(qa, dtype=bool)
    values = qa.astype("int64")
    for flag in rule.flags:
        if only and flag.name not in only:
            continue
        field = (values >> flag.offset) & ((1 << flag.length) - 1)
        bad = bad | field.isin(list(flag.values))
    if rule.fill is not None and not only:
        bad = bad | (qa == rule.fill)
    return bad


def dilate_mask(bad: xr.DataArray, pixels: int) -> xr.DataArray:
    """Grow ``bad`` by ``pixels`` in x and y (a square of side ``2 * pixels + 1``; lazy).

    A rolling maximum along ``y`` then ``x`` (xarray shares the chunk edges on dask).

    Examples
    --------
    >>> m = xr.DataArray(np.eye(1, 5, 2, dtype=bool).repeat(3, 0), dims=("y", "x"))
    >>> dilate_mask(m, 1).values[0].tolist()
    [False, True, True, True, False]
    """
    if pixels <= 0:
        return bad
    size = 2 * int(pixels) + 1
    grown = bad.astype("uint8")
    for dim in ("y", "x"):
        if dim in grown.dims:
            grown = grown.rolling({dim: size}, center=True, min_periods=1).max()
    return (grown > 0).transpose(*bad.dims)


def cloud_mask(ds: xr.Dataset, dilate: int = 0, keep_band: bool = True) -> xr.Dataset:
    """Mask clouds, shadows and fill by the rule of the cube's collection: they become NaN.

    The rule is the registry's (:mod:`xsits.stac.collections`, ``attrs["collection"]``;
    cubes without it are read as Sentinel-2): Sentinel-2 SCL classes 0, 1, 3, 8, 9, 10;
    Landsat Collection 2 ``qa_pixel`` fill, dilated cloud, cirrus, cloud, cloud shadow, snow,
    cloud confidence medium / high, shadow, snow and cirrus confidence high (the bits of its
    ``classification:bitfields``); HLS ``Fmask`` cirrus, cloud, adjacent to cloud / shadow,
    shadow, snow, and its fill 255. Every band but the class / QA bands becomes ``float32``
    with NaN there and at its ``attrs["nodata"]``; the mask band is kept unchanged (or dropped).

    Parameters
    ----------
    ds
        A cube with its collection's mask band.
    dilate
        Pixels by which clouds and shadows are grown first (0: none), in the cube's pixels:
        what Fmask's and DEA's users buffer clouds with.
    keep_band
        Keep the mask band.

    Returns
    -------
    xarray.Dataset
        The masked cube, lazy on dask input, with a line appended to ``attrs["history"]``.

    Raises
    ------
    xsits.errors.BandError
        The collection has no rule or the cube lacks the mask band, or ``dilate`` < 0.

    Examples
    --------
    >>> from xsits.testing.cubes import make_cube
    >>> ds = make_cube(n_times=3, shape=(4, 4))
    >>> out = cloud_mask(ds)
    >>> int(ds.SCL[1, 0, 0]), bool(out.B04[1, 0, 0].isnull())    # cloud -> NaN
    (9, True)
    >>> int(cloud_mask(ds, dilate=1).B04[1].isnull().sum()) > int(out.B04[1].isnull().sum())
    True
    """
    if isinstance(dilate, bool) or not isinstance(dilate, (int, np.integer)) or dilate < 0:
        raise BandError(f"feature {_fid(ds)}: dilate={dilate!r} must be a number of pixels "
                        ">= 0, e.g. dilate=2")
    rule, band = collection_rule(ds)
    bad = rule_mask(ds[band], rule)
    if dilate:
        bad = bad | dilate_mask(rule_mask(ds[band], rule, only=rule.buffer), int(dilate))
    return _apply(ds, bad, band, keep_band,
                  f"xsits.cloud_mask({rule.describe()}, dilate={dilate}, keep_band={keep_band})")


def masked_fraction(
    ds: xr.Dataset,
    classes: Iterable[int] = DEFAULT_CLASSES,
    band: Hashable | None = None,
    mask: xr.DataArray | None = None,
) -> xr.DataArray:
    """Fraction (0..1) of masked pixels per date, as a lazy DataArray over ``time``.

    Pixels count as masked when their SCL class is in ``classes`` (or where ``mask`` is
    True); a cube without SCL whose collection has a QA-bit rule (Landsat, HLS), with the
    default ``classes``: where :func:`cloud_mask`'s rule masks them. Parameters are those of
    :func:`scl_mask`.

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
