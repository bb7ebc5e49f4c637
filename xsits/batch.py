"""Many features through ``dask.compute``: process, export, report; resumable and fault tolerant.

:func:`compute_all` is the batch engine behind ``xsits fetch``. Features are handled in batches
of at most ``batch_size``, so the task graph (and the STAC search, when the input is a
source) never holds all features at once; with a source, each group's cubes form a batch as
soon as its search returns, computed while the next groups are searched (at most
:data:`BATCHES_IN_FLIGHT` at once). Each feature is **one** delayed task that reads its
cube (all its files fetched at once and retried by :mod:`xsits.reader`; its chunks on a
process-wide thread pool), applies the steps in memory inside a ``try``/``except``, and writes
it with the atomic :func:`xsits.export.export`. A failing
feature therefore becomes a ``failed`` report row instead of aborting the batch, and a feature
is either written whole or not at all (odc-stac ``fail_on_error=True``: never missing dates or
NaN pixels from a failed read).

The lazy cube travels inside a plain job object, hidden from dask (dask would otherwise compute
it as a dependency of the task, outside the ``try``). Only picklable things travel: the job
(cube graph, steps, output settings), so the same tasks run on threads, processes or a
``dask.distributed`` cluster, where a lost worker's tasks are simply rescheduled.

After every batch ``<out_dir>/manifest.json`` is replaced atomically; it records the query, the
steps and every feature's status. A rerun with the same arguments skips features whose output
file exists (``skipped``), so an interrupted run is finished by running it again.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
import logging
import math
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import dask.local
import dask.multiprocessing
import dask.threaded
import pandas as pd
import xarray as xr

from xsits._common import one_line, redact, relaxed_gc, single_threaded_blas
from xsits._version import __version__
from xsits.errors import OutputExistsError, XsitsError
from xsits.options import set_options

__all__ = [
    "MANIFEST_NAME",
    "REDACTED_LOGGERS",
    "REPORT_COLUMNS",
    "STATUSES",
    "AoiSource",
    "BatchError",
    "compute_all",
    "redact",
]

log = logging.getLogger(__name__)

#: Columns of the report DataFrame, in order.
REPORT_COLUMNS: tuple[str, ...] = ("feature_id", "status", "path", "n_dates", "seconds", "error")
#: Feature statuses: ``written`` (file written now), ``skipped`` (file already there),
#: ``empty`` (no item or no date left: nothing written), ``failed`` (see ``error``).
STATUSES: tuple[str, ...] = ("written", "skipped", "empty", "failed")
#: Name of the manifest written in ``out_dir``.
MANIFEST_NAME = "manifest.json"
_SYNC_SCHEDULERS = ("synchronous", "sync", "single-threaded")
#: The local schedulers by name: their functions (``dask.compute(scheduler=<function>)``).
_SCHEDULER_GETS: dict[str, Callable] = {
    "threads": dask.threaded.get,
    "processes": dask.multiprocessing.get,
    **dict.fromkeys(_SYNC_SCHEDULERS, dask.local.get_sync),
}
_TASK_PREFIX = "xsits-feature"
_ERROR_MAX = 500


class BatchError(XsitsError, ValueError):
    """An argument of :func:`compute_all` is invalid (steps, scheduler, batch size, input)."""


# --------------------------------------------------------------------------- redaction


class _RedactFilter(logging.Filter):
    """Rewrites log records with :func:`redact` (odc-loader logs the hrefs it failed to read)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a malformed record is not ours to fix
            return True
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, ()
        return True


_REDACT_FILTER = _RedactFilter()
#: Loggers whose records may quote signed hrefs; :func:`compute_all` redacts them.
REDACTED_LOGGERS = ("xsits", "odc", "odc.loader", "odc.loader._rio", "odc.stac", "rasterio",
                    "rasterio._env", "rasterio._err", "rasterio._base", "pystac_client",
                    "urllib3.connectionpool", "distributed.worker")


def _install_log_redaction() -> None:
    """Add the redacting filter to every logger that may quote an href (idempotent).

    Logger filters only see records created on that very logger, so the filter goes on each
    known emitter and on every existing child of those names.
    """
    names = set(REDACTED_LOGGERS)
    names |= {n for n in logging.root.manager.loggerDict
              if n.split(".")[0] in {"xsits", "odc", "rasterio", "pystac_client"}}
    for name in names:
        lg = logging.getLogger(name)
        if _REDACT_FILTER not in lg.filters:
            lg.addFilter(_REDACT_FILTER)


def _error_text(err: BaseException) -> str:
    """One redacted line: ``Type: message (Cause: message)``.

    The innermost cause is appended because rasterio's own message is often just
    "Read failed. See previous exception for details."
    """

    def one(e: BaseException) -> str:
        msg = one_line(e)
        name = type(e).__name__
        return msg if isinstance(e, XsitsError) or msg.startswith(name) else f"{name}: {msg}"

    text = one(err)
    cause, seen = err, {id(err)}
    while (nxt := cause.__cause__ or cause.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        cause = nxt
    if cause is not err and one_line(cause) not in text:
        text += f" ({one(cause)})"
    return text[:_ERROR_MAX]


# --------------------------------------------------------------------------- inputs


@dataclass
class AoiSource:
    """Features plus :func:`xsits.open_cubes` arguments; cubes are opened one batch at a time.

    What ``xsits fetch`` hands to :func:`compute_all`; any object with ``.aoi`` and
    ``.open_kwargs`` (such as the Intake ``sits`` source) works the same way. Features dropped
    by ``read_aoi(on_invalid="drop")`` (``aoi.attrs["dropped"]``) are reported ``failed``.

    Parameters
    ----------
    aoi
        A GeoDataFrame from :func:`xsits.read_aoi` (with a ``feature_id`` column).
    open_kwargs
        Keyword arguments of :func:`xsits.open_cubes` (``stac``, ``bands``, ``start``...).

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely.geometry import Point
    >>> from xsits import read_aoi
    >>> aoi = read_aoi(gpd.GeoDataFrame(geometry=[Point(8.4, 49.8)], crs=4326))
    >>> AoiSource(aoi, {"stac": "earth-search", "max_cloud": 10}).open_kwargs["max_cloud"]
    10
    """

    aoi: Any
    open_kwargs: dict[str, Any] = field(default_factory=dict)


class _Job:
    """Everything one feature task needs; a plain object so dask does not look inside it."""

    __slots__ = ("fid", "ds", "steps", "path", "overwrite", "compress", "io_threads",
                 "retry_delay")

    def __init__(self, fid: str, ds: xr.Dataset, steps: Sequence[Callable], path: Path,
                 overwrite: bool, compress: bool, io_threads: int, retry_delay: float) -> None:
        self.fid, self.ds, self.steps, self.path = fid, ds, tuple(steps), path
        self.overwrite, self.compress = overwrite, compress
        self.io_threads, self.retry_delay = io_threads, retry_delay

    def __getstate__(self) -> tuple:
        return tuple(getattr(self, s) for s in self.__slots__)

    def __setstate__(self, state: tuple) -> None:
        for name, value in zip(self.__slots__, state, strict=True):
            setattr(self, name, value)


def _row(fid: str, status: str, path: Any = None, n_dates: int | None = None,
         seconds: float = 0.0, error: str | None = None) -> dict[str, Any]:
    return {"feature_id": fid, "status": status, "path": None if path is None else str(path),
            "n_dates": n_dates, "seconds": round(float(seconds), 3), "error": error}


def _is_empty_reason(reason: str) -> bool:
    """``cubes.missing`` reasons meaning 'no item here' (empty) rather than an error (failed)."""
    return bool(re.search(r"\bno\b.*\bitems?\b", reason, re.I)) and "failed" not in reason


def _missing_row(fid: str, reason: str) -> dict[str, Any]:
    reason = redact(str(reason))[:_ERROR_MAX]
    if _is_empty_reason(reason):
        return _row(fid, "empty", n_dates=0, error=reason)
    return _row(fid, "failed", error=reason)


_GDAL_READY = False
_NETCDF_LOCK = threading.Lock()
_IO_POOLS: dict[int, Any] = {}
_IO_POOLS_LOCK = threading.Lock()
#: Threads reading chunks (COG range requests) for all features of a process: sized for
#: network latency, not for cores (reads wait on the network with the GIL released).
IO_THREADS = 16
#: Features processed at once by the ``"threads"`` scheduler (their reads share the I/O pool).
FEATURE_THREADS = 4
#: Batches computing at once: a source's next groups start computing as soon as their searches
#: return, without waiting for the slowest feature of the batch before (threads: all of them
#: share the :data:`FEATURE_THREADS`).
BATCHES_IN_FLIGHT = 4


def _io_pool(n: int) -> Any:
    """The process-wide I/O thread pool of ``n`` threads (created once, shared by features)."""
    from concurrent.futures import ThreadPoolExecutor

    with _IO_POOLS_LOCK:
        if n not in _IO_POOLS:
            _IO_POOLS[n] = ThreadPoolExecutor(n, thread_name_prefix="xsits-io")
        return _IO_POOLS[n]


def _ensure_gdal() -> None:
    """Apply xsits' GDAL HTTP settings (retries...) once in this process (dask workers too)."""
    global _GDAL_READY
    if not _GDAL_READY:
        from xsits.load import configure_gdal

        configure_gdal()
        _GDAL_READY = True


_NAME_ATTRS = ("feature_id", "mode", "start", "end")


def _planned_path(attrs: Mapping[str, Any], steps: Sequence[Callable], out_dir: Path,
                  fmt: str | None) -> Path:
    """Where a feature is written, planned before anything is read.

    :func:`xsits.export.output_path` of the input cube's naming attributes as changed by the
    steps' ``output_attrs``, so a rerun finds the file without computing anything.
    """
    from xsits.export import output_path

    named = {k: attrs[k] for k in _NAME_ATTRS if attrs.get(k) is not None}
    for step in steps:
        hook = getattr(step, "output_attrs", None)
        if callable(hook):
            named = dict(hook(named))
    return Path(output_path(xr.Dataset(attrs=named), out_dir, format=fmt))


def _source_attrs(fid: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The naming attributes :func:`xsits.open_cubes` will give feature ``fid``'s cube."""
    import inspect

    from xsits.load import open_cubes
    from xsits.stac import StacQuery

    params = inspect.signature(open_cubes).parameters
    result = kwargs.get("search_result")
    if result is not None:
        q = result.query
    else:  # StacQuery normalises the dates exactly as open_cubes does
        q = StacQuery(**{k: kwargs.get(k, params[k].default if k in params else None)
                         for k in ("start", "end") if k in kwargs or k in params})
    mode = kwargs.get("mode", params["mode"].default if "mode" in params else "image")
    return {"feature_id": fid, "mode": mode, "start": q.start, "end": q.end}


def _run_feature(job: _Job) -> dict[str, Any]:
    """Process and write one feature; never raises (errors become a ``failed`` row)."""
    from xsits.export import export

    t0 = time.perf_counter()
    path = job.path
    if path.exists() and not job.overwrite:  # e.g. written by a worker that was then lost
        return _row(job.fid, "skipped", path, seconds=time.perf_counter() - t0)
    _ensure_gdal()
    _install_log_redaction()  # in worker processes too
    try:
        # the cube is read first (its files fetched together, see xsits.reader; its
        # chunks on the shared I/O pool), then the steps run in memory: on a small
        # cube, numpy is much cheaper than building a dask graph per step; failed
        # requests were retried by xsits.retry inside the read
        ds = job.ds.compute(scheduler=dask.threaded.get, pool=_io_pool(job.io_threads))
        for step in job.steps:
            ds = step(ds)
        n_dates = int(ds.sizes["time"]) if "time" in ds.sizes else None
        if n_dates == 0:
            return _row(job.fid, "empty", n_dates=0, seconds=time.perf_counter() - t0,
                        error="no date left after the steps; nothing written")
        ds = ds.compute()  # a step may still have returned lazy data
        # netCDF4/HDF5 is not thread-safe: one NetCDF write at a time per process
        with _NETCDF_LOCK if path.suffix.lower() == ".nc" else contextlib.nullcontext():
            written = export(ds, path, overwrite=job.overwrite, compress=job.compress)
        return _row(job.fid, "written", written, n_dates, time.perf_counter() - t0)
    except OutputExistsError:
        return _row(job.fid, "skipped", path, seconds=time.perf_counter() - t0)
    except Exception as err:  # one feature must never sink the batch
        error = err
    assert error is not None
    text = _error_text(error)
    log.warning("feature %s failed: %s", job.fid, text)
    return _row(job.fid, "failed", seconds=time.perf_counter() - t0, error=text)


# --------------------------------------------------------------------------- batches


@dataclass
class _Batch:
    cubes: Mapping[str, xr.Dataset]
    rows: list[dict[str, Any]]  # rows already decided (missing, dropped, skipped)


class _Plan:
    """All feature ids (report order) and a generator of batches."""

    def __init__(self, ids: list[str], batches: Iterator[_Batch], source_info: Any) -> None:
        self.ids = ids
        self.batches = batches
        self.source_info = source_info


def _chunks(seq: Sequence, n: int) -> Iterator[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def _locality_key(ds: xr.Dataset) -> tuple:
    """Sort key putting cubes that read the same files next to each other (same tile, near)."""
    tile = ds.coords["mgrs_tile"].values[0] if "mgrs_tile" in ds.coords and ds.sizes.get(
        "time") else ""
    return (str(ds.attrs.get("crs", "")), str(tile), float(ds.attrs.get("center_y", 0.0)),
            float(ds.attrs.get("center_x", 0.0)))


def _plan_mapping(cubes: Mapping[str, xr.Dataset], batch_size: int) -> _Plan:
    missing = dict(getattr(cubes, "missing", None) or {})
    fids = [str(f) for f in cubes]
    ids = fids + [f for f in missing if f not in cubes]
    # features sharing files run one after the other: their bytes come from the reader's
    # cache (the report keeps the input order)
    keys = {f: _locality_key(ds) for f, ds in cubes.items()}
    order = sorted(cubes, key=lambda f: keys[f])

    def gen() -> Iterator[_Batch]:
        yield _Batch({}, [_missing_row(f, r) for f, r in missing.items() if f not in cubes])
        for part in _chunks(order, batch_size):
            yield _Batch({str(f): cubes[f] for f in part}, [])

    return _Plan(ids, gen(), None)


def _spatial_order(aoi: Any) -> list[int]:
    """Row positions ordered so that nearby features share a batch (and a STAC search)."""
    import geopandas as gpd

    from xsits.stac import group_features

    if len(aoi) == 0:
        return []
    geoms = aoi.geometry.to_crs("EPSG:4326")
    fp = gpd.GeoSeries(geoms.values, index=range(len(aoi)), crs="EPSG:4326")
    return [int(i) for group in group_features(fp) for i in group]


def _plan_source(source: Any, batch_size: int, out_dir: Path, fmt: str | None,
                 overwrite: bool, steps: Sequence[Callable], retries: int,
                 retry_delay: float) -> _Plan:

    aoi = source.aoi
    kwargs = dict(source.open_kwargs or {})
    dropped = dict((getattr(aoi, "attrs", None) or {}).get("dropped", {}))
    fids = [str(f) for f in aoi["feature_id"]]
    ids = fids + [f for f in dropped if f not in set(fids)]

    def gen() -> Iterator[_Batch]:
        yield _Batch({}, [_row(f, "failed", error=f"feature {f!r}: {redact(str(r))}")
                          for f, r in dropped.items() if f not in set(fids)])
        rows, subs = [], []
        for part in _chunks(_spatial_order(aoi), batch_size):
            todo = []
            for pos in part:
                fid = fids[pos]
                try:
                    path = _planned_path(_source_attrs(fid, kwargs), steps, out_dir, fmt)
                except XsitsError:  # reported with the cube (or its absence) below
                    path = None
                if path is not None and path.exists() and not overwrite:
                    rows.append(_row(fid, "skipped", path))
                else:
                    todo.append(pos)
            if todo:
                subs.append(aoi.iloc[sorted(todo)])
        yield _Batch({}, rows)
        yield from _streamed_batches(subs, kwargs, batch_size)

    return _Plan(ids, gen(), _describe_kwargs(kwargs))


_END = object()


def _streamed_batches(subs: Sequence[Any], kwargs: Mapping[str, Any],
                      batch_size: int) -> Iterator[_Batch]:
    """Batches of cubes as their searches return: the next groups search while one computes.

    A thread opens the cubes of each part of the AOI in turn (:func:`xsits.open_cubes`, its
    ``on_group`` hook queueing each group's cubes); every batch takes what is queued (at
    least one group, at most ``batch_size`` features). The queue is bounded: the searches run
    at most a few groups ahead of the computing.
    """
    import queue

    from xsits.load import open_cubes

    out: queue.Queue = queue.Queue(maxsize=16)
    stop = threading.Event()

    def put(item: Any) -> None:
        while not stop.is_set():
            try:
                return out.put(item, timeout=0.2)
            except queue.Full:
                continue

    def produce() -> None:
        sent: set[str] = set()

        def send(group: Mapping[str, xr.Dataset]) -> None:
            sent.update(group)
            put(group)

        try:
            for sub in subs:
                cubes = open_cubes(sub, on_group=send, **kwargs)
                ids = set(sub["feature_id"])
                if any(f not in sent for f in cubes):  # cubes not handed out by on_group
                    send({f: c for f, c in cubes.items() if f not in sent})
                put([_missing_row(f, r) for f, r in cubes.missing.items()
                     if f in ids and f not in cubes])
        except BaseException as err:  # raised again by the consumer
            put(err)
        finally:
            put(_END)

    thread = threading.Thread(target=produce, name="xsits-search", daemon=True)
    thread.start()
    try:
        ended = False
        while not ended:
            got = [out.get()]
            n = len(got[0]) if isinstance(got[0], Mapping) else 0
            while n < batch_size:
                try:
                    got.append(out.get_nowait())
                except queue.Empty:
                    break
                n += len(got[-1]) if isinstance(got[-1], Mapping) else 0
            cubes: dict[str, xr.Dataset] = {}
            rows: list[dict[str, Any]] = []
            for item in got:
                if item is _END:
                    ended = True
                elif isinstance(item, BaseException):
                    raise item
                elif isinstance(item, list):
                    rows += item
                else:
                    cubes.update(item)
            yield _Batch(cubes, rows)
    finally:
        stop.set()
        thread.join(timeout=5)


def _plan_batches_method(source: Any, batch_size: int) -> _Plan:
    aoi = getattr(source, "aoi", None)
    ids = [] if aoi is None else [str(f) for f in aoi["feature_id"]]

    def gen() -> Iterator[_Batch]:
        for cubes in source.to_cubes_batches(batch_size):
            missing = dict(getattr(cubes, "missing", None) or {})
            for f in [*cubes, *missing]:
                if f not in ids:
                    ids.append(f)
            yield _Batch(cubes, [_missing_row(f, r) for f, r in missing.items()
                                 if f not in cubes])

    return _Plan(ids, gen(), None)


def _plan(obj: Any, batch_size: int, out_dir: Path, fmt: str | None, overwrite: bool,
          steps: Sequence[Callable], retries: int, retry_delay: float) -> _Plan:
    if isinstance(obj, Mapping):
        bad = [f for f, v in obj.items() if not isinstance(v, xr.Dataset)]
        if bad:
            raise BatchError(f"cubes[{bad[0]!r}] is a {type(obj[bad[0]]).__name__}, not an "
                             "xarray.Dataset; pass the dict returned by xsits.open_cubes")
        return _plan_mapping(obj, batch_size)
    if hasattr(obj, "aoi") and hasattr(obj, "open_kwargs"):
        return _plan_source(obj, batch_size, out_dir, fmt, overwrite, steps, retries,
                            retry_delay)
    if callable(getattr(obj, "to_cubes_batches", None)):
        return _plan_batches_method(obj, batch_size)
    raise BatchError(
        f"compute_all got a {type(obj).__name__}; pass a dict of cubes (xsits.open_cubes), an "
        "Intake 'sits' source, or xsits.batch.AoiSource(aoi, open_kwargs)"
    )


# --------------------------------------------------------------------------- manifest


def _json_safe(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bool | int) or value is None:
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return _json_safe(value.item())
        except (TypeError, ValueError):
            pass
    return redact(repr(value))


def _describe_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``open_cubes`` arguments for the manifest: no client objects, endpoints without tokens."""
    from xsits.stac import StacQuery

    out = {}
    for key, value in kwargs.items():
        if key in ("client", "search_result"):
            continue
        if key == "stac" and isinstance(value, str):
            try:
                value = StacQuery(stac=value).endpoint
            except XsitsError:
                pass
        out[key] = _json_safe(value)
    return out


_CUBE_ATTRS = ("stac", "collection", "query", "start", "end", "mode", "crs", "resolution",
               "patch_size")


def _write_json_atomic(path: Path, doc: Mapping[str, Any]) -> None:
    from xsits.export import atomic_path

    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")


class _Manifest:
    def __init__(self, out_dir: Path, fmt: str | None, steps: list[str], source: Any) -> None:
        self.path = out_dir / MANIFEST_NAME
        self.out_dir = out_dir
        self.previous: dict[str, dict] = {}
        self.created = _now()
        try:
            old = json.loads(self.path.read_text())
            self.previous = dict(old.get("features", {}))
            self.created = old.get("created", self.created)
            if old.get("steps") is not None and old.get("steps") != steps:
                log.warning("%s was written with other steps %s; outputs already there are "
                            "skipped, not recomputed (use overwrite=True)", self.path,
                            old.get("steps"))
        except (OSError, ValueError, AttributeError):
            pass
        self.doc: dict[str, Any] = {
            "xsits_version": __version__,
            "created": self.created,
            "updated": self.created,
            "complete": False,
            "format": fmt,
            "steps": steps,
            "source": source,
            "query": None,
            "counts": {},
            "features": dict(self.previous),
        }

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        feats = self.doc["features"]
        for r in rows:
            path = r["path"]
            if path is not None:
                try:
                    path = os.path.relpath(path, self.out_dir)
                except ValueError:
                    pass
            feats[r["feature_id"]] = {k: _json_safe(v) for k, v in r.items()
                                      if k != "feature_id"} | {"path": path}

    def note_query(self, cubes: Mapping[str, xr.Dataset]) -> None:
        if self.doc["query"] is None:
            for ds in cubes.values():
                self.doc["query"] = {k: _json_safe(ds.attrs[k]) for k in _CUBE_ATTRS
                                     if k in ds.attrs}
                break

    def write(self, complete: bool = False) -> None:
        counts = {s: 0 for s in STATUSES}
        for f in self.doc["features"].values():
            counts[f["status"]] = counts.get(f["status"], 0) + 1
        self.doc.update(counts=counts, updated=_now(), complete=complete)
        _write_json_atomic(self.path, self.doc)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- scheduling


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython  # type: ignore[import-not-found]
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _want_progress(progress: bool | None) -> bool:
    if progress is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)()) or _in_notebook()
    return bool(progress)


class _Runner:
    """Runs one batch of feature tasks on the chosen scheduler, ticking a progress bar."""

    def __init__(self, scheduler: Any, workers: int | None) -> None:
        self.client = None
        self.owned = False
        self.pool = None
        self.workers = workers
        if isinstance(scheduler, str) and scheduler in _SCHEDULER_GETS:
            self.scheduler = scheduler
        elif isinstance(scheduler, str) and re.match(r"^[a-z+]+://|^[\w.-]+:\d+$", scheduler):
            from distributed import Client

            try:
                self.client = Client(scheduler, timeout="20s")
            except (OSError, TimeoutError) as err:
                raise BatchError(f"cannot connect to the dask scheduler at {scheduler!r} "
                                 f"({_error_text(err)}); check the address") from err
            self.owned = True
            self.scheduler = "distributed"
        elif type(scheduler).__name__ == "Client" and hasattr(scheduler, "compute"):
            self.client, self.scheduler = scheduler, "distributed"
        else:
            raise BatchError(
                f"scheduler={scheduler!r} is unknown; use 'threads', 'processes', "
                "'synchronous', a dask.distributed Client or a scheduler address "
                "('tcp://host:8786')"
            )
        if self.client is not None:
            from xsits.load import configure_gdal

            configure_gdal(client=self.client)
        if self.scheduler == "processes":
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            ctx = multiprocessing.get_context(dask.config.get("multiprocessing.context",
                                                              "spawn"))
            self.pool = ProcessPoolExecutor(workers or os.cpu_count() or 1, mp_context=ctx)
        elif self.scheduler == "threads":  # one pool: concurrent batches share its threads
            self.pool = ThreadPoolExecutor(workers or FEATURE_THREADS,
                                           thread_name_prefix="xsits-feature")
        # batches run while the next ones are searched (synchronous: one after the other)
        self.batches = None if self.scheduler in _SYNC_SCHEDULERS else ThreadPoolExecutor(
            BATCHES_IN_FLIGHT, thread_name_prefix="xsits-batch")

    def close(self) -> None:
        for pool in (self.batches, self.pool):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        if self.owned and self.client is not None:
            self.client.close()

    def submit(self, jobs: list[_Job], bar: Any) -> Future:
        """:meth:`run` in the background (inline for the synchronous schedulers)."""
        if self.batches is not None:
            return self.batches.submit(self.run, jobs, bar)
        fut: Future = Future()
        fut.set_result(self.run(jobs, bar))
        return fut

    def ticking(self, bar: Any) -> Any:
        """A context in which the local schedulers tick ``bar`` once per finished feature."""
        from dask.callbacks import Callback

        class _Tick(Callback):
            def _posttask(self, key, result, dsk, state, worker_id):  # noqa: D102
                if isinstance(key, str) and key.startswith(_TASK_PREFIX):
                    bar.update(1)

        return _Tick() if self.client is None else contextlib.nullcontext()

    def run(self, jobs: list[_Job], bar: Any) -> list[dict[str, Any]]:
        if not jobs:
            return []
        token = uuid.uuid4().hex[:8]
        tasks = [dask.delayed(_run_feature, pure=False)(
            job, dask_key_name=f"{_TASK_PREFIX}-{job.fid}-{token}") for job in jobs]
        if self.client is not None:
            return self._run_distributed(jobs, tasks, bar)
        # the scheduler's function, not its name: a name makes dask look for a distributed
        # client (importing distributed) on every call
        kwargs: dict[str, Any] = {"scheduler": _SCHEDULER_GETS[self.scheduler]}
        if self.pool is not None:
            kwargs["pool"] = self.pool
        return list(dask.compute(*tasks, **kwargs))

    def _run_distributed(self, jobs: list[_Job], tasks: list, bar: Any) -> list[dict[str, Any]]:
        from distributed import as_completed

        futures = self.client.compute(tasks)
        rows: dict[Any, dict[str, Any]] = {}
        for fut in as_completed(futures):
            bar.update(1)
            try:
                rows[fut.key] = fut.result()
            except Exception as err:  # e.g. KilledWorker: the task crashed workers repeatedly
                rows[fut.key] = err  # type: ignore[assignment]
        out = []
        for job, fut in zip(jobs, futures, strict=True):
            res = rows[fut.key]
            if isinstance(res, BaseException):
                res = _row(job.fid, "failed", error=_error_text(res))
            out.append(res)
        return out


# --------------------------------------------------------------------------- engine


def _check_steps(steps: Iterable[Callable] | Callable | None) -> list[Callable]:
    if steps is None:
        return []
    if callable(steps):
        steps = [steps]
    out = list(steps)
    for i, s in enumerate(out):
        if not callable(s):
            raise BatchError(f"steps[{i}] = {s!r} is not callable; use xsits.steps.* or a "
                             "function Dataset -> Dataset")
    return out


def compute_all(
    cubes_or_source: Mapping[str, xr.Dataset] | Any,
    steps: Iterable[Callable[[xr.Dataset], xr.Dataset]] | None = None,
    out_dir: str | os.PathLike = "out",
    format: str | None = "netcdf",
    scheduler: Any = "threads",
    batch_size: int = 256,
    progress: bool | None = None,
    overwrite: bool = False,
    workers: int | None = None,
    *,
    retries: int = 4,
    retry_delay: float = 0.2,
    io_threads: int = IO_THREADS,
    compress: bool = False,
) -> pd.DataFrame:
    """Process and export every feature, batch by batch; return one report row per feature.

    Parameters
    ----------
    cubes_or_source
        ``{feature_id: lazy Dataset}`` (e.g. :func:`xsits.open_cubes`; its ``.missing``
        features are reported), an Intake ``sits`` source or any object with ``.aoi`` and
        ``.open_kwargs`` such as :class:`AoiSource` (cubes are then opened batch by batch,
        after skipping features already written), or an object with a
        ``to_cubes_batches(batch_size)`` method yielding such dicts.
    steps
        Callables ``Dataset -> Dataset`` applied in order, e.g. ``[xsits.steps.harmonize(),
        xsits.steps.scl_mask(), xsits.steps.gapfill("linear")]``. They run on each feature's
        cube once it is read into memory (numpy-backed). Must pickle for ``"processes"``
        and distributed schedulers (the :mod:`xsits.steps` objects do).
        ``None``: the source's own ``.steps`` (Intake ``sits`` source), else none.
    out_dir
        Output directory (created). Files are named by :func:`xsits.export.output_path`;
        ``manifest.json`` is written there.
    format
        ``"netcdf"``, ``"zarr"``, ``"csv"``, ``"parquet"`` (see :func:`xsits.export.export`).
    scheduler
        ``"threads"`` (default), ``"processes"``, ``"synchronous"``, a
        ``dask.distributed.Client`` or a scheduler address (``"tcp://host:8786"``).
    batch_size
        Features per ``dask.compute`` call (and per STAC search round for sources).
    progress
        Progress bar over features (``tqdm.auto``). ``None``: on when stderr is a terminal or
        in Jupyter.
    overwrite
        Recompute and replace existing outputs. Default ``False``: they are ``skipped``.
    workers
        Features processed at once: threads (default :data:`FEATURE_THREADS`) or processes
        (default: one per core) for the local schedulers.
    retries
        Retries of each failed network request during the run (``xsits.set_options(
        retries=retries + 1)``, the one policy of :mod:`xsits.retry`): timeouts, dropped
        connections, truncated bodies and HTTP 429 / 5xx, with exponential backoff from
        ``retry_delay`` seconds. A feature whose reads still fail is reported ``failed``;
        client faults (HTTP 403 / 404) and errors in the steps are not retried.
    retry_delay
        Seconds before the first retry of a request (doubled for each next one).
    io_threads
        Threads of the process-wide pool that reads chunks for all features at once
        (default :data:`IO_THREADS`: sized for network latency, not for cores).
    compress
        Compress NetCDF outputs (see :func:`xsits.export.export`). Default ``False``.

    Returns
    -------
    pandas.DataFrame
        Columns ``feature_id, status, path, n_dates, seconds, error``, one row per feature in
        input order. ``status`` is ``written``, ``skipped`` (output already there),
        ``empty`` (no item, or no date left after the steps: nothing is written) or
        ``failed`` (``error`` says why; nothing is written). ``seconds`` is the feature's
        task time, ``n_dates`` the dates written (the previous run's count for ``skipped``
        when the manifest has it).

    Raises
    ------
    BatchError
        Invalid steps, scheduler, batch size or input.
    xsits.errors.XsitsError
        A problem affecting every feature (bad query, STAC API unreachable).

    Examples
    --------
    >>> import tempfile, xsits
    >>> from xsits.testing.cubes import make_cube
    >>> cubes = {f: make_cube(feature_id=f, chunks={"time": 2}) for f in ("a", "b")}
    >>> out = tempfile.mkdtemp()
    >>> report = xsits.compute_all(cubes, [xsits.steps.harmonize()], out_dir=out,
    ...                            progress=False)  # doctest: +SKIP
    >>> report.status.tolist()  # doctest: +SKIP
    ['written', 'written']
    >>> xsits.compute_all(cubes, [xsits.steps.harmonize()], out_dir=out,
    ...                   progress=False).status.tolist()  # doctest: +SKIP
    ['skipped', 'skipped']
    """
    _install_log_redaction()
    if steps is None:  # e.g. the Intake source's post-processing
        steps = getattr(cubes_or_source, "steps", None)
    steps_list = _check_steps(steps)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise BatchError(f"batch_size={batch_size!r} must be a positive integer")
    if retries < 0:
        raise BatchError(f"retries={retries!r} must be >= 0")
    if not isinstance(io_threads, int) or io_threads < 1:
        raise BatchError(f"io_threads={io_threads!r} must be a positive integer")
    out = Path(out_dir).expanduser().absolute()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BatchError(f"out_dir '{out}' cannot be created ({_error_text(err)}); "
                         "choose another directory") from err
    _planned_path({k: "x" for k in _NAME_ATTRS}, [], out, format)  # unknown format: raise now
    plan = _plan(cubes_or_source, batch_size, out, format, overwrite, steps_list, retries,
                 retry_delay)
    from xsits.steps import describe

    manifest = _Manifest(out, format, [describe(s) for s in steps_list], plan.source_info)
    runner = _Runner(scheduler, workers)
    if _want_progress(progress):
        from tqdm.auto import tqdm
    else:  # tqdm.auto warns in notebooks without ipywidgets even when disabled
        from tqdm import tqdm
    bar = tqdm(total=len(plan.ids) or None, unit="feature", desc="xsits",
               disable=not _want_progress(progress), dynamic_ncols=True)
    rows: dict[str, dict[str, Any]] = {}
    complete = False
    running: collections.deque[tuple[_Batch, Future]] = collections.deque()

    def collect(wait: bool) -> None:
        """Report the batches that are done, in order (``wait``: the oldest one at least)."""
        while running and (wait or running[0][1].done()):
            batch, fut = running.popleft()
            wait = False
            done = batch.rows + fut.result()
            for r in done:
                if r["status"] == "skipped" and r["n_dates"] is None:
                    r["n_dates"] = manifest.previous.get(r["feature_id"], {}).get("n_dates")
                rows[r["feature_id"]] = r
            manifest.add(done)
            manifest.write()
            bar.set_postfix({s[0]: sum(r["status"] == s for r in rows.values())
                             for s in STATUSES}, refresh=False)

    options = set_options(retries=retries + 1, retry_delay=retry_delay)  # for this run
    try:
        with relaxed_gc(), single_threaded_blas(), runner.ticking(bar):  # see docstrings
            for batch in plan.batches:  # for sources: blocks until more cubes are found
                manifest.note_query(batch.cubes)
                jobs = []
                for fid, ds in batch.cubes.items():
                    try:
                        path = _planned_path({**ds.attrs, "feature_id": str(fid)}, steps_list,
                                             out, format)
                    except XsitsError as err:  # unsafe id, unknown format, attrs missing
                        batch.rows.append(_row(str(fid), "failed", error=_error_text(err)))
                        continue
                    if path.exists() and not overwrite:
                        batch.rows.append(_row(str(fid), "skipped", path))
                    else:
                        jobs.append(_Job(str(fid), ds, steps_list, path, overwrite, compress,
                                         io_threads, retry_delay))
                bar.update(len(batch.rows))
                running.append((batch, runner.submit(jobs, bar)))
                collect(wait=len(running) > BATCHES_IN_FLIGHT)
            while running:
                collect(wait=True)
        complete = True
    finally:
        options.__exit__()
        bar.close()
        runner.close()
        if rows or complete:
            manifest.write(complete=complete)
    ids = list(plan.ids)
    ids += [f for f in rows if f not in set(ids)]
    report = pd.DataFrame([rows[f] for f in ids if f in rows], columns=list(REPORT_COLUMNS))
    for col in ("path", "error"):
        report[col] = report[col].astype(object).where(report[col].notna(), None)
    report["n_dates"] = report["n_dates"].astype("Int64")
    report["seconds"] = report["seconds"].astype(float)
    report.attrs["manifest"] = str(manifest.path)
    report.attrs["catalog"] = _write_catalog(report, out)
    return report


def _write_catalog(report: pd.DataFrame, out: Path) -> str | None:
    """Write ``out/catalog.yaml`` (Intake) over every output on disk; None for Parquet."""
    from xsits.export import write_results_catalog

    done = report[report.status.isin(["written", "skipped"]) & report.path.notna()]
    paths = {fid: p for fid, p in zip(done.feature_id, done.path, strict=True)}
    if not paths or any(str(p).endswith(".parquet") for p in paths.values()):
        return None  # Intake has no Parquet driver here: the manifest lists those outputs
    return str(write_results_catalog(paths, out))


def _counts(report: pd.DataFrame) -> dict[str, int]:
    """``{status: count}`` over :data:`STATUSES` (zeros included)."""
    vc = report["status"].value_counts()
    return {s: int(vc.get(s, 0)) for s in STATUSES}


def summary_line(report: pd.DataFrame, manifest: str | os.PathLike | None = None) -> str:
    """One line: ``written 22, skipped 0, empty 1, failed 1 → out/manifest.json``.

    Examples
    --------
    >>> r = pd.DataFrame({"status": ["written", "empty"]})
    >>> summary_line(r, "out/manifest.json")
    'written 1, skipped 0, empty 1, failed 0 → out/manifest.json'
    """
    text = ", ".join(f"{s} {n}" for s, n in _counts(report).items())
    manifest = manifest if manifest is not None else report.attrs.get("manifest")
    if not manifest:
        return text
    rel = os.path.relpath(manifest)  # shorter when under the working directory
    return f"{text} → {manifest if rel.startswith('..') else rel}"

