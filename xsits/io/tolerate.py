"""One broken scene costs a date, not the feature: failed reads of an item become nodata.

Real catalogs carry the odd missing or corrupt asset (microsoft/PlanetaryComputerExamples#279).
Without this, one HTTP 404 or one truncated file sinks the whole series of a feature, and
odc-stac / stackstac users cannot tell which file failed (odc-stac#97, #122, stackstac#243).

Owns: :class:`TolerantDriver`, an odc-loader reader driver wrapping xsits' own
(:class:`xsits.io.reader.CogDriver`). Every file that needs a SAS token is signed when it is
read (:mod:`xsits.io.signing`; on HTTP 403 signed anew and read once more). A read of a *broken
file* (HTTP 404 / 410 / 416, a file GDAL
or tifffile cannot decode) leaves that item's pixels nodata for its date, and is recorded per
load: which item, which href (its query string, a token, redacted) and why
(:func:`failed_reads`). What is never tolerated: HTTP 401 / 403 (credentials: every file
would fail alike), failures still transient after the retries (the network, a throttling
host), and a load whose every item failed (its last failure is raised). The option
``on_missing_item="raise"`` (:func:`xsits.set_options`) restores fail-fast.
Must not: read pixels itself, retry (:mod:`xsits.io.retry` did, inside the reader) or decide
which dates a cube has.

Examples
--------
>>> from xsits.io.reader import CogDriver
>>> driver = TolerantDriver(CogDriver(), {"/data/a.tif": "item-a"})
>>> failed_reads({"xsits_reads": driver.token})
[]
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from xsits.io import retry, signing
from xsits.options import get_options

#: Attribute of a lazy cube naming its load's record of failed reads.
READS_ATTR = "xsits_reads"
#: Loads whose records are kept per process (the oldest are forgotten).
KEEP_LOADS = 4096
#: HTTP statuses saying the file itself is missing or short (never credentials).
BROKEN_STATUSES = frozenset({404, 410, 416})

log = logging.getLogger(__name__)


class LoadRecords:
    """Each load's reads in this process: the files that failed, the items read.

    Bounded: the records of the ``keep`` most recently used loads are kept. Its one object
    is :data:`RECORDS`.

    Examples
    --------
    >>> records = LoadRecords(keep=2)
    >>> records.note_failure("load-1", "item-a", "https://h/a.tif", "HTTP 404", {"item-a"})
    True
    >>> records.failed("load-1"), records.failed("load-2")
    ({('item-a', 'https://h/a.tif'): 'HTTP 404'}, {})
    """

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._records: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def _record(self, token: str) -> dict[str, Any]:  # under the lock
        rec = self._records.get(token)
        if rec is None:
            rec = self._records[token] = {"failed": {}, "ok": set()}
            while len(self._records) > self.keep:
                self._records.popitem(last=False)
        else:
            self._records.move_to_end(token)
        return rec

    def note_failure(self, token: str, item: str, href: str, reason: str,
                     items: set[str]) -> bool:
        """Record a failed read; whether every one of ``items`` failed and none was read."""
        with self._lock:
            rec = self._record(token)
            rec["failed"][(item, href)] = reason
            return {i for i, _ in rec["failed"]} >= items and not rec["ok"]

    def note_read(self, token: str, item: str) -> None:
        """Record a read of ``item`` that succeeded."""
        with self._lock:
            self._record(token)["ok"].add(item)

    def failed(self, token: str) -> dict[tuple[str, str], str]:
        """``{(item, href): reason}`` of a load (a copy; empty when none is recorded)."""
        with self._lock:
            rec = self._records.get(token)
            return dict(rec["failed"]) if rec else {}

    def forget(self, token: str) -> None:
        """Forget one load's record."""
        with self._lock:
            self._records.pop(token, None)

    def clear(self) -> None:
        """Forget every load's record."""
        with self._lock:
            self._records.clear()


#: This process's load records (:func:`failed_reads`, :func:`forget`).
RECORDS = LoadRecords(KEEP_LOADS)


def _redact(href: str) -> str:
    return href.split("?", 1)[0]


def is_broken_file(err: BaseException) -> bool:
    """Whether a read failed because of the file itself (missing, short or undecodable).

    Examples
    --------
    >>> from xsits.errors import LoadError
    >>> is_broken_file(LoadError("cannot read https://h/x.tif: HTTP 404"))
    True
    >>> is_broken_file(LoadError("cannot read https://h/x.tif: HTTP 403"))
    False
    >>> is_broken_file(ConnectionError("connection refused"))
    False
    """
    status = retry.status_of(err)
    if status is not None:
        return status in BROKEN_STATUSES
    return not retry.is_transient(err) and not isinstance(err, (MemoryError, KeyboardInterrupt))


def failed_reads(ds: Any) -> list[dict[str, str]]:
    """The failed reads of a cube computed in this process: item, href (no query) and reason.

    ``ds`` is a cube of :func:`xsits.open_cubes` (or its ``attrs``). Empty when nothing failed
    (or when the cube was computed in another process: :func:`xsits.compute_all` records them
    in its report and manifest). Every compute of the same load in this process adds to the
    record (:func:`forget` empties it).

    Examples
    --------
    >>> failed_reads({})
    []
    """
    attrs = getattr(ds, "attrs", ds)
    token = attrs.get(READS_ATTR) if isinstance(attrs, Mapping) else None
    if not token:
        return []
    failed = RECORDS.failed(str(token))
    return [{"item": item, "href": href, "reason": why}
            for (item, href), why in sorted(failed.items())]


def forget(ds: Any) -> None:
    """Forget the failed reads recorded for a cube's load (before computing it again).

    Examples
    --------
    >>> forget({"xsits_reads": "0" * 32})
    """
    attrs = getattr(ds, "attrs", ds)
    token = attrs.get(READS_ATTR) if isinstance(attrs, Mapping) else None
    if token:
        RECORDS.forget(str(token))


class _TolerantReader:
    def __init__(self, src: Any, ctx: Any, driver: TolerantDriver) -> None:
        self.src, self.ctx, self.driver = src, ctx, driver
        self.uri = signing.unsigned(src.uri) if signing.needs_signing(src.uri) else src.uri

    def _read(self, cfg: Any, dst_geobox: Any, dst: np.ndarray | None, selection: Any) -> Any:
        """The inner read; signed now when the href needs a token, re-signed once on 403."""
        inner = self.driver.inner
        if not signing.needs_signing(self.src.uri):
            return inner.open(self.src, self.ctx).read(cfg, dst_geobox, dst=dst,
                                                       selection=selection)
        src = self.src.patch(uri=signing.sign(self.src.uri))
        try:
            return inner.open(src, self.ctx).read(cfg, dst_geobox, dst=dst, selection=selection)
        except Exception as err:
            if retry.status_of(err) != 403:
                raise
            log.info("HTTP 403 reading %s: signing it with a new token", self.uri)
        src = self.src.patch(uri=signing.sign(self.src.uri, fresh=True))
        return inner.open(src, self.ctx).read(cfg, dst_geobox, dst=dst, selection=selection)

    def read(self, cfg: Any, dst_geobox: Any, *, dst: np.ndarray | None = None,
             selection: Any = None) -> tuple[tuple[slice, slice], np.ndarray]:
        driver = self.driver
        item = driver.items.get(self.uri, driver.items.get(self.src.uri, "?"))
        try:
            out = self._read(cfg, dst_geobox, dst, selection)
        except Exception as err:
            if get_options().on_missing_item == "raise" or not is_broken_file(err):
                raise
            reason = f"{type(err).__name__}: " + _redact(str(err)).split("\n")[0][:300]
            every = RECORDS.note_failure(driver.token, item, _redact(self.uri), reason,
                                         set(driver.items.values()))
            if every:
                raise  # nothing of the load could be read: the feature fails, as before
            log.warning("item %s: cannot read %s (%s); its pixels are nodata on its date",
                        item, _redact(self.uri), type(err).__name__)
            empty = dst[0:0, 0:0] if dst is not None else np.ndarray((0, 0), dtype=cfg.dtype)
            return np.s_[0:0, 0:0], empty
        RECORDS.note_read(driver.token, item)
        return out


class TolerantDriver:
    """An odc-loader reader driver: ``inner``'s reads, a broken file's pixels left nodata.

    Parameters
    ----------
    inner
        The driver doing the reads (:class:`xsits.io.reader.CogDriver`).
    items
        ``{href: item id}`` of every file of the load (to name the item that failed).

    Attributes
    ----------
    token
        The key of this load's record (:func:`failed_reads`), default a random one; set it
        as the cube's ``attrs["xsits_reads"]``.

    Examples
    --------
    >>> from xsits.io.reader import CogDriver
    >>> d = TolerantDriver(CogDriver(), {})
    >>> len(d.token)
    32
    """

    def __init__(self, inner: Any, items: Mapping[str, str], token: str | None = None) -> None:
        self.inner, self.items = inner, dict(items)
        self.token = token or uuid.uuid4().hex

    def __getstate__(self) -> dict[str, Any]:
        return {"inner": self.inner, "items": self.items, "token": self.token}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["inner"], state["items"], state["token"])

    def stats(self) -> dict[str, int]:
        """The inner driver's read counters."""
        return self.inner.stats()

    def new_load(self, geobox: Any, *, chunks: Any = None) -> Any:
        """The inner driver's load state (the files it fetches ahead signed now)."""
        sources = getattr(self.inner, "sources", None)
        if sources and any(signing.needs_signing(h) for h, _ in sources):
            self.inner.sources = tuple((signing.sign(h), n) for h, n in sources)
        return self.inner.new_load(geobox, chunks=chunks)

    def finalise_load(self, load_state: Any) -> Any:
        """End of a load."""
        return self.inner.finalise_load(load_state)

    def capture_env(self) -> dict[str, Any]:
        """The inner driver's GDAL settings."""
        return self.inner.capture_env()

    @contextlib.contextmanager
    def restore_env(self, env: dict[str, Any], load_state: Any) -> Iterator[Any]:
        """The inner driver's context."""
        with self.inner.restore_env(env, load_state) as ctx:
            yield ctx

    def open(self, src: Any, ctx: Any) -> _TolerantReader:
        """A reader of one file, signed when read, tolerant of its being broken."""
        return _TolerantReader(src, ctx, self)

    @property
    def md_parser(self) -> Any:
        """The inner driver's."""
        return self.inner.md_parser

    @property
    def dask_reader(self) -> Any:
        """The inner driver's."""
        return self.inner.dask_reader

    @property
    def aux_reader(self) -> Any:
        """The inner driver's."""
        return self.inner.aux_reader
