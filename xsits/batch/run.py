"""Running feature tasks: one picklable job per feature, on threads, processes or a cluster.

Owns the job a feature task gets (its lazy cube hidden from dask, steps, output path), the
task itself (read the cube, run the steps in memory, write it atomically; never raises: a
failure becomes a ``failed`` row), the process-wide I/O pool the reads share, and the
scheduler a batch of tasks runs on (``"threads"``, ``"processes"``, ``"synchronous"`` or
``dask.distributed``), ticking the progress bar.

It must not decide which features run or where they are written (:mod:`xsits.batch.plan`)
nor write the manifest (:mod:`xsits.batch.report`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import dask
import dask.local
import dask.multiprocessing
import dask.threaded
import xarray as xr
from dask.callbacks import Callback
from distributed import Client, as_completed

from xsits._common import ContextThreadPool
from xsits.batch.report import Row, Status, error_text, install_log_redaction, row, short_reason
from xsits.cube.load import configure_gdal
from xsits.errors import BatchError, OutputExistsError
from xsits.io.tolerate import READS_ATTR, failed_reads, forget
from xsits.options import Options, adopt_options, get_options, options_scope
from xsits.out.export import export

__all__ = ["BATCHES_IN_FLIGHT", "FEATURE_THREADS", "IO_THREADS", "Caller", "prepare_process",
           "process_pool"]

log = logging.getLogger("xsits.batch")

SYNC_SCHEDULERS = ("synchronous", "sync", "single-threaded")
#: The local schedulers by name: their functions (``dask.compute(scheduler=<function>)``).
_SCHEDULER_GETS: dict[str, Callable] = {
    "threads": dask.threaded.get,
    "processes": dask.multiprocessing.get,
    **dict.fromkeys(SYNC_SCHEDULERS, dask.local.get_sync),
}
_TASK_PREFIX = "xsits-feature"


class Caller(NamedTuple):
    """The options in force where tasks are made, and that process (see :func:`prepare_process`).

    Examples
    --------
    >>> import os
    >>> Caller.here().pid == os.getpid()
    True
    """

    options: Options
    pid: int

    @classmethod
    def here(cls) -> Caller:
        """The current process and the options in force now."""
        return cls(get_options(), os.getpid())


class Job:
    """Everything one feature task needs; a plain object so dask does not look inside it."""

    __slots__ = ("fid", "ds", "steps", "path", "overwrite", "compress", "io_threads",
                 "caller")

    def __init__(self, fid: str, ds: xr.Dataset, steps: Sequence[Callable], path: Path,
                 overwrite: bool, compress: bool, io_threads: int, caller: Caller) -> None:
        self.fid, self.ds, self.steps, self.path = fid, ds, tuple(steps), path
        self.overwrite, self.compress = overwrite, compress
        self.io_threads, self.caller = io_threads, caller

    def __getstate__(self) -> tuple:
        return tuple(getattr(self, s) for s in self.__slots__)

    def __setstate__(self, state: tuple) -> None:
        for name, value in zip(self.__slots__, state, strict=True):
            setattr(self, name, value)


# Per process on purpose (each dask worker process has its own): GDAL is configured once
# per process; netCDF4/HDF5 is not thread-safe, so one NetCDF write at a time per process;
# one I/O pool per size, shared by every feature of the process (see docs/architecture.md).
_GDAL_READY = False
_NETCDF_LOCK = threading.Lock()
#: Threads reading chunks (COG range requests) for all features of a process: sized for
#: network latency, not for cores (reads wait on the network with the GIL released).
IO_THREADS = 16
#: Features processed at once by the ``"threads"`` scheduler (their reads share the I/O pool).
FEATURE_THREADS = 4
#: Batches computing at once: a source's next groups start computing as soon as their searches
#: return, without waiting for the slowest feature of the batch before (threads: all of them
#: share the :data:`FEATURE_THREADS`).
BATCHES_IN_FLIGHT = 4


class IoPools:
    """The process-wide I/O thread pools, one per size (``io_threads``), shared by features.

    A pool is made on first use of its size and kept (runs ask for a handful of sizes);
    :meth:`clear` shuts them down. Its one object is :data:`IO_POOLS`.

    Examples
    --------
    >>> pools = IoPools()
    >>> pools.get(2) is pools.get(2), pools.get(2) is pools.get(3)
    (True, False)
    >>> pools.clear()
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pools: dict[int, ContextThreadPool] = {}

    def get(self, n: int) -> ContextThreadPool:
        """The pool of ``n`` threads (made once)."""
        with self._lock:
            if n not in self._pools:
                self._pools[n] = ContextThreadPool(n, thread_name_prefix="xsits-io")
            return self._pools[n]

    def clear(self) -> None:
        """Shut every pool down (after the reads under way); the next ``get`` makes a new one."""
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.shutdown(wait=True)


#: This process's I/O pools.
IO_POOLS = IoPools()


def prepare_process(caller: Caller) -> None:
    """Make a process ready to read: the caller's options, xsits' GDAL settings, redaction.

    What every feature task does first. A dask worker process (``"processes"``,
    ``dask.distributed``) starts with the default options and without xsits' GDAL HTTP
    settings (retries...) and gets them here; in the caller's own process (threads) the
    options in force are left as they are.

    Examples
    --------
    >>> prepare_process(Caller.here())  # in the calling process: the options stay
    """
    global _GDAL_READY
    if os.getpid() != caller.pid:
        adopt_options(caller.options)
    if not _GDAL_READY:

        configure_gdal()
        _GDAL_READY = True
    install_log_redaction()


def process_pool(workers: int | None = None) -> Any:
    """A pool of ``workers`` processes (default one per core), started as dask starts its own.

    Examples
    --------
    >>> with process_pool(1) as pool:
    ...     pool.submit(abs, -2).result()
    2
    """
    ctx = multiprocessing.get_context(dask.config.get("multiprocessing.context", "spawn"))
    return ProcessPoolExecutor(workers or os.cpu_count() or 1, mp_context=ctx)


def _failed_reads(ds: xr.Dataset) -> list[dict[str, str]] | None:
    """The cube's failed reads (:func:`xsits.io.tolerate.failed_reads`), also put in its attrs.

    The output then says which item and href cost which date (``attrs["failed_reads"]``,
    JSON), and the load's key is dropped from it.
    """
    lost = failed_reads(ds)
    ds.attrs.pop(READS_ATTR, None)
    if lost:
        ds.attrs["failed_reads"] = json.dumps(lost)
    return lost or None


def run_feature(job: Job) -> Row:
    """Process and write one feature; never raises (errors become a ``failed`` row)."""
    t0 = time.perf_counter()
    path = job.path
    if path.exists() and not job.overwrite:  # e.g. written by a worker that was then lost
        return row(job.fid, Status.SKIPPED, path, seconds=time.perf_counter() - t0)
    prepare_process(job.caller)
    with options_scope(job.caller.options):  # the run's options, whichever thread runs it
        return _run_feature(job, t0)


def _run_feature(job: Job, t0: float) -> Row:
    path = job.path
    try:
        # the cube is read first (its files fetched together, see xsits.io.reader; its
        # chunks on the shared I/O pool), then the steps run in memory: on a small
        # cube, numpy is much cheaper than building a dask graph per step; failed
        # requests were retried by xsits.io.retry inside the read

        forget(job.ds)
        ds = job.ds.compute(scheduler=dask.threaded.get, pool=IO_POOLS.get(job.io_threads))
        lost = _failed_reads(ds)  # broken files that cost a date (xsits.io.tolerate)
        for step in job.steps:
            ds = step(ds)
        n_dates = int(ds.sizes["time"]) if "time" in ds.sizes else None
        if n_dates == 0:
            return row(job.fid, Status.EMPTY, n_dates=0, seconds=time.perf_counter() - t0,
                        error="no date left after the steps; nothing written")
        ds = ds.compute()  # a step may still have returned lazy data
        # netCDF4/HDF5 is not thread-safe: one NetCDF write at a time per process
        with _NETCDF_LOCK if path.suffix.lower() == ".nc" else contextlib.nullcontext():
            written = export(ds, path, overwrite=job.overwrite, compress=job.compress)
        return row(job.fid, Status.WRITTEN, written, n_dates, time.perf_counter() - t0,
                   failed_reads=lost)
    except OutputExistsError:
        return row(job.fid, Status.SKIPPED, path, seconds=time.perf_counter() - t0)
    except Exception as err:  # one feature must never sink the batch
        error = err
    assert error is not None
    text = error_text(error)
    log.warning("feature %s failed: %s", job.fid, short_reason(text))
    return row(job.fid, Status.FAILED, seconds=time.perf_counter() - t0, error=text)


# --------------------------------------------------------------------------- scheduling


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython  # type: ignore[import-not-found]
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def want_progress(progress: bool | None) -> bool:
    """Show a progress bar? ``None``: when stderr is a terminal or in Jupyter.

    Examples
    --------
    >>> want_progress(False), want_progress(True)
    (False, True)
    """
    if progress is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)()) or _in_notebook()
    return bool(progress)


class Runner:
    """Runs one batch of feature tasks on the chosen scheduler, ticking a progress bar."""

    def __init__(self, scheduler: Any, workers: int | None) -> None:
        self.client = None
        self.owned = False
        self.pool = None
        self.workers = workers
        if isinstance(scheduler, str) and scheduler in _SCHEDULER_GETS:
            self.scheduler = scheduler
        elif isinstance(scheduler, str) and re.match(r"^[a-z+]+://|^[\w.-]+:\d+$", scheduler):
            try:
                self.client = Client(scheduler, timeout="20s")
            except (OSError, TimeoutError) as err:
                raise BatchError(f"cannot connect to the dask scheduler at {scheduler!r} "
                                 f"({short_reason(error_text(err))}); check the address") from err
            self.owned = True
            self.scheduler = "distributed"
        elif isinstance(scheduler, Client):
            self.client, self.scheduler = scheduler, "distributed"
        else:
            raise BatchError(
                f"scheduler={scheduler!r} is unknown; use 'threads', 'processes', "
                "'synchronous', a dask.distributed Client or a scheduler address "
                "('tcp://host:8786')"
            )
        if self.client is not None:

            configure_gdal(client=self.client)
        if self.scheduler == "processes":
            self.pool = process_pool(workers)
        elif self.scheduler == "threads":  # one pool: concurrent batches share its threads
            self.pool = ContextThreadPool(workers or FEATURE_THREADS,
                                           thread_name_prefix="xsits-feature")
        # batches run while the next ones are searched (synchronous: one after the other)
        self.batches = None if self.scheduler in SYNC_SCHEDULERS else ContextThreadPool(
            BATCHES_IN_FLIGHT, thread_name_prefix="xsits-batch")

    def close(self) -> None:
        for pool in (self.batches, self.pool):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        if self.owned and self.client is not None:
            self.client.close()

    def submit(self, jobs: list[Job], bar: Any) -> Future:
        """:meth:`run` in the background (inline for the synchronous schedulers)."""
        if self.batches is not None:
            return self.batches.submit(self.run, jobs, bar)
        fut: Future = Future()
        fut.set_result(self.run(jobs, bar))
        return fut

    def ticking(self, bar: Any) -> Any:
        """A context in which the local schedulers tick ``bar`` once per finished feature."""
        class _Tick(Callback):
            def _posttask(self, key, result, dsk, state, worker_id):  # noqa: D102
                if isinstance(key, str) and key.startswith(_TASK_PREFIX):
                    bar.update(1)

        return _Tick() if self.client is None else contextlib.nullcontext()

    def run(self, jobs: list[Job], bar: Any) -> list[Row]:
        if not jobs:
            return []
        token = uuid.uuid4().hex[:8]
        tasks = [dask.delayed(run_feature, pure=False)(
            job, dask_key_name=f"{_TASK_PREFIX}-{job.fid}-{token}") for job in jobs]
        if self.client is not None:
            return self._run_distributed(jobs, tasks, bar)
        # the scheduler's function, not its name: a name makes dask look for a distributed
        # client (importing distributed) on every call
        kwargs: dict[str, Any] = {"scheduler": _SCHEDULER_GETS[self.scheduler]}
        if self.pool is not None:
            kwargs["pool"] = self.pool
        return list(dask.compute(*tasks, **kwargs))

    def _run_distributed(self, jobs: list[Job], tasks: list, bar: Any) -> list[Row]:
        futures = self.client.compute(tasks)
        rows: dict[Any, Row] = {}
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
                res = row(job.fid, Status.FAILED, error=error_text(res))
            out.append(res)
        return out


