"""The ``.sits`` accessor: a thin facade over the free functions of xsits.

Each method calls the function of the same name with the Dataset (or DataArray) as first
argument and carries that function's docstring.

Examples
--------
>>> import numpy as np, pandas as pd, xarray as xr
>>> import xsits  # registers ``.sits``
>>> da = xr.DataArray([1.0, np.nan, 3.0], dims="time",
...                   coords={"time": pd.date_range("2024-01-01", periods=3)})
>>> da.sits.gapfill().values.tolist()
[1.0, 2.0, 3.0]
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import xarray as xr

from xsits.cube import clip as _clip
from xsits.ops import composite as _composite
from xsits.ops import gapfill as _gapfill
from xsits.ops import harmonize as _harmonize
from xsits.ops import indices as _indices
from xsits.ops import labels as _labels
from xsits.ops import mask as _mask
from xsits.ops import patch as _patch
from xsits.ops import reflectance as _reflectance
from xsits.ops import smooth as _smooth
from xsits.out import export as _export
from xsits.out import gif as _gif


def _facade(func: Callable) -> Callable:
    """Turn ``func(obj, ...)`` into a method ``accessor.func(...)`` with the same docstring."""

    @functools.wraps(func)
    def method(self, *args, **kwargs):
        return func(self._obj, *args, **kwargs)

    return method


class _Base:
    def __init__(self, obj: xr.Dataset | xr.DataArray) -> None:
        self._obj = obj

    gapfill = _facade(_gapfill.gapfill)
    to_patch = _facade(_patch.to_patch)
    composite = _facade(_composite.composite)
    smooth = _facade(_smooth.smooth)
    clip = _facade(_clip.clip)
    labels = _facade(_labels.labels)
    to_gif = _facade(_gif.to_gif)
    to_video = _facade(_gif.to_video)


@xr.register_dataset_accessor("sits")
class SitsDatasetAccessor(_Base):
    """``ds.sits``: masking, harmonization, gap-filling, smoothing, clipping, outputs..."""

    harmonize = _facade(_harmonize.harmonize)
    scl_mask = _facade(_mask.scl_mask)
    cloud_mask = _facade(_mask.cloud_mask)
    to_reflectance = _facade(_reflectance.to_reflectance)
    masked_fraction = _facade(_mask.masked_fraction)
    drop_cloudy = _facade(_mask.drop_cloudy)
    indices = _facade(_indices.indices)
    export = _facade(_export.export)


@xr.register_dataarray_accessor("sits")
class SitsDataArrayAccessor(_Base):
    """``da.sits``: gap-filling, smoothing, clipping, patches, composites and GIFs of a band."""
