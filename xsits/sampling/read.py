"""Reading points: which points' cubes (or windows) are read together, where, and when.

Points are planned and read part by part (:func:`parts`: nearby points together, at most
:data:`POINTS_PER_OPEN` at once), each search group's points as soon as its plan is made,
one tile at a time, so every COG block is fetched and decoded once for all points in it (the
reader's byte and tile caches are per process). Without cubes when the fast reader serves
every file and the steps are pixelwise (:func:`xsits.cube.points.read_points`), else through
each point's cube.

Owns: :class:`Reader` (the worker that reads: a thread, a pool of processes or a
dask.distributed cluster), the order and size of reads, and a feature whose read fails
becoming a reason in ``missing`` instead of an error.
Must not: check :func:`xsits.sample`'s arguments, search (``open_cubes`` does) or decide the
table's columns (:mod:`xsits.sampling.rows`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future
from typing import Any, NamedTuple

import dask
import geopandas as gpd
import xarray as xr

from xsits._common import ContextThreadPool, one_line
from xsits.batch.run import Caller, prepare_process, process_pool
from xsits.cube.load import GroupPlan, cube_of
from xsits.cube.points import Windows, read_points
from xsits.errors import LoadError
from xsits.sampling.rows import (
    Rows,
    batch_cube,
    batch_rows,
    dates_key,
    keep_rows,
    scl_classes,
    side_by_side,
)
from xsits.stac.search import group_features

__all__ = ["POINTS_PER_COMPUTE", "POINTS_PER_OPEN", "READ_THREADS", "WORKER_CACHE_MIN",
           "ReadFailed", "ReadSpec", "Reader", "is_client", "parts"]

log = logging.getLogger(__name__)


class ReadFailed(str):
    """Why a point has no row: its pixels could not be read (after the retries).

    A ``str`` (equal to its text) in :func:`xsits.sample`'s ``attrs["missing"]``; ``xsits
    sample`` exits with 1 when a point has one.

    Examples
    --------
    >>> why = ReadFailed("read failed: HTTP 404")
    >>> isinstance(why, str), why == "read failed: HTTP 404"
    (True, True)
    """

    __slots__ = ()


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


def is_client(scheduler: Any) -> bool:
    """Whether ``scheduler`` is a dask.distributed ``Client`` (it has an executor)."""
    return hasattr(scheduler, "get_executor")


def _tile_key(ds: xr.Dataset) -> tuple[str, ...]:
    """The tiles (MGRS ids) a cube reads: points with the same ones share every file."""
    if "mgrs_tile" not in ds.coords:
        return (str(ds.attrs.get("crs", "")),)
    return tuple(sorted({str(t) for t in ds.coords["mgrs_tile"].values}))


def parts(aoi: gpd.GeoDataFrame) -> Iterator[gpd.GeoDataFrame]:
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


class ReadSpec(NamedTuple):
    """What reading a part of the points needs besides its cubes (sent to worker processes)."""

    steps: tuple[Callable, ...]
    window: int
    reduce: str
    indices: tuple[str, ...]
    caller: Caller


def _read_part(cubes: dict[str, xr.Dataset],
               spec: ReadSpec) -> tuple[dict[str, Rows], dict[str, str]]:
    """Read one part's cubes and run the steps: the points' rows, and why others have none."""
    prepare_process(spec.caller)  # in a worker process: the caller's options, GDAL settings
    classes = scl_classes(spec.steps)
    pixelwise = all(getattr(step, "pixelwise", False) for step in spec.steps)
    rows: dict[str, Rows] = {}
    missing: dict[str, str] = {}
    try:
        loaded = _compute(cubes)
    except (LoadError, OSError):  # find the feature(s) at fault: one at a time
        loaded = {}
        for fid, cube in cubes.items():
            try:
                loaded.update(_compute({fid: cube}))
            except (LoadError, OSError) as err:
                missing[fid] = ReadFailed(f"read failed: {one_line(err)}")
                log.warning("sample: feature %s not read: %s", fid, one_line(err))
    batches: dict[Any, list[str]] = {}  # pixelwise steps: cubes of one date set at once
    for fid, raw in loaded.items():
        batches.setdefault(dates_key(raw) if pixelwise else fid, []).append(fid)
    for fids in batches.values():
        keep_rows(fids, batch_rows(side_by_side([loaded[f] for f in fids]), len(fids),
                                spec.steps, spec.window, spec.reduce, spec.indices, classes),
              rows, missing)
    return rows, missing


def _fast_rows(gp: GroupPlan, spec: ReadSpec,
               classes: tuple[int, ...]) -> tuple[dict[str, Rows], dict[str, str]] | None:
    """A search group's rows without cubes (:func:`xsits.cube.points.read_points`), or None."""
    rows: dict[str, Rows] = {}
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
            keep_rows([fids[k] for k in batch.points],
                  batch_rows(batch_cube(gp, batch), len(batch.points), spec.steps,
                              spec.window, spec.reduce, spec.indices, classes), rows, missing)
    return rows, missing


def _read_group(gp: GroupPlan, spec: ReadSpec) -> tuple[dict[str, Rows], dict[str, str]]:
    """One search group's points, read without cubes where they can be.

    Without cubes when the fast reader serves every file and the steps are pixelwise, else
    through their cubes (:func:`_read_part`).
    """
    prepare_process(spec.caller)
    classes = scl_classes(spec.steps)
    if all(getattr(step, "pixelwise", False) for step in spec.steps):
        found = _fast_rows(gp, spec, classes)
        if found is not None:
            return found
    rows: dict[str, Rows] = {}
    missing: dict[str, str] = {}
    fids = list(gp.positions)
    for start in range(0, len(fids), POINTS_PER_COMPUTE):  # the cubes of a few at a time
        cubes = {}
        for fid in fids[start:start + POINTS_PER_COMPUTE]:
            try:
                cubes[fid] = cube_of(gp.items, gp.positions[fid], gp.geoboxes[fid],
                                     attrs={"feature_id": fid,
                                            "collection": gp.search.query.collection}
                                     ).rename(gp.renames)
            except Exception as err:
                missing[fid] = f"feature {fid!r}: cannot build the cube: {one_line(err)}"
        got, more = _read_part(cubes, spec)
        rows.update(got)
        missing.update(more)
    return rows, missing


class Reader:
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
        self.spec = ReadSpec(tuple(steps), window, reduce, tuple(indices), caller)
        self.scheduler = scheduler
        self.bar = bar
        self.rows: dict[str, Rows] = {}
        self.missing: dict[str, str] = {}
        self.sent: set[str] = set()
        self.pool: Executor
        if is_client(scheduler):  # a dask.distributed cluster's workers read the groups
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


    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker: queued reads are cancelled (a cluster stays up: it is the caller's)."""
        if is_client(self.scheduler):
            for fut in self.futures:
                fut.cancel()
            self.pool.shutdown(wait=True)
        else:
            self.pool.shutdown(wait=True, cancel_futures=True)
