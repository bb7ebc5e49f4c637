"""Shared test helpers: numpy-vs-dask equivalence of xsits operations.

``assert_numpy_dask_equal(func, obj, **kwargs)`` runs ``func`` on a numpy-backed object and on
the same object chunked with dask, and asserts (as xarray-spatial's test helpers do):

- the dask result is still dask-backed (every data variable that has dims) before compute,
- building the dask result triggered at most ``max_computes`` dask computations (0 by default:
  operations must stay lazy),
- after compute, both results are identical: values (NaN == NaN), dtypes of data variables and
  coordinates, coordinates, names and attrs.
"""

from __future__ import annotations

from collections.abc import Callable

import dask
import dask.array as dsa
import xarray as xr


class CountingScheduler:
    """A dask scheduler that counts computations and fails beyond ``max_computes``."""

    def __init__(self, max_computes: int = 0) -> None:
        self.total_computes = 0
        self.max_computes = max_computes

    def __call__(self, dsk, keys, **kwargs):
        self.total_computes += 1
        if self.total_computes > self.max_computes:
            raise RuntimeError(
                f"Too many dask computations: {self.total_computes} > {self.max_computes}"
            )
        return dask.get(dsk, keys, **kwargs)


def raise_if_dask_computes(max_computes: int = 0):
    """Context manager: fail if more than ``max_computes`` dask computations happen."""
    return dask.config.set(scheduler=CountingScheduler(max_computes))


def chunk(obj: xr.Dataset | xr.DataArray, chunks: dict) -> xr.Dataset | xr.DataArray:
    """Chunk the data variables only (coordinates stay numpy), as ``open_cubes`` does."""
    if isinstance(obj, xr.DataArray):
        return obj.chunk({d: c for d, c in chunks.items() if d in obj.dims})
    return obj.assign(
        {
            name: var.chunk({d: c for d, c in chunks.items() if d in var.dims})
            for name, var in obj.data_vars.items()
        }
    )


def _arrays(obj: xr.Dataset | xr.DataArray) -> dict:
    if isinstance(obj, xr.DataArray):
        return {obj.name: obj}
    return dict(obj.data_vars)


def is_dask(obj: xr.Dataset | xr.DataArray) -> bool:
    """True when every data variable with dims is dask-backed."""
    arrays = [a for a in _arrays(obj).values() if a.ndim > 0]
    return bool(arrays) and all(isinstance(a.data, dsa.Array) for a in arrays)


def assert_same(expected: xr.Dataset | xr.DataArray, actual: xr.Dataset | xr.DataArray) -> None:
    """Identical values, dtypes, coordinates (with their dtypes) and attrs."""
    assert type(expected) is type(actual)
    xr.testing.assert_identical(expected, actual)
    for name, arr in _arrays(expected).items():
        assert arr.dtype == _arrays(actual)[name].dtype, (name, arr.dtype)
    for name, coord in expected.coords.items():
        assert coord.dtype == actual.coords[name].dtype, (name, coord.dtype)
    assert list(expected.dims) == list(actual.dims)


def assert_numpy_dask_equal(
    func: Callable,
    obj: xr.Dataset | xr.DataArray,
    *args,
    chunks: dict | None = None,
    max_computes: int = 0,
    **kwargs,
):
    """Assert ``func(obj)`` and ``func(obj.chunk(chunks))`` agree; return the numpy result.

    ``chunks`` defaults to one date per chunk and half the pixels in y, so that operations
    that must merge chunks (gap filling along time) are exercised.
    """
    if chunks is None:
        chunks = {"time": 1, "y": max(1, obj.sizes.get("y", 2) // 2)}
    expected = func(obj, *args, **kwargs)
    assert not is_dask(expected) or not _arrays(expected), "numpy input gave a dask result"
    lazy_in = chunk(obj, chunks)
    with raise_if_dask_computes(max_computes):
        lazy = func(lazy_in, *args, **kwargs)
    assert is_dask(lazy), f"{getattr(func, '__name__', func)} did not stay lazy on dask input"
    with dask.config.set(scheduler="synchronous"):
        actual = lazy.compute()
    assert_same(expected, actual)
    return expected


def written_values(report) -> dict[str, dict[str, object]]:
    """``{feature_id: {variable: raw values}}`` of the NetCDF files a batch report lists."""
    out = {}
    for r in report.itertuples():
        with xr.open_dataset(r.path, mask_and_scale=False) as ds:
            out[r.feature_id] = {k: ds[k].values.copy() for k in ds.data_vars}
    return out
