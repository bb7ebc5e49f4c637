"""Point time series as one tidy table: :func:`sample` (``xsits sample`` on the command line).

Owns: turning labelled points into one row per (feature, date) with their AOI attributes,
the order in which the points' cubes are read (by tile, so every COG block is fetched and
decoded once for all points in it: the reader's byte and tile caches are per process), and
the Parquet / GeoParquet output.
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

import dataclasses
import logging
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any, NamedTuple

import dask
import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr

from xsits._common import (
    CLASS_BANDS,
    ContextThreadPool,
    as_float,
    one_line,
    relaxed_gc,
    single_threaded_blas,
)
from xsits.batch.run import Caller, prepare_process, process_pool, want_progress
from xsits.cube.aoi import read_aoi
from xsits.cube.load import GroupPlan, cube_of, open_cubes, time_coords
from xsits.cube.plan import band_attrs
from xsits.cube.points import Batch, Windows, read_points
from xsits.cube.spec import CubeSpec, split_kwargs
from xsits.errors import (
    AOIError,
    ExportError,
    LoadError,
    OutputExistsError,
    SampleError,
)
from xsits.ops import steps as steps_mod
from xsits.ops.indices import indices as compute_indices
from xsits.ops.mask import DEFAULT_CLASSES
from xsits.options import get_options
from xsits.out.export import atomic_path, ensure_dir
from xsits.stac.search import group_features

log = logging.getLogger(__name__)

#: Reductions of a window of pixels around each point.
REDUCES: tuple[str, ...] = ("mean", "median")
#: Points of one tile read by one ``dask.compute`` call (their cubes share the tile's files).
POINTS_PER_COMPUTE = 256
#: Points searched and planned together (one ``open_cubes`` call): a search group's points
#: are read by one job, so that each block of its files is read once for all of them.
POINTS_PER_OPEN = 50_000
#: The least ``cache_bytes`` of a worker process (``scheduler="processes"``: the workers
#: share the option's budget, a search group's blocks being read once by one job anyway).
WORKER_CACHE_MIN = 16 * 2**20
#: Cubes read at once (each fetches its files concurrently through the reader).
READ_THREADS = 4
#: Where :func:`sample` reads the points' cubes.
SCHEDULERS: tuple[str, ...] = ("threads", "processes")
#: Columns every table has (AOI columns and bands must not take these names).
RESERVED: tuple[str, ...] = ("feature_id", "time", "lon", "lat", "masked", "geometry")
#: ``open_cubes`` arguments that :func:`sample` sets itself.
OWN_ARGS: tuple[str, ...] = ("mode", "size", "buffer", "on_group", "on_plan", "aoi")
#: The grid fields of a spec :func:`sample` sets itself (:func:`point_spec`).
POINT_GRID: tuple[str, ...] = OWN_ARGS[:3]




def _is_client(scheduler: Any) -> bool:
    """Whether ``scheduler`` is a dask.distributed ``Client`` (it has an executor)."""
    return hasattr(scheduler, "get_executor")


def _check_args(window: int, reduce: str, steps: Sequence[Callable], out: Any,
                open_kwargs: Mapping[str, Any], scheduler: str, workers: int | None) -> None:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1 \
            or window % 2 == 0:
        raise SampleError(f"sample: window={window!r} must be an odd number of pixels (1, 3, "
                          "5...): the point's pixel and the same number of pixels on each side")
    if reduce not in REDUCES:
        raise SampleError(f"sample: unknown reduce={reduce!r}; use one of {', '.join(REDUCES)}")
    if not _is_client(scheduler) and scheduler not in SCHEDULERS:
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


def _scl_classes(steps: Sequence[Callable]) -> tuple[int, ...]:
    """The SCL classes masked by the steps' ``scl_mask`` (its defaults when there is none)."""
    for step in steps:
        if isinstance(step, steps_mod.scl_mask) and step.classes is not None:
            return tuple(step.classes)
    return DEFAULT_CLASSES


def _tile_key(ds: xr.Dataset) -> tuple[str, ...]:
    """The tiles (MGRS ids) a cube reads: points with the same ones share every file."""
    if "mgrs_tile" not in ds.coords:
        return (str(ds.attrs.get("crs", "")),)
    return tuple(sorted({str(t) for t in ds.coords["mgrs_tile"].values}))


class _Rows(NamedTuple):
    """One feature's columns: dates, bands (and indices), ``masked``, per-date coordinates."""

    time: np.ndarray
    values: dict[str, np.ndarray]
    masked: np.ndarray | None
    per_date: dict[str, np.ndarray]


def _dates_key(ds: xr.Dataset) -> tuple:
    """Cubes with equal keys have the same dates, per-date coordinates and variables."""
    coords = tuple((str(k), c.values.tobytes()) for k, c in sorted(ds.coords.items())
                   if c.dims == ("time",))
    variables = tuple((str(k), str(v.dtype), v.dims) for k, v in ds.data_vars.items())
    return coords, variables, tuple(ds.sizes.items())


def _side_by_side(cubes: Sequence[xr.Dataset]) -> xr.Dataset:
    """Cubes of the same dates as one cube, concatenated along ``x`` (no x/y coordinates).

    What pixelwise steps (:attr:`xsits.ops.steps.Step.pixelwise`) can run on at once: their
    result at a pixel depends only on its series and the per-date coordinates.
    """
    if len(cubes) == 1:
        return cubes[0]
    first = cubes[0]
    data = {name: (var.dims, np.concatenate([c[name].values for c in cubes],
                                            axis=var.get_axis_num("x")), var.attrs)
            for name, var in first.data_vars.items()}
    coords = {k: c.variable for k, c in first.coords.items() if not {"x", "y"} & set(c.dims)}
    return xr.Dataset(data, coords=coords, attrs=first.attrs)


def _points(var: xr.DataArray, n: int, reduce: str | None) -> np.ndarray:
    """``(time, n)`` values of ``n`` windows side by side: the centre pixel, or ``reduce``."""
    if set(var.dims) != {"time", "y", "x"}:
        raise SampleError(f"sample: variable {var.name!r} has dims {var.dims} after the steps; "
                          "sample takes (time, y, x) cubes")
    ny, nx = var.sizes["y"], var.sizes["x"] // n
    if reduce is None:
        return var.transpose("time", "y", "x").values.reshape(-1, ny, n, nx)[:, ny // 2, :,
                                                                             nx // 2]
    values = as_float(var).transpose("time", "y", "x").values.reshape(-1, ny, n, nx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # windows without a valid pixel
        return getattr(np, f"nan{reduce}")(values, axis=(1, 3)).astype(values.dtype)


def _batch_rows(raw: xr.Dataset, n: int, steps: Sequence[Callable], window: int,
                reduce: str, indices: Sequence[str], classes: tuple[int, ...]) -> list[_Rows]:
    """The steps, the indices and the windows' reduction on ``n`` windows side by side."""
    ds = raw
    for step in steps:
        ds = step(ds)
    if indices:

        ds = ds.assign(compute_indices(ds, list(indices)).data_vars)
    ds = ds.compute()  # a step may have returned lazy data (of these small numpy cubes)
    values = {str(name): _points(var, n, None if window == 1 or name in CLASS_BANDS
                                 else reduce)
              for name, var in ds.data_vars.items()}
    times = ds["time"].values
    masked = None
    where = pd.Index(raw["time"].values).get_indexer(times)
    if "SCL" in raw.data_vars and (where >= 0).all():  # the steps kept acquisition dates
        scl = raw["SCL"].transpose("time", "y", "x").values
        bad = np.isin(scl, classes).reshape(scl.shape[0], scl.shape[1], n, -1)
        masked = bad.all(axis=(1, 3))[where]  # (time, point): no clear pixel in the window
    per_date = {str(k): c.values for k, c in ds.coords.items()
                if c.dims == ("time",) and k != "time"}
    return [_Rows(times, {k: v[:, i] for k, v in values.items()},
                  None if masked is None else masked[:, i], per_date) for i in range(n)]


def _keep(fids: Sequence[str], got_rows: Sequence[_Rows], rows: dict[str, _Rows],
          missing: dict[str, str]) -> None:
    """File each feature's rows, or why it has none."""
    for fid, got in zip(fids, got_rows, strict=True):
        if len(got.time):
            rows[fid] = got
        else:
            missing[fid] = "no date left after the steps"


def _parts(aoi: gpd.GeoDataFrame) -> Iterator[gpd.GeoDataFrame]:
    """The AOI in parts of at most :data:`POINTS_PER_OPEN` points, nearby points together.

    Each part is searched and planned (:func:`xsits.open_cubes` with ``on_plan``) and read
    before the next part is planned, so memory does not grow with the number of points; the
    points of a search group (:func:`xsits.stac.search.group_features`) stay in one part, unless a
    group is larger than a part.
    """
    fp = gpd.GeoSeries(aoi.geometry.values, index=range(len(aoi)), crs=aoi.crs)
    order = [int(i) for group in group_features(fp) for i in group]
    for start in range(0, len(order), POINTS_PER_OPEN):
        yield aoi.iloc[sorted(order[start:start + POINTS_PER_OPEN])]


def _compute(cubes: Mapping[str, xr.Dataset]) -> dict[str, xr.Dataset]:
    """The cubes read into memory by one ``dask.compute`` of their arrays.

    Their dask arrays, not the Datasets: dask's packing of thousands of small Datasets cost
    more than the reads of their pixels (the coordinates are numpy already).
    """
    arrays = [var.data for cube in cubes.values() for var in cube.data_vars.values()]
    values = iter(dask.compute(*arrays, scheduler="threads", num_workers=READ_THREADS))
    return {fid: cube.copy(data={name: next(values) for name in cube.data_vars})
            for fid, cube in cubes.items()}


class _Spec(NamedTuple):
    """What reading a part of the points needs besides its cubes (sent to worker processes)."""

    steps: tuple[Callable, ...]
    window: int
    reduce: str
    indices: tuple[str, ...]
    caller: Caller


def _read_part(cubes: dict[str, xr.Dataset],
               spec: _Spec) -> tuple[dict[str, _Rows], dict[str, str]]:
    """Read one part's cubes and run the steps: the points' rows, and why others have none."""
    prepare_process(spec.caller)  # in a worker process: the caller's options, GDAL settings
    classes = _scl_classes(spec.steps)
    pixelwise = all(getattr(step, "pixelwise", False) for step in spec.steps)
    rows: dict[str, _Rows] = {}
    missing: dict[str, str] = {}
    try:
        loaded = _compute(cubes)
    except (LoadError, OSError):  # find the feature(s) at fault: one at a time
        loaded = {}
        for fid, cube in cubes.items():
            try:
                loaded.update(_compute({fid: cube}))
            except (LoadError, OSError) as err:
                missing[fid] = f"read failed: {one_line(err)}"
                log.warning("sample: feature %s not read: %s", fid, one_line(err))
    batches: dict[Any, list[str]] = {}  # pixelwise steps: cubes of one date set at once
    for fid, raw in loaded.items():
        batches.setdefault(_dates_key(raw) if pixelwise else fid, []).append(fid)
    for fids in batches.values():
        _keep(fids, _batch_rows(_side_by_side([loaded[f] for f in fids]), len(fids),
                                spec.steps, spec.window, spec.reduce, spec.indices, classes),
              rows, missing)
    return rows, missing


def _fast_rows(gp: GroupPlan, spec: _Spec,
               classes: tuple[int, ...]) -> tuple[dict[str, _Rows], dict[str, str]] | None:
    """A search group's rows without cubes (:func:`xsits.cube.points.read_points`), or None."""
    rows: dict[str, _Rows] = {}
    missing: dict[str, str] = {}
    by_crs: dict[str, list[str]] = {}
    for fid in gp.positions:
        by_crs.setdefault(str(gp.geoboxes[fid].crs), []).append(fid)
    for fids in by_crs.values():
        windows = Windows.of([gp.geoboxes[f] for f in fids])
        try:
            batches = read_points(gp.items, [gp.positions[f] for f in fids], windows)
        except (LoadError, OSError, ValueError) as err:  # the cubes find the feature(s) at fault
            log.debug("sample: reading points without cubes failed: %s", one_line(err))
            return None
        if batches is None:
            return None
        for batch in batches:
            _keep([fids[k] for k in batch.points],
                  _batch_rows(_batch_cube(gp, batch), len(batch.points), spec.steps,
                              spec.window, spec.reduce, spec.indices, classes), rows, missing)
    return rows, missing


def _batch_cube(gp: GroupPlan, batch: Batch) -> xr.Dataset:
    """Points read side by side as one cube: what :func:`_side_by_side` makes of cubes."""
    plan = gp.items
    groups = [[plan.items[i] for i in g] for g in batch.groups]
    times = np.array([plan.parsed[g[0]].nominal_datetime.replace(tzinfo=None)
                      for g in batch.groups], dtype="datetime64[ns]")
    data = {gp.renames.get(b, b): (("time", "y", "x"), arr, band_attrs(plan, b))
            for b, arr in batch.values.items()}
    return xr.Dataset(data, coords={"time": times, **time_coords(groups)})


def _read_group(gp: GroupPlan, spec: _Spec) -> tuple[dict[str, _Rows], dict[str, str]]:
    """One search group's points, read without cubes where they can be.

    Without cubes when the fast reader serves every file and the steps are pixelwise, else
    through their cubes (:func:`_read_part`).
    """
    prepare_process(spec.caller)
    classes = _scl_classes(spec.steps)
    if all(getattr(step, "pixelwise", False) for step in spec.steps):
        found = _fast_rows(gp, spec, classes)
        if found is not None:
            return found
    rows: dict[str, _Rows] = {}
    missing: dict[str, str] = {}
    fids = list(gp.positions)
    for start in range(0, len(fids), POINTS_PER_COMPUTE):  # the cubes of a few at a time
        cubes = {}
        for fid in fids[start:start + POINTS_PER_COMPUTE]:
            try:
                cubes[fid] = cube_of(gp.items, gp.positions[fid], gp.geoboxes[fid],
                                     attrs={"feature_id": fid}).rename(gp.renames)
            except Exception as err:
                missing[fid] = f"feature {fid!r}: cannot build the cube: {one_line(err)}"
        got, more = _read_part(cubes, spec)
        rows.update(got)
        missing.update(more)
    return rows, missing


class _Reader:
    """Reads groups of cubes, one tile at a time, on a worker; collects the tables.

    The worker is one thread of this process (``"threads"``: each part's cubes are read by
    :data:`READ_THREADS` threads), or a pool of processes (``"processes"``: parts read side by
    side, one per process; each process has its own byte and tile caches, and a tile's points
    stay in one part).
    """

    def __init__(self, steps: Sequence[Callable], window: int, reduce: str,
                 indices: Sequence[str], bar: Any, scheduler: str = "threads",
                 workers: int | None = None) -> None:
        caller = Caller.here()
        if scheduler == "processes":  # each worker keeps its share of the caches' budget
            share = max(WORKER_CACHE_MIN, caller.options.cache_bytes //
                        (2 * (workers or os.cpu_count() or 1)))
            caller = caller._replace(options=dataclasses.replace(caller.options,
                                                                 cache_bytes=share))
        self.spec = _Spec(tuple(steps), window, reduce, tuple(indices), caller)
        self.bar = bar
        self.rows: dict[str, _Rows] = {}
        self.missing: dict[str, str] = {}
        self.sent: set[str] = set()
        self.pool: Executor
        if _is_client(scheduler):  # a dask.distributed cluster's workers read the groups
            self.pool = scheduler.get_executor()
        elif scheduler == "processes":
            self.pool = process_pool(workers)
        else:
            self.pool = ContextThreadPool(1, thread_name_prefix="xsits-sample")
        self.futures: list[Future] = []

    def submit(self, cubes: Mapping[str, xr.Dataset]) -> None:
        """Queue ``cubes`` (a search group's): read in tile order while the search goes on."""
        todo = {f: c for f, c in cubes.items() if f not in self.sent}
        self.sent.update(todo)
        by_tile: dict[tuple, list[str]] = {}
        for fid, cube in todo.items():
            by_tile.setdefault(_tile_key(cube), []).append(fid)
        for fids in by_tile.values():
            for i in range(0, len(fids), POINTS_PER_COMPUTE):
                part = {f: todo[f] for f in fids[i:i + POINTS_PER_COMPUTE]}
                fut = self.pool.submit(_read_part, part, self.spec)
                fut.add_done_callback(self._ticker(len(part)))
                self.futures.append(fut)

    def submit_plan(self, gp: GroupPlan) -> bool:
        """Queue a search group's points (read without cubes when they can be)."""
        if gp.items is None or not gp.positions:
            return False
        fids = [f for f in gp.positions if f not in self.sent]
        self.sent.update(fids)
        part = dataclasses.replace(gp, positions={f: gp.positions[f] for f in fids})
        fut = self.pool.submit(_read_group, part, self.spec)
        fut.add_done_callback(self._ticker(len(fids)))
        self.futures.append(fut)
        return True

    def _ticker(self, n: int) -> Callable[[Future], None]:
        def tick(fut: Future) -> None:  # as soon as a part is read (its rows: in wait)
            if not fut.cancelled() and fut.exception() is None:
                self.bar.update(n)

        return tick

    def wait(self, keep: int = 0) -> None:
        """Collect the queued reads but the last ``keep``; the first error is raised here."""
        while len(self.futures) > keep:
            rows, missing = self.futures.pop(0).result()
            self.rows.update(rows)
            self.missing.update(missing)


def _concat_per_date(pieces: Sequence[np.ndarray]) -> Any:
    """One per-date column of many points; strings without a copy per row.

    The pieces are the per-date coordinates of each point, the same few arrays over and over
    (points with the same dates share them): strings are taken from their distinct values by
    index, not concatenated as fixed-width unicode.
    """
    if pieces[0].dtype.kind != "U":
        return np.concatenate(pieces)
    ids: dict[int, int] = {}
    for p in pieces:
        ids.setdefault(id(p), len(ids))
    distinct = list({id(p): p for p in pieces}.values())
    starts = np.cumsum([0] + [len(p) for p in distinct])
    values = pd.array(np.concatenate(distinct), dtype="str")
    codes = np.concatenate([np.arange(starts[ids[id(p)]], starts[ids[id(p)]] + len(p))
                            for p in pieces])
    return values.take(codes)


def _assemble(aoi: gpd.GeoDataFrame, columns: list[str], rows: Mapping[str, _Rows],
              geometry: bool) -> pd.DataFrame:
    """One DataFrame in AOI order (see :func:`sample` for its columns)."""
    lonlat = aoi.geometry.to_crs("EPSG:4326")
    at_of: dict[tuple, list[int]] = {}  # features with the same columns, built at once
    for i, fid in enumerate(aoi["feature_id"]):
        if fid in rows:
            g = rows[fid]
            at_of.setdefault((g.masked is None, tuple(g.values), tuple(g.per_date)),
                             []).append(i)
    parts = []
    for at in at_of.values():
        got = [rows[aoi["feature_id"].iloc[i]] for i in at]
        rep = np.repeat(np.array(at, dtype=int), [len(g.time) for g in got])
        part = {"feature_id": aoi["feature_id"].to_numpy(dtype=object)[rep]}
        part.update({str(c): aoi[c].to_numpy()[rep] for c in columns})
        part["time"] = np.concatenate([g.time for g in got])
        part.update({k: np.concatenate([g.values[k] for g in got]) for k in got[0].values})
        part["lon"] = lonlat.x.to_numpy()[rep]
        part["lat"] = lonlat.y.to_numpy()[rep]
        if got[0].masked is not None:
            part["masked"] = np.concatenate([g.masked for g in got])
        part.update({k: _concat_per_date([g.per_date[k] for g in got]) for k in got[0].per_date})
        if geometry:
            part["geometry"] = aoi.geometry.to_numpy()[rep]
        part["_at"] = rep
        parts.append(pd.DataFrame(part, copy=False))
    if len(parts) > 1:  # back to the AOI's order
        parts = [pd.concat(parts, ignore_index=True).sort_values("_at", kind="stable")]
    parts = [p.drop(columns="_at") for p in parts]
    if parts:
        df = pd.concat(parts, ignore_index=True)
    else:
        df = pd.DataFrame({"feature_id": pd.Series([], dtype=object),
                           **{str(c): aoi[c].iloc[:0] for c in columns},
                           "time": pd.Series([], dtype="datetime64[ns]")})
    for col in columns:  # categories, nullable ints... as in the AOI
        df[str(col)] = df[str(col)].astype(aoi[col].dtype)
    if geometry:
        return gpd.GeoDataFrame(df, geometry="geometry" if parts else None, crs=aoi.crs)
    return df


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
    (:func:`xsits.out.export.atomic_path`); ``df.attrs`` are stored with it (pandas keeps them).

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
    cube_spec, rest = split_kwargs({**open_kwargs, "spec": spec})
    cube_spec = point_spec(cube_spec, int(window))
    aoi = read_aoi(aoi, id_column=id_column)
    columns = _check_aoi(aoi, [*cube_spec.query.bands, *index_list])
    if out is not None and not overwrite and Path(out).exists():  # before anything is read
        raise OutputExistsError(f"{out} already exists; pass overwrite=True to replace it")
    # the batch engine's rule for progress bars
    show = want_progress(progress) and (progress is not None or get_options().progress)
    if show:
        from tqdm.auto import tqdm
    else:  # tqdm.auto warns in notebooks without ipywidgets even when disabled
        from tqdm import tqdm
    bar = tqdm(total=len(aoi), unit="point", desc="xsits sample", disable=not show)
    reader = _Reader(steps_list, int(window), reduce, index_list, bar, scheduler, workers)
    missing: dict[str, str] = {}
    query = None
    try:
        with relaxed_gc(), single_threaded_blas():  # see their docstrings
            for part in _parts(aoi):  # the lazy cubes of two parts at most are in memory
                queued = len(reader.futures)  # (what is still queued of the previous part)
                cubes = open_cubes(part, spec=cube_spec, on_plan=reader.submit_plan,
                                   on_group=reader.submit, **rest)
                reader.submit(cubes)  # any cube open_cubes did not hand to on_group
                missing.update(cubes.missing)
                if cubes.search is not None:
                    query = cubes.search.query.describe()
                del cubes
                reader.wait(keep=len(reader.futures) - queued)  # the previous part read
            reader.wait()
    finally:
        if _is_client(scheduler):
            for fut in reader.futures:
                fut.cancel()
            reader.pool.shutdown(wait=True)  # (the cluster stays up: it is the caller's)
        else:
            reader.pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    df = _assemble(aoi, columns, reader.rows, geometry)
    missing.update(reader.missing)
    df.attrs["missing"] = {f: missing[f] for f in aoi["feature_id"] if f in missing}
    df.attrs["xsits"] = {"query": query, "steps": [steps_mod.describe(s) for s in steps_list],
                         "window": int(window), "reduce": reduce, "indices": index_list}
    if out is not None:
        write_table(df, out, overwrite=overwrite)
    if df.attrs["missing"]:
        log.warning("sample: %d of %d features have no row (see table.attrs['missing'])",
                    len(df.attrs["missing"]), len(aoi))
    return df
