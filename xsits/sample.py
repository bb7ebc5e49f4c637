"""Point time series as one tidy table: :func:`sample` (``xsits sample`` on the command line).

Owns: :func:`sample`'s arguments and their checks (before anything is read), the point grid
(:func:`point_spec`), the loop over parts of the AOI, and the Parquet / GeoParquet output
(:func:`write_table`). What is read when is :mod:`xsits.sampling.read`'s, the rows and the
table's columns :mod:`xsits.sampling.rows`'.
Must not: read pixels or clean them its own way. Every point's values are its
``open_cubes(mode="patch", size=(window, window))`` cube, read by :mod:`xsits.io.reader`,
after the same steps (:mod:`xsits.ops.steps`) that :func:`xsits.compute_all` applies.

Examples
--------
On the offline demo world (:mod:`xsits.demo`); any STAC API works the same way
(``stac="earth-search"``):

>>> import xsits
>>> from xsits.demo import demo_aoi, demo_catalog_path
>>> table = xsits.sample(demo_aoi(), stac=str(demo_catalog_path()), start="2024-04-01",
...                      end="2024-09-30", bands=["B04", "B08", "SCL"],
...                      steps=[xsits.ops.steps.scl_mask(), xsits.ops.steps.gapfill()],
...                      progress=False)
>>> len(table), table.feature_id.nunique()
(222, 6)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr
from tqdm import tqdm

from xsits._common import relaxed_gc, single_threaded_blas
from xsits.batch.combined import combined_bands, open_combined
from xsits.batch.run import want_progress
from xsits.cube.aoi import read_aoi
from xsits.cube.load import open_cubes
from xsits.cube.spec import CubeSpec, split_kwargs
from xsits.errors import AOIError, ExportError, OutputExistsError, SampleError
from xsits.ops import steps as steps_mod
from xsits.options import get_options
from xsits.out.atomic import atomic_path, ensure_dir
from xsits.sampling.combined import merge_rows, series_rows
from xsits.sampling.read import Reader, ReadFailed, is_client, parts
from xsits.sampling.rows import Rows, assemble
from xsits.stac.collections import COMMON_BANDS, lookup

log = logging.getLogger(__name__)

#: Reductions of a window of pixels around each point.
REDUCES: tuple[str, ...] = ("mean", "median")
#: Where :func:`sample` reads the points' cubes.
SCHEDULERS: tuple[str, ...] = ("threads", "processes")
#: Columns every table has (AOI columns and bands must not take these names).
RESERVED: tuple[str, ...] = ("feature_id", "time", "lon", "lat", "masked", "geometry")
#: ``open_cubes`` arguments that :func:`sample` sets itself.
OWN_ARGS: tuple[str, ...] = ("mode", "size", "buffer", "on_group", "on_plan", "aoi")
#: The grid fields of a spec :func:`sample` sets itself (:func:`point_spec`).
POINT_GRID: tuple[str, ...] = OWN_ARGS[:3]


def _check_args(window: int, reduce: str, steps: Sequence[Callable], out: Any,
                open_kwargs: Mapping[str, Any], scheduler: str, workers: int | None) -> None:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1 \
            or window % 2 == 0:
        raise SampleError(f"sample: window={window!r} must be an odd number of pixels (1, 3, "
                          "5...): the point's pixel and the same number of pixels on each side")
    if reduce not in REDUCES:
        raise SampleError(f"sample: unknown reduce={reduce!r}; use one of {', '.join(REDUCES)}")
    if not is_client(scheduler) and scheduler not in SCHEDULERS:
        raise SampleError(f"sample: scheduler={scheduler!r} is unknown; use "
                          f"{' or '.join(map(repr, SCHEDULERS))} or a dask.distributed Client")
    if workers is not None and (scheduler != "processes" or isinstance(workers, bool)
                                or not isinstance(workers, int) or workers < 1):
        raise SampleError(f"sample: workers={workers!r} must be a positive number of "
                          "processes, with scheduler='processes'")
    for i, step in enumerate(steps):
        if not callable(step):
            raise SampleError(f"sample: steps[{i}] = {step!r} is not callable; use "
                              "xsits.ops.steps.* or a function Dataset -> Dataset")
    own = [k for k in OWN_ARGS if k in open_kwargs]
    if own:
        raise SampleError(f"sample: {own[0]}= is set by sample itself (a window of pixels "
                          "around each point); use window= instead")
    if out is not None and Path(out).suffix.lower() != ".parquet":
        raise ExportError(f"sample: out={str(out)!r} must be a .parquet file path, e.g. "
                          "'points.parquet'")
    if out is not None:  # an existing file in the way: OutputDirError, before any read
        ensure_dir(Path(out).expanduser().absolute().parent)


def _check_aoi(aoi: gpd.GeoDataFrame, bands: Iterable[str]) -> list[str]:
    """The AOI attribute columns; every feature must be a point, no name may clash."""
    kinds = aoi.geometry.geom_type
    bad = kinds != "Point"
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise AOIError(f"sample: feature {aoi['feature_id'].iloc[i]!r} is a {kinds.iloc[i]}, "
                       "not a point; sample points (e.g. aoi.geometry.centroid), or use "
                       "open_cubes for polygons")
    columns = [c for c in aoi.columns if c not in ("feature_id", aoi.geometry.name)]
    taken = set(RESERVED) | set(bands)
    for col in columns:
        if str(col) in taken:
            raise AOIError(f"sample: AOI column {col!r} clashes with a column of the table; "
                           f"rename it (aoi.rename(columns={{{col!r}: 'label'}}))")
    return columns


def point_spec(spec: CubeSpec, window: int) -> CubeSpec:
    """``spec`` with the grid of point samples: a patch of ``window`` pixels.

    Examples
    --------
    >>> point_spec(CubeSpec(), 3).grid.size
    (3, 3)
    """
    return CubeSpec.from_kwargs(spec, mode="patch", size=(window, window))


def write_table(df: pd.DataFrame, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a table atomically as Parquet (GeoParquet for a GeoDataFrame).

    The file appears under its final name only once complete
    (:func:`xsits.out.atomic.atomic_path`); ``df.attrs`` are stored with it (pandas keeps them).

    Parameters
    ----------
    df
        The table (e.g. from :func:`sample`).
    out
        A ``.parquet`` file path.
    overwrite
        Replace an existing file; otherwise :class:`~xsits.errors.OutputExistsError`.

    Returns
    -------
    pathlib.Path
        The written path.

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> path = write_table(pd.DataFrame({"a": [1, 2]}), Path(tempfile.mkdtemp()) / "t.parquet")
    >>> pd.read_parquet(path).a.tolist()
    [1, 2]
    """
    path = Path(out)
    if path.suffix.lower() != ".parquet":
        raise ExportError(f"out={str(out)!r} must be a .parquet file path, e.g. 'points.parquet'")
    with atomic_path(path, overwrite=overwrite) as tmp:
        df.to_parquet(tmp, index=False)
    return path


def sample(
    aoi: gpd.GeoDataFrame | str | os.PathLike,
    *,
    steps: Iterable[Callable[[xr.Dataset], xr.Dataset]] | None = None,
    window: int = 1,
    reduce: str = "mean",
    indices: Sequence[str] | str | None = None,
    geometry: bool = False,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    id_column: str | None = None,
    progress: bool | None = None,
    scheduler: Any = "threads",
    workers: int | None = None,
    spec: CubeSpec | None = None,
    collections: Sequence[str] | None = None,
    bandpass: bool = False,
    dilate: int = 0,
    **open_kwargs: Any,
) -> pd.DataFrame:
    """The time series of labelled points as one tidy table, one row per (feature, date).

    For each point, its cube is ``xsits.open_cubes(aoi, mode="patch", size=(window,
    window), **open_kwargs)`` (the point's pixel in the middle), read by :mod:`xsits.io.reader`,
    then the ``steps`` run on it, as :func:`xsits.compute_all` runs them on any cube: the
    values are those of that cube's pixel (``window=1``), or of the window reduced by
    ``reduce`` over its valid pixels. Points are read tile by tile, while the next groups of
    points are still searched, so each COG block is fetched and decoded once for all points
    in it. When every step is pixelwise (:attr:`xsits.ops.steps.Step.pixelwise`: harmonize,
    scl_mask, gapfill, composite, smooth), the cubes of points with the same dates run the
    steps side by side as one cube (the same values, ~50x less Python per point); other
    steps (``drop_cloudy``, any function) run on each point's cube.

    Columns, in order: ``feature_id``; the AOI's attribute columns (labels), with their
    dtypes; ``time``; one column per band (and per index); ``lon``, ``lat`` (the point, in
    EPSG:4326); ``masked`` (True when no pixel of the window was clear at that date, by the
    SCL classes of the steps' ``scl_mask``, else its defaults: the value is NaN, or gap-filled
    when a step fills; present when ``SCL`` is loaded and the steps keep acquisition dates);
    then the per-date coordinates (``cloud_cover``, ``platform``, ``mgrs_tile``...; ``n_dates``
    after a composite); ``geometry`` with ``geometry=True``. Class bands (``SCL``) give the
    point's pixel, whatever the window.

    Parameters
    ----------
    aoi
        Points: a GeoDataFrame or a file for :func:`xsits.read_aoi` (``id_column``).
    steps
        Callables ``Dataset -> Dataset`` run on each point's cube in order, e.g.
        ``[xsits.ops.steps.harmonize(), xsits.ops.steps.scl_mask(), xsits.ops.steps.gapfill()]``.
    window
        Odd size in pixels of the square around each point. Default 1: the point's pixel.
    reduce
        ``"mean"`` or ``"median"`` of the window's valid pixels (``window > 1``).
    indices
        Spectral indices to add as columns (:func:`xsits.ops.indices.indices`, e.g. ``"NDVI"``),
        computed after the steps (harmonize first).
    geometry
        Keep the points as a ``geometry`` column: a GeoDataFrame, written as GeoParquet.
    out
        Write the table there (a ``.parquet`` path), atomically (:func:`write_table`).
    overwrite
        Replace an existing ``out``.
    id_column
        The AOI's id column, when ``aoi`` is a file.
    progress
        Progress bar over points. ``None``: when stderr is a terminal or in Jupyter, unless
        ``xsits.set_options(progress=False)``.
    scheduler
        Where each search group's points are read and their steps run: ``"threads"``
        (default, one reader thread in this process), ``"processes"`` (a pool of ``workers``
        processes, default one per core, each reading whole search groups, at the memory of
        one reader per process), or a ``dask.distributed.Client`` (its workers read the
        groups).
    workers
        Processes for ``scheduler="processes"`` (not settable for ``"threads"``).
    spec
        The search and grid as one :class:`~xsits.cube.spec.CubeSpec`; its grid becomes
        :func:`point_spec`'s (a patch of ``window`` pixels).
    collections
        Several collections as one time series, as :func:`xsits.open_combined` makes it:
        e.g. ``["sentinel-2-l2a", "landsat-c2-l2"]``; ``stac`` may then be ``{collection:
        stac}`` and ``bands`` are cross-sensor names (default ``blue``, ``green``, ``red``,
        ``nir``, ``swir16``, ``swir22``). Each collection is masked by its own rule and in
        surface reflectance before the ``steps`` (which then run on the merged series);
        ``sensor`` and ``platform`` are columns, ``masked`` says no pixel was clear.
        The values are those of the point's pixel (window) in the cube of
        :func:`xsits.open_combined` with ``mode="patch", size=(window, window)``. With
        ``window=1`` each collection's points are read on their own (without cubes where
        the fast reader can), then merged by date; with a larger window through the
        combined cubes.
    bandpass, dilate
        With ``collections``: as for :func:`xsits.ops.combine.combine` (clouds and shadows
        grow inside each point's window: with ``window=1``, ``dilate`` changes nothing).
    **open_kwargs
        Fields of the spec (:func:`xsits.open_cubes`'s ``stac``, ``collection``, ``bands``,
        ``start``, ``end``, ``query``, ``filter``, ``max_cloud``, ``resolution``, ``crs``...;
        not ``mode``, ``size`` or ``buffer``), and ``open_cubes``' ``client``.

    Returns
    -------
    pandas.DataFrame or geopandas.GeoDataFrame
        The table; ``attrs["missing"]`` says why features have no row (no item, read failed
        after the retries, no date left after the steps), ``attrs["xsits"]`` records the
        query, the steps, ``window`` and ``reduce`` (both kept in the Parquet file).

    Raises
    ------
    xsits.errors.AOIError
        A feature is not a point, or an AOI column clashes with a column of the table.
    SampleError
        Invalid ``window``, ``reduce``, ``steps``, or an argument ``sample`` sets itself.
    xsits.errors.ExportError
        ``out`` is not a ``.parquet`` path (or exists, without ``overwrite``).
    xsits.errors.XsitsError
        Any other error of the search, the read or a step (a feature whose read fails after
        its retries is reported in ``attrs["missing"]`` instead).

    Examples
    --------
    Labelled points (here the demo's, labelled by hand) to a training table:

    >>> import os, tempfile, xsits
    >>> from xsits.demo import demo_aoi, demo_catalog_path
    >>> aoi = demo_aoi().assign(crop=["wheat", "maize"] * 3)
    >>> out = os.path.join(tempfile.mkdtemp(), "train.parquet")
    >>> table = xsits.sample(aoi, stac=str(demo_catalog_path()), bands=["B04", "B08", "SCL"],
    ...                      start="2024-04-01", end="2024-09-30", resolution=10,
    ...                      steps=xsits.ops.steps.build_steps(harmonize=True, mask=True,
    ...                                                    gapfill="linear"),
    ...                      indices="NDVI", out=out, progress=False)
    >>> table.groupby("crop").NDVI.median().round(1)
    crop
    maize    0.5
    wheat    0.5
    Name: NDVI, dtype: float32
    """
    steps_list = [steps] if callable(steps) else list(steps or [])
    index_list = [indices] if isinstance(indices, str) else list(indices or [])
    _check_args(window, reduce, steps_list, out, open_kwargs, scheduler, workers)
    if collections is not None:
        df = _sample_combined(read_aoi(aoi, id_column=id_column), collections, spec,
                              open_kwargs, steps=steps_list, window=int(window), reduce=reduce,
                              indices=index_list, bandpass=bandpass, dilate=dilate,
                              geometry=geometry, out=out, overwrite=overwrite,
                              progress=progress, scheduler=scheduler, workers=workers)
        return _finish(df, out, overwrite)
    cube_spec, rest = split_kwargs({**open_kwargs, "spec": spec})
    cube_spec = point_spec(cube_spec, int(window))
    aoi = read_aoi(aoi, id_column=id_column)
    columns = _check_aoi(aoi, [*cube_spec.query.bands, *index_list])
    if out is not None and not overwrite and Path(out).exists():  # before anything is read
        raise OutputExistsError(f"{out} already exists; pass overwrite=True to replace it")
    with _progress_bar(progress, len(aoi)) as bar, \
            Reader(steps_list, int(window), reduce, index_list, bar, scheduler, workers) as reader:
        missing, query = _read_parts(aoi, reader, cube_spec, rest)
    df = assemble(aoi, columns, reader.rows, geometry)
    missing.update(reader.missing)
    df.attrs["missing"] = {f: missing[f] for f in aoi["feature_id"] if f in missing}
    df.attrs["xsits"] = {"query": query, "steps": [steps_mod.describe(s) for s in steps_list],
                         "window": int(window), "reduce": reduce, "indices": index_list}
    return _finish(df, out, overwrite)


def _finish(df: pd.DataFrame, out: str | os.PathLike | None, overwrite: bool) -> pd.DataFrame:
    """Write the table when asked; warn of features without rows."""
    if out is not None:
        write_table(df, out, overwrite=overwrite)
    if df.attrs["missing"]:
        log.warning("sample: %d features have no row (see table.attrs['missing'])",
                    len(df.attrs["missing"]))
    return df


def _progress_bar(progress: bool | None, total: int) -> Any:
    """A tqdm bar over ``total`` points, shown by the batch engine's rule for progress bars."""
    show = want_progress(progress) and (progress is not None or get_options().progress)
    if show:
        # imported on use: tqdm.auto picks the notebook front end (ipywidgets) on import
        # and warns in a notebook without it, even for a disabled bar
        from tqdm.auto import tqdm as bar
    else:
        bar = tqdm
    return bar(total=total, unit="point", desc="xsits sample", disable=not show)


def _read_parts(aoi: gpd.GeoDataFrame, reader: Reader, spec: CubeSpec,
                open_kwargs: Mapping[str, Any]) -> tuple[dict[str, str], str | None]:
    """Search, plan and read the AOI part by part: why features have no cube, and the query.

    The lazy cubes of two parts at most are in memory: a part's are handed to ``reader``
    while its search goes on, and the previous part's reads are awaited once it is planned.
    """
    missing: dict[str, str] = {}
    query = None
    with relaxed_gc(), single_threaded_blas():  # see their docstrings
        for part in parts(aoi):
            queued = len(reader.futures)  # (what is still queued of the previous part)
            cubes = open_cubes(part, spec=spec, on_plan=reader.submit_plan,
                               on_group=reader.submit, **open_kwargs)
            reader.submit(cubes)  # any cube open_cubes did not hand to on_group
            missing.update(cubes.missing)
            if cubes.search is not None:
                query = cubes.search.query.describe()
            del cubes
            reader.wait(keep=len(reader.futures) - queued)  # the previous part read
        reader.wait()
    return missing, query


def _combined_specs(collections: Sequence[str], spec: CubeSpec | None,
                    open_kwargs: Mapping[str, Any], window: int
                    ) -> tuple[dict[str, CubeSpec], tuple[str, ...], dict[str, Any]]:
    """Each collection's point spec, the cross-sensor bands, the other ``open_cubes`` args."""
    if isinstance(collections, str) or not collections:
        raise SampleError(f"sample: collections={collections!r} must be a list of collection "
                          "ids, e.g. ['sentinel-2-l2a', 'landsat-c2-l2']")
    kwargs = dict(open_kwargs)
    if "collection" in kwargs:
        raise SampleError("sample: give collections= or collection=, not both")
    stac = kwargs.pop("stac", None)
    bands = tuple(kwargs.pop("bands", None) or COMMON_BANDS)
    base, rest = split_kwargs({**kwargs, "spec": spec})
    specs = {}
    for c in collections:
        where = stac.get(c) if isinstance(stac, Mapping) else stac
        if isinstance(stac, Mapping) and where is None:
            raise SampleError(f"sample: stac={dict(stac)!r} has no catalog for collection "
                              f"{c!r}; add it")
        specs[c] = point_spec(CubeSpec.from_kwargs(
            base, stac=where or base.query.stac, collection=c,
            bands=combined_bands(c, bands)), window)
    return specs, bands, rest


def _sample_combined(aoi: gpd.GeoDataFrame, collections: Sequence[str],
                     spec: CubeSpec | None, open_kwargs: Mapping[str, Any], *,
                     steps: list[Callable], window: int, reduce: str, indices: list[str],
                     bandpass: bool, dilate: int, geometry: bool, out: Any, overwrite: bool,
                     progress: bool | None, scheduler: Any, workers: int | None
                     ) -> pd.DataFrame:
    """:func:`sample` of several collections (see its ``collections``).

    With ``window=1`` each collection is read on its own and the rows merged by date, else
    through :func:`xsits.open_combined`'s cubes.
    """
    specs, bands, rest = _combined_specs(collections, spec, open_kwargs, window)
    columns = _check_aoi(aoi, [*bands, "sensor", "platform", *indices])
    if out is not None and not overwrite and Path(out).exists():  # before anything is read
        raise OutputExistsError(f"{out} already exists; pass overwrite=True to replace it")
    ids = "+".join(dict.fromkeys(lookup(c).id for c in collections))  # type: ignore[union-attr]
    missing: dict[str, dict[str, str]] = {c: {} for c in collections}
    more: dict[str, str] = {}
    if window == 1:  # each collection's points, then one series per point
        per: list[dict[str, Rows]] = []
        with _progress_bar(progress, len(aoi) * len(specs)) as bar:
            for c, cspec in specs.items():
                # (a 1-pixel window: dilating its mask changes nothing; pixelwise, the fast
                # point path reads it)
                with Reader([steps_mod.combine(bandpass=bandpass)], 1, reduce, [], bar,
                            scheduler, workers) as reader:
                    missing[c], _ = _read_parts(aoi, reader, cspec, rest)
                missing[c].update(reader.missing)
                per.append(reader.rows)
        merged = merge_rows(per)  # a point one collection could not read: no row (as a cube)
        failed = {f for m in missing.values() for f, r in m.items() if isinstance(r, ReadFailed)}
        rows, more = series_rows({f: r for f, r in merged.items() if f not in failed}, steps,
                                 reduce, indices, {"collection": ids})
    else:  # through the combined cubes: every step on each point's window
        first = next(iter(specs.values()))
        with _progress_bar(progress, len(aoi)) as bar, \
                Reader(steps, window, reduce, indices, bar, scheduler, workers) as reader:
            for part in parts(aoi):
                cubes = open_combined(part, list(specs), bandpass=bandpass, dilate=dilate,
                                      stac={c: s.query.stac for c, s in specs.items()},
                                      bands=bands, spec=first, **rest)
                reader.submit(cubes)
                more.update(cubes.missing)
                reader.wait()
        rows = reader.rows
        more.update(reader.missing)
    df = assemble(aoi, columns, rows, geometry)
    why: dict[str, str] = {}
    for f in aoi["feature_id"]:
        reasons = [(c, m[f]) for c, m in missing.items() if f in m]
        text = "; ".join(f"{c}: {r}" for c, r in reasons)
        if f not in rows:
            why[f] = ReadFailed(text) if any(isinstance(r, ReadFailed) for _, r in reasons) \
                else text
    why.update({f: r for f, r in more.items() if f not in rows})
    df.attrs["missing"] = {f: why[f] or "no item" for f in aoi["feature_id"] if f in why}
    df.attrs["xsits"] = {"query": {c: s.query.describe() for c, s in specs.items()},
                         "collections": list(specs), "bandpass": bool(bandpass),
                         "dilate": int(dilate),
                         "steps": [steps_mod.describe(s) for s in steps],
                         "window": int(window), "reduce": reduce, "indices": indices}
    return df
