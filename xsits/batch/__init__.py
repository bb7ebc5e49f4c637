"""Many features through ``dask.compute``: process, export, report; resumable and fault tolerant.

:func:`compute_all` is the batch engine behind ``xsits fetch``; this module owns only its
loop: check the arguments, take the batches of the plan (:mod:`xsits.batch.plan`), run each
on the scheduler (:mod:`xsits.batch.run`), report rows and the manifest after each
(:mod:`xsits.batch.report`). It must not open cubes itself (sources do), read pixels, or
format what is written.

Features are handled in batches of at most ``batch_size``, so the task graph (and the STAC
search, when the input is a source) never holds all features at once; with a source, each
group's cubes form a batch as soon as its search returns, computed while the next groups
are searched (at most :data:`BATCHES_IN_FLIGHT` at once). Each feature is **one** delayed
task that reads its cube, applies the steps in memory inside a ``try``/``except``, and
writes it with the atomic :func:`xsits.out.export.export`. A failing feature therefore becomes a
``failed`` report row instead of aborting the batch, and a feature is either written whole
or not at all (odc-stac ``fail_on_error=True``: never missing dates or NaN pixels from a
failed read).

After every batch ``<out_dir>/manifest.json`` is replaced atomically; it records the query, the
steps and every feature's status. A rerun with the same arguments skips features whose output
file exists (``skipped``), so an interrupted run is finished by running it again.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr
from tqdm import tqdm

from xsits._common import relaxed_gc, single_threaded_blas
from xsits.batch.plan import NAME_ATTRS, AoiSource, Batch, plan_batches, planned_path
from xsits.batch.report import (
    STATUSES,
    Manifest,
    Row,
    Status,
    error_text,
    install_log_redaction,
    report_frame,
    row,
    short_reason,
    summary_line,
    write_catalog,
)
from xsits.batch.run import (
    BATCHES_IN_FLIGHT,
    FEATURE_THREADS,
    IO_THREADS,
    Caller,
    Job,
    Runner,
    want_progress,
)
from xsits.errors import BatchError, OutputDirError, XsitsError
from xsits.ops.steps import describe
from xsits.options import options_scope
from xsits.out.atomic import ensure_dir

__all__ = [
    "BATCHES_IN_FLIGHT",
    "FEATURE_THREADS",
    "IO_THREADS",
    "STATUSES",
    "AoiSource",
    "Row",
    "Status",
    "compute_all",
    "summary_line",
]

# --------------------------------------------------------------------------- engine


def _check_steps(steps: Iterable[Callable] | Callable | None) -> list[Callable]:
    if steps is None:
        return []
    if callable(steps):
        steps = [steps]
    out = list(steps)
    for i, s in enumerate(out):
        if not callable(s):
            raise BatchError(f"steps[{i}] = {s!r} is not callable; use xsits.ops.steps.* or a "
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
        Callables ``Dataset -> Dataset`` applied in order, e.g. ``[xsits.ops.steps.harmonize(),
        xsits.ops.steps.scl_mask(), xsits.ops.steps.gapfill("linear")]``. They run on each feature's
        cube once it is read into memory (numpy-backed). Must pickle for ``"processes"``
        and distributed schedulers (the :mod:`xsits.ops.steps` objects do).
        ``None``: the source's own ``.steps`` (Intake ``sits`` source), else none.
    out_dir
        Output directory (created). Files are named by :func:`xsits.out.export.output_path`;
        ``manifest.json`` is written there.
    format
        ``"netcdf"``, ``"zarr"``, ``"csv"``, ``"parquet"`` (see :func:`xsits.out.export.export`).
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
        Retries of each failed network request of the run's own work (its
        :func:`xsits.options.options_scope` with ``retries=retries + 1``: other threads of
        the process keep their options; the one policy of :mod:`xsits.io.retry`): timeouts, dropped
        connections, truncated bodies and HTTP 429 / 5xx, with exponential backoff from
        ``retry_delay`` seconds. A feature whose reads still fail is reported ``failed``;
        client faults (HTTP 403 / 404) and errors in the steps are not retried.
    retry_delay
        Seconds before the first retry of a request (doubled for each next one).
    io_threads
        Threads of the process-wide pool that reads chunks for all features at once
        (default :data:`IO_THREADS`: sized for network latency, not for cores).
    compress
        Compress NetCDF outputs (see :func:`xsits.out.export.export`). Default ``False``.

    Returns
    -------
    pandas.DataFrame
        Columns ``feature_id, status, path, n_dates, seconds, error, failed_reads``
        (the broken files that cost a written feature a date: item, href, reason;
        :mod:`xsits.io.tolerate`), one row per feature in
        input order. ``status`` is ``written``, ``skipped`` (output already there),
        ``empty`` (no item: its reason in ``missing`` is a
        :class:`~xsits.stac.search.NoItems`; or no date left after the steps: nothing is
        written) or ``failed`` (``error`` says why; nothing is written). ``seconds`` is the
        feature's task time, ``n_dates`` the dates written (the previous run's count for
        ``skipped`` when the manifest has it).

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
    >>> report = xsits.compute_all(cubes, [xsits.ops.steps.harmonize()], out_dir=out,
    ...                            progress=False)
    >>> report.status.tolist()
    ['written', 'written']
    >>> xsits.compute_all(cubes, [xsits.ops.steps.harmonize()], out_dir=out,
    ...                   progress=False).status.tolist()
    ['skipped', 'skipped']
    """
    install_log_redaction()
    if steps is None:  # e.g. the Intake source's post-processing
        steps = getattr(cubes_or_source, "steps", None)
    outputs = _check_args(steps, out_dir, format, batch_size, retries, io_threads, overwrite,
                          compress)
    plan = plan_batches(cubes_or_source, batch_size, outputs.out, format, overwrite,
                        list(outputs.steps))
    manifest = Manifest(outputs.out, format, [describe(s) for s in outputs.steps],
                        plan.source_info)
    runner = Runner(scheduler, workers)
    reporter = _Reporter(manifest, _progress_bar(progress, len(plan.ids)))
    complete = False
    # this run's options hold in its own work only (its threads and pools copy this context;
    # worker processes take them from each job); other threads keep the process's
    scope = options_scope(retries=retries + 1, retry_delay=retry_delay)
    try:
        with scope, relaxed_gc(), single_threaded_blas(), runner.ticking(reporter.bar):
            _run_batches(plan.batches, outputs, runner, reporter)  # (relaxed_gc...: docstrings)
        complete = True
    finally:
        reporter.bar.close()
        runner.close()
        if reporter.rows or complete:
            manifest.write(complete=complete)
    report = report_frame(reporter.rows, plan.ids)
    report.attrs["manifest"] = str(manifest.path)
    report.attrs["catalog"] = write_catalog(report, outputs.out)
    return report


@dataclass(frozen=True)
class _Outputs:
    """Where and how each feature of a run is processed and written."""

    steps: tuple[Callable, ...]
    out: Path
    format: str | None
    overwrite: bool
    compress: bool
    io_threads: int


def _check_args(steps: Iterable[Callable] | Callable | None, out_dir: str | os.PathLike,
                format: str | None, batch_size: Any, retries: int, io_threads: Any,
                overwrite: bool, compress: bool) -> _Outputs:
    """Check :func:`compute_all`'s arguments and create ``out_dir``, before any search or read."""
    steps_list = _check_steps(steps)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise BatchError(f"batch_size={batch_size!r} must be a positive integer")
    if retries < 0:
        raise BatchError(f"retries={retries!r} must be >= 0")
    if not isinstance(io_threads, int) or io_threads < 1:
        raise BatchError(f"io_threads={io_threads!r} must be a positive integer")
    out = Path(out_dir).expanduser().absolute()
    try:
        ensure_dir(out)  # an existing file: OutputDirError, before any search or read
    except OutputDirError:
        raise
    except OSError as err:
        raise BatchError(f"out_dir '{out}' cannot be created ({short_reason(error_text(err))}); "
                         "choose another directory") from err
    planned_path({k: "x" for k in NAME_ATTRS}, [], out, format)  # unknown format: raise now
    return _Outputs(tuple(steps_list), out, format, overwrite, compress, io_threads)


def _progress_bar(progress: bool | None, total: int) -> Any:
    """A tqdm bar over ``total`` features (shown by :func:`xsits.batch.run.want_progress`)."""
    if want_progress(progress):
        # imported on use: tqdm.auto picks the notebook front end (ipywidgets) on import
        # and warns in a notebook without it, even for a disabled bar
        from tqdm.auto import tqdm as bar
    else:
        bar = tqdm
    return bar(total=total or None, unit="feature", desc="xsits",
               disable=not want_progress(progress), dynamic_ncols=True)


class _Reporter:
    """The rows of a run so far, in its manifest (written after each batch) and progress bar."""

    def __init__(self, manifest: Manifest, bar: Any) -> None:
        self.manifest = manifest
        self.bar = bar
        self.rows: dict[str, Row] = {}

    def report(self, done: list[Row]) -> None:
        """File the rows of a finished batch; rewrite the manifest."""
        for r in done:
            if r.status is Status.SKIPPED and r.n_dates is None:
                r.n_dates = self.manifest.previous.get(r.feature_id, {}).get("n_dates")
            self.rows[r.feature_id] = r
        self.manifest.add(done)
        self.manifest.write()
        self.bar.set_postfix({s[0]: sum(r.status == s for r in self.rows.values())
                              for s in STATUSES}, refresh=False)


def _jobs(batch: Batch, outputs: _Outputs, caller: Caller) -> list[Job]:
    """The jobs of a batch's features to compute; the others' rows go to ``batch.rows``.

    A feature is ``skipped`` when its output exists (unless ``overwrite``), ``failed`` when it
    has no safe output path (unsafe id, attributes missing).
    """
    jobs = []
    for fid, ds in batch.cubes.items():
        try:
            path = planned_path({**ds.attrs, "feature_id": str(fid)}, list(outputs.steps),
                                outputs.out, outputs.format)
        except XsitsError as err:  # unsafe id, unknown format, attrs missing
            batch.rows.append(row(str(fid), Status.FAILED, error=error_text(err)))
            continue
        if path.exists() and not outputs.overwrite:
            batch.rows.append(row(str(fid), Status.SKIPPED, path))
        else:
            jobs.append(Job(str(fid), ds, list(outputs.steps), path, outputs.overwrite,
                            outputs.compress, outputs.io_threads, caller))
    return jobs


def _run_batches(batches: Iterable[Batch], outputs: _Outputs, runner: Runner,
                 reporter: _Reporter) -> None:
    """Submit each batch as it comes and report the finished ones in order.

    At most :data:`BATCHES_IN_FLIGHT` batches run at once; for sources, taking the next
    batch blocks until more cubes are found.
    """
    caller = Caller.here()  # inside the run's options scope
    running: collections.deque[tuple[Batch, Future]] = collections.deque()

    def collect(wait: bool) -> None:  # the batches that are done, in order (wait: one at least)
        while running and (wait or running[0][1].done()):
            batch, fut = running.popleft()
            wait = False
            reporter.report(batch.rows + fut.result())

    for batch in batches:
        reporter.manifest.note_query(batch.cubes)
        jobs = _jobs(batch, outputs, caller)
        reporter.bar.update(len(batch.rows))
        running.append((batch, runner.submit(jobs, reporter.bar)))
        collect(wait=len(running) > BATCHES_IN_FLIGHT)
    while running:
        collect(wait=True)


