"""What a batch tells: report rows, their error texts, the manifest, the results catalog.

Owns the report's columns and statuses, one redacted line per failure (whole sentences,
long ones shortened at a word boundary; the full text goes to ``manifest.json``), the
manifest rewritten atomically after every batch, the Intake catalog over the outputs, the
summary line the CLI prints, and the redaction of log records that may quote signed hrefs.

It must not plan, read or compute features: :mod:`xsits.batch.plan` and
:mod:`xsits.batch.run` hand it rows, :func:`xsits.batch.compute_all` decides when to write.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr

from xsits._common import one_line, redact, shorten
from xsits._version import __version__
from xsits.cube.spec import split_kwargs
from xsits.errors import XsitsError
from xsits.out.atomic import atomic_path
from xsits.out.catalog import write_results_catalog
from xsits.stac.search import NoItems

__all__ = ["MANIFEST_NAME", "REDACTED_LOGGERS", "REPORT_COLUMNS", "STATUSES", "Row", "Status",
           "summary_line"]

log = logging.getLogger("xsits.batch")

#: Columns of the report DataFrame, in order.
REPORT_COLUMNS: tuple[str, ...] = ("feature_id", "status", "path", "n_dates", "seconds", "error",
                                   "failed_reads")


class Status(StrEnum):
    """What happened to a feature in a batch (a ``str``: ``Status.WRITTEN == "written"``).

    Examples
    --------
    >>> Status("empty") is Status.EMPTY, str(Status.FAILED)
    (True, 'failed')
    """

    #: The file was written now.
    WRITTEN = "written"
    #: The file was already there (resumed run).
    SKIPPED = "skipped"
    #: No item or no date left: nothing written.
    EMPTY = "empty"
    #: Nothing written; ``error`` says why.
    FAILED = "failed"


#: Feature statuses, in report order (the values of :class:`Status`).
STATUSES: tuple[str, ...] = tuple(s.value for s in Status)


@dataclass
class Row:
    """One feature's line of the report (and of ``manifest.json``).

    Examples
    --------
    >>> r = Row("7", Status.WRITTEN, "out/fid-7.nc", n_dates=3, seconds=0.51234)
    >>> r.status == "written", r.as_dict()["seconds"]
    (True, 0.512)
    """

    feature_id: str
    status: Status
    path: str | None = None
    n_dates: int | None = None
    seconds: float = 0.0
    error: str | None = None
    #: The broken files that cost a date (:mod:`xsits.io.tolerate`), if any.
    failed_reads: list[dict[str, str]] | None = None

    def __post_init__(self) -> None:
        self.status = Status(self.status)
        self.path = None if self.path is None else str(self.path)
        self.seconds = round(float(self.seconds), 3)
        self.failed_reads = list(self.failed_reads) if self.failed_reads else None

    def as_dict(self) -> dict[str, Any]:
        """The row as plain values (``status`` its string), in :data:`REPORT_COLUMNS` order."""
        return asdict(self) | {"status": self.status.value}
#: Name of the manifest written in ``out_dir``.
MANIFEST_NAME = "manifest.json"
#: Characters of a reason in the report DataFrame (and the CLI's lines); longer ones are
#: shortened at a word boundary with " …", the whole text is in ``manifest.json``.
REPORT_ERROR_CHARS = 300
#: Bound on a reason kept whole (a manifest never holds a megabyte traceback).
_ERROR_FULL_CHARS = 4000

# --------------------------------------------------------------------------- redaction


#: Loggers whose records, and their children's (``odc.loader``'s module loggers...), may
#: quote signed hrefs; :func:`compute_all` redacts them all.
REDACTED_LOGGERS = ("xsits", "odc", "rasterio", "pystac_client", "urllib3", "distributed")


def _is_redacted(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in REDACTED_LOGGERS)


def _redact_record(record: logging.LogRecord) -> None:
    """Rewrite ``record``'s message with :func:`redact` (odc-loader logs the hrefs it failed)."""
    try:
        msg = record.getMessage()
    except Exception:  # a malformed record is not ours to fix
        return
    clean = redact(msg)
    if clean != msg:
        record.msg, record.args = clean, ()


def install_log_redaction() -> None:
    """Redact every record of :data:`REDACTED_LOGGERS` and of their children (idempotent).

    A filter on a logger sees only the records created on that very logger, not those its
    children propagate, and a filter on a handler only that handler's; so the redaction
    happens where every record is made, in a record factory wrapping the one in force
    (``logging.setLogRecordFactory``). It covers loggers created later too, and needs no
    module's private logger name.

    Examples
    --------
    >>> import logging
    >>> install_log_redaction()
    >>> rec = logging.getLogger("odc.loader.any_child").makeRecord(
    ...     "odc.loader.any_child", logging.ERROR, "f", 1, "read %s failed",
    ...     ("https://h/a.tif?sig=S",), None)
    >>> rec.getMessage()
    'read https://h/a.tif?<redacted> failed'
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "xsits_redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if _is_redacted(record.name):
            _redact_record(record)
        return record

    factory.xsits_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def error_text(err: BaseException) -> str:
    """One redacted line: ``Type: message (Cause: message)``.

    The innermost cause is appended because rasterio's own message is often just
    "Read failed. See previous exception for details."
    """

    def one(e: BaseException) -> str:
        msg = one_line(e, _ERROR_FULL_CHARS)
        name = type(e).__name__
        return msg if isinstance(e, XsitsError) or msg.startswith(name) else f"{name}: {msg}"

    text = one(err)
    cause, seen = err, {id(err)}
    while (nxt := cause.__cause__ or cause.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        cause = nxt
    if cause is not err and one_line(cause, _ERROR_FULL_CHARS) not in text:
        text += f" ({one(cause)})"
    return shorten(text, _ERROR_FULL_CHARS)


def row(fid: str, status: Status, path: Any = None, n_dates: int | None = None,
        seconds: float = 0.0, error: str | None = None,
        failed_reads: list[dict[str, str]] | None = None) -> Row:
    """A :class:`Row` (positional shorthand of the engine)."""
    return Row(fid, status, path, n_dates, seconds, error, failed_reads)


def missing_row(fid: str, reason: str) -> Row:
    """The row of a feature without a cube (``cubes.missing``): ``empty`` or ``failed``.

    ``empty`` when the reason is a :class:`~xsits.stac.search.NoItems` (nothing matched the
    feature), ``failed`` for any other reason; its text is the row's ``error``.

    Examples
    --------
    >>> from xsits.stac.search import NoItems
    >>> missing_row("7", NoItems("no item here")).status, missing_row("8", "boom").status
    (<Status.EMPTY: 'empty'>, <Status.FAILED: 'failed'>)
    """
    status = Status.EMPTY if isinstance(reason, NoItems) else Status.FAILED
    text = shorten(redact(str(reason)), _ERROR_FULL_CHARS)
    return row(fid, status, n_dates=0 if status is Status.EMPTY else None, error=text)


def short_reason(text: str | None) -> str | None:
    """``text`` as the report shows it: at most :data:`REPORT_ERROR_CHARS`, cut between words.

    Examples
    --------
    >>> short_reason("the STAC search failed: " + "very " * 100 + "long")[-11:]
    'very very …'
    >>> short_reason(None) is None
    True
    """
    return None if text is None else shorten(text, REPORT_ERROR_CHARS)


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


def describe_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``open_cubes`` arguments for the manifest: the whole spec, no client objects.

    Every field of the :class:`~xsits.cube.spec.CubeSpec` they make (``stac`` as its
    endpoint, without a token), then the other arguments, JSON-safe.

    Examples
    --------
    >>> d = describe_kwargs({"stac": "earth-search", "mode": "patch", "client": object()})
    >>> d["stac"], d["mode"], d["size"], "client" in d
    ('https://earth-search.aws.element84.com/v1', 'patch', [10, 10], False)
    """
    spec, rest = split_kwargs(kwargs)
    described = {**spec.describe(), **{k: v for k, v in rest.items()
                                       if k not in ("client", "search_result")}}
    return {key: _json_safe(value) for key, value in described.items()}


_CUBE_ATTRS = ("stac", "collection", "query", "start", "end", "mode", "crs", "resolution",
               "patch_size")


def _write_json_atomic(path: Path, doc: Mapping[str, Any]) -> None:

    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")


class Manifest:
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

    def add(self, rows: Iterable[Row]) -> None:
        feats = self.doc["features"]
        for r in rows:
            path = r.path
            if path is not None:
                try:
                    path = os.path.relpath(path, self.out_dir)
                except ValueError:
                    pass
            feats[r.feature_id] = {k: _json_safe(v) for k, v in r.as_dict().items()
                                   if k != "feature_id" and (v is not None or k != "failed_reads")
                                   } | {"path": path}

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


def report_frame(rows: Mapping[str, Row], ids: Iterable[str]) -> pd.DataFrame:
    """The report DataFrame: one row per feature, ``ids`` order first, then any other row.

    Reasons are shortened (:func:`short_reason`); :class:`Manifest` keeps them whole.
    """
    order = list(ids)
    order += [f for f in rows if f not in set(order)]
    report = pd.DataFrame([rows[f].as_dict() | {"error": short_reason(rows[f].error)}
                           for f in order if f in rows], columns=list(REPORT_COLUMNS))
    for col in ("path", "error", "failed_reads"):
        report[col] = report[col].astype(object).where(report[col].notna(), None)
    report["n_dates"] = report["n_dates"].astype("Int64")
    report["seconds"] = report["seconds"].astype(float)
    return report


def write_catalog(report: pd.DataFrame, out: Path) -> str | None:
    """Write ``out/catalog.yaml`` (Intake V1) over every output on disk; None when there is none.

    Every export format has its driver (:data:`xsits.out.catalog.RESULTS_DRIVERS`): NetCDF and Zarr
    intake-xarray's, CSV Intake's own ``csv``, Parquet intake-parquet's ``parquet``.
    """
    done = report[report.status.isin(["written", "skipped"]) & report.path.notna()]
    paths = {fid: p for fid, p in zip(done.feature_id, done.path, strict=True)}
    if not paths:
        return None
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

