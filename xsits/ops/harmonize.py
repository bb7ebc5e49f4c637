"""Harmonize processing baselines: undo the +1000 offset of baseline >= 04.00.

Since processing baseline 04.00 (January 2022) Sentinel-2 L2A reflectance carries a
``BOA_ADD_OFFSET`` of -1000: the stored DN is ``reflectance * 10000 + 1000``. :func:`harmonize`
subtracts that offset from the surface-reflectance bands of the affected dates only, so a time
series spanning 2022 has one consistent scale.

Owns: shifting the surface-reflectance bands (B01..B12, B8A, under either name:
:func:`xsits.stac.providers.is_reflectance`) of the dates that carry the offset; never AOT, WVP,
SCL or any class / QA band. Which dates carry it was decided per item when the cube was
loaded (the ``offset_removed`` coordinate, :mod:`xsits.cube.offset`: provider metadata per dialect
plus a data guard); cubes without that coordinate fall back on ``processing_baseline`` and
``boa_offset_applied``.
Must not: read files or the network (the decision is in the cube's coordinates).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from xsits._common import append_history
from xsits.errors import BandError
from xsits.stac.providers import baseline_key, is_reflectance

#: Attribute set on harmonized cubes (a second call is a no-op).
HARMONIZED_ATTR = "xsits_harmonized"


def _baseline_key(value: object) -> tuple[int, ...] | None:
    """``"05.11"`` -> ``(5, 11)``; ``None`` for missing or unparseable baselines."""
    return baseline_key(value)


def needs_offset(ds: xr.Dataset, min_baseline: str = "04.00") -> xr.DataArray:
    """Per-date boolean, True where a date still carries the +1000 offset.

    From the ``offset_removed`` coordinate when the cube has it (:func:`xsits.open_cubes`
    decides it per item, see :mod:`xsits.cube.offset`): True where it is False. Otherwise True
    where the ``processing_baseline`` coordinate is ``>= min_baseline`` (compared as
    numbers, ``"04.00"`` < ``"05.11"``) and ``boa_offset_applied`` is not True; dates with an
    empty or unparseable baseline are treated as not offset.

    Examples
    --------
    >>> from xsits.testing.cubes import make_cube
    >>> ds = make_cube(n_times=2, baseline=["03.01", "05.11"])
    >>> needs_offset(ds).values.tolist()
    [False, True]
    >>> needs_offset(ds.assign_coords(offset_removed=("time", [True, True]))).values.tolist()
    [False, False]
    """
    if "offset_removed" in ds.coords:
        removed = np.asarray(ds["offset_removed"].values, dtype=bool).ravel()
        return xr.DataArray(~removed, dims=ds["offset_removed"].dims)
    if "processing_baseline" not in ds.coords:
        raise BandError(
            f"feature {ds.attrs.get('feature_id', '?')}: the cube has no 'processing_baseline' "
            "coordinate along time; load it with xsits.open_cubes or assign it "
            "(ds.assign_coords(processing_baseline=('time', [...])))"
        )
    threshold = _baseline_key(min_baseline)
    # per-date coordinates are small in-memory arrays (never dask) in the cube data model
    baselines = np.asarray(ds["processing_baseline"].values).ravel()
    need = np.array(
        [(key := _baseline_key(b)) is not None and key >= threshold for b in baselines], dtype=bool
    )
    if "boa_offset_applied" in ds.coords:
        need &= ~np.asarray(ds["boa_offset_applied"].values, dtype=bool).ravel()
    return xr.DataArray(need, dims=ds["processing_baseline"].dims)


def _remove_offset(var: xr.DataArray, need: xr.DataArray, offset: int) -> xr.DataArray:
    nodata = var.attrs.get("nodata")
    is_int = np.issubdtype(var.dtype, np.integer)
    if is_int:
        floor = offset + 1 if nodata == 0 else offset
        shifted = var.clip(min=floor) - var.dtype.type(offset)
    else:
        shifted = var.clip(min=offset) - offset
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        shifted = shifted.where(var != nodata, var)
    out = var.where(~need, shifted).transpose(*var.dims).astype(var.dtype)
    out.attrs = dict(var.attrs)
    return out


def harmonize(ds: xr.Dataset, offset: int = 1000, min_baseline: str = "04.00") -> xr.Dataset:
    """Undo the +1000 reflectance offset of processing baseline >= 04.00.

    For every date that still carries the offset (:func:`needs_offset`: the cube's
    ``offset_removed`` coordinate, decided per item when loaded, else its
    ``processing_baseline`` ``>= min_baseline`` and ``boa_offset_applied`` not True),
    ``offset`` is subtracted from every surface-reflectance band (B01..B12, B8A or their
    Earth Search names: ``AOT``, ``WVP``, ``SCL`` and any other band are never shifted);
    other dates are unchanged. Lazy on dask input; dtypes are kept.

    Low values: a valid DN in ``(0, offset]`` (darker than the offset, e.g. deep water or
    shadow) becomes ``1`` in integer bands whose ``nodata`` is 0 (the smallest valid
    reflectance, so it stays distinguishable from nodata) and ``0`` in float bands. Nodata is
    kept: the ``attrs["nodata"]`` value (0) stays 0 in integer bands, NaN stays NaN in floats.
    This is Planetary Computer's ``clip(1000) - 1000`` recipe, shifted by one DN for integers.

    Idempotent: harmonized dates get ``offset_removed=True`` and ``boa_offset_applied=True``
    and the cube gets ``attrs["xsits_harmonized"] = 1``; a second call returns the cube
    unchanged.

    Parameters
    ----------
    ds
        A cube (see the data model in CONTRIBUTING.md).
    offset
        DN offset to remove (1000 for Sentinel-2 L2A).
    min_baseline
        First processing baseline that carries the offset.

    Returns
    -------
    xarray.Dataset
        The harmonized cube, with a line appended to ``attrs["history"]``.

    Raises
    ------
    xsits.errors.BandError
        If the ``processing_baseline`` coordinate is missing.

    Examples
    --------
    >>> from xsits.testing.cubes import make_cube
    >>> ds = make_cube(n_times=2, shape=(2, 2), baseline=["03.01", "05.11"])
    >>> out = harmonize(ds)
    >>> int(out.B04[1, 1, 1]) == int(ds.B04[1, 1, 1]) - 1000
    True
    >>> int(out.B04[0, 0, 0]) == int(ds.B04[0, 0, 0])  # baseline 03.01: no offset
    True
    >>> out.boa_offset_applied.values.tolist(), out.attrs["xsits_harmonized"]
    ([False, True], 1)
    >>> harmonize(out).identical(out)
    True
    >>> aot = make_cube(n_times=1, shape=(1, 1), bands=("AOT", "B04"), baseline="05.11")
    >>> int(harmonize(aot).AOT[0, 0, 0]) == int(aot.AOT[0, 0, 0])  # never a reflectance
    True
    """
    if ds.attrs.get(HARMONIZED_ATTR):
        return ds
    need = needs_offset(ds, min_baseline)
    time_dim = need.dims[0]
    updates = {
        name: _remove_offset(ds[name], need, offset)
        for name in ds.data_vars
        if is_reflectance(name) and time_dim in ds[name].dims
    }
    out = ds.assign(updates)
    applied = need.values
    if "boa_offset_applied" in ds.coords:
        applied = applied | np.asarray(ds["boa_offset_applied"].values, dtype=bool)
    out = out.assign_coords(boa_offset_applied=(time_dim, applied),
                            offset_removed=(time_dim, np.ones(need.size, dtype=bool)))
    out.attrs = dict(ds.attrs)
    out.attrs[HARMONIZED_ATTR] = 1
    return append_history(
        out, f"xsits.ops.harmonize(offset={offset}, min_baseline={min_baseline!r}): "
        f"{int(need.sum())} of {need.size} dates shifted"
    )
