"""COG reads for ``odc.stac.load(driver=...)``: proven layouts fast, everything else by GDAL.

Owns: :class:`CogDriver`, an odc-loader reader driver. odc-stac keeps the geobox, grouping,
fusing, dtypes and nodata; the driver only answers "these pixels of this file on this grid".
For each read it decides, from the file's header, between two readers:

- **the fast reader** (:mod:`xsits.io.fast`), for the layouts and requests on its
  allow-list (:func:`xsits.io.tiff.fast_refusal`, :func:`xsits.io.fast.plan_read`), each
  one proven equal to GDAL by ``tests/test_conformance.py``; the first read of a load
  fetches every header and block of the load at once;
- **GDAL** (odc-loader's :class:`~odc.loader.RioReader`) for everything else.

A layout unknown to the fast reader is never an error: it goes to GDAL. Network failures are
retried by :mod:`xsits.io.retry`; HTTP 403 / 404 fail at once with a :class:`LoadError` naming
the href (never its query string). Also owns the read counters (:func:`last_load_stats`) and
clearing every cache of reads (:func:`clear_cache`, GDAL's ``/vsicurl/`` one included).

Must not: choose output grids, dtypes or nodata (odc-stac's), group or fuse dates, decode
pixels by hand or plan fast reads (:mod:`xsits.io.fast`).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import rasterio
from odc.geo.geobox import GeoBox
from odc.loader import (
    RasterLoadParams,
    RasterSource,
    RioDriver,
    RioReader,
    resolve_dst_dtype,
)
from rasterio.errors import RasterioError

from xsits._common import redact
from xsits.errors import LoadError
from xsits.io import earthdata, fast, fetch, retry, tiff
from xsits.io.fast import block_ranges, exact_cast, fast_read, plan_read, warp_nodata_ok
from xsits.io.tiff import Header, headers
from xsits.options import get_options

log = logging.getLogger(__name__)


def clear_cache() -> None:
    """Forget every fetched byte, parsed header, plan and decoded tile of this process.

    Examples
    --------
    >>> clear_cache()
    """
    fetch.clear()
    tiff.clear()
    fast.clear()
    clear_gdal_cache()


# --------------------------------------------------------------------------- the driver


@dataclass
class _Stats:
    fast: int = 0
    gdal: int = 0
    lock: Any = field(default_factory=threading.Lock, repr=False)

    def count(self, fast: bool) -> None:
        with self.lock:
            if fast:
                self.fast += 1
            else:
                self.gdal += 1


class _LoadState:
    """One load's state: the rasterio reader's context and what was fetched ahead."""

    def __init__(self, rio_state: Any, geobox: GeoBox, sources: Sequence[tuple[str, bool]],
                 stats: _Stats) -> None:
        self.rio_state, self.geobox, self.sources, self.stats = \
            rio_state, geobox, sources, stats
        self.lock = threading.Lock()
        self.ready = False

    def __getstate__(self) -> dict[str, Any]:  # to dask workers: without the lock
        return {k: v for k, v in self.__dict__.items() if k not in ("lock", "stats")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, lock=threading.Lock(), stats=_Stats(), ready=False)

    def prefetch(self) -> None:
        """On the first read: every header, then every block of the load, all at once."""
        with self.lock:
            if self.ready:
                return
            self.ready = True
            if not get_options().fast_reader:
                return
            uris = [u for u, _ in self.sources if fetch.fetchable(u)]
            heads = dict(zip(uris, headers(uris), strict=True))
            ranges = []
            for uri, nearest in self.sources:
                head = heads.get(uri)
                if not isinstance(head, Header) or head.refusal is not None or not nearest:
                    continue
                with contextlib.suppress(Exception):
                    plan = plan_read(head, RasterLoadParams(resampling="nearest"), self.geobox)
                    if plan is not None:
                        ranges += block_ranges(head, plan, 1)
            if sum(e - s for _, s, e in ranges) <= get_options().cache_bytes // 4:
                for uri, start, end in ranges:
                    fetch.submit(uri, start, end)


class _Context:
    """One task's reads: GDAL's environment is entered only by a read that GDAL does."""

    def __init__(self, rio: RioDriver, env: dict[str, Any], state: _LoadState) -> None:
        self.rio, self.env, self.state = rio, env, state


class _Reader:
    def __init__(self, src: RasterSource, ctx: _Context, driver: CogDriver) -> None:
        self.src, self.ctx, self.driver = src, ctx, driver

    def read(self, cfg: RasterLoadParams, dst_geobox: GeoBox, *, dst: np.ndarray | None = None,
             selection: Any = None) -> tuple[tuple[slice, slice], np.ndarray]:
        """One read: the fast reader's when it serves it, else GDAL's (odc's RioReader)."""
        state = self.ctx.state
        uri = self.src.uri
        if get_options().fast_reader and selection is None and fetch.fetchable(uri):
            state.prefetch()
            (head,) = headers([uri])
            if isinstance(head, BaseException):
                raise head
            plan = None
            if head.refusal is None and 1 <= self.src.band <= head.count and \
                    exact_cast(np.dtype(head.dtype), resolve_dst_dtype(head.dtype, cfg)):
                plan = plan_read(head, cfg, dst_geobox)
            if plan is not None and plan.index is not None and not warp_nodata_ok(head, cfg):
                plan = None
            if plan is not None:
                state.stats.count(True)
                return fast_read(head, plan, self.src, cfg, dst_geobox, dst)
        state.stats.count(False)
        ctx = self.ctx

        def gdal_read() -> Any:
            with ctx.rio.restore_env(ctx.env, state.rio_state) as rio_ctx:
                reader = RioReader(self.src, rio_ctx)
                return retry.call(
                    lambda: _gdal_read(reader, uri, cfg, dst_geobox, dst, selection),
                    what=f"reading {redact(uri)} with GDAL", transient=_gdal_transient,
                    host=urlparse(uri).netloc or None,
                    before_retry=lambda _err: clear_gdal_cache())

        return earthdata.with_gdal_token(uri, gdal_read)  # Earthdata hosts: their token


def _gdal_read(reader: RioReader, uri: str, cfg: RasterLoadParams, dst_geobox: GeoBox,
               dst: np.ndarray | None, selection: Any) -> Any:
    try:
        return reader.read(cfg, dst_geobox, dst=dst, selection=selection)
    except Exception as err:
        if fetch.client_status(err) is not None:
            raise LoadError(f"cannot read {redact(uri)}: {fetch.reason(err)}") from err
        raise


def _gdal_transient(err: BaseException) -> bool:
    return not isinstance(err, LoadError) and isinstance(err, (RasterioError, OSError))


class CogDriver:
    """odc-loader reader driver: the fast reader where proven, odc-stac's GDAL reader elsewhere.

    Parameters
    ----------
    sources
        ``(href, nearest)`` of every file the load reads (``nearest``: its band is resampled
        with ``"nearest"``): their headers and blocks are fetched all at once on the first
        read. Reads of other files work too, one at a time.

    Examples
    --------
    >>> import tempfile, numpy as np, rasterio, odc.stac, pystac, datetime as dt
    >>> from rasterio.transform import from_origin
    >>> path = tempfile.mktemp(suffix=".tif")
    >>> with rasterio.open(path, "w", driver="COG", width=64, height=64, count=1,
    ...                    dtype="uint16", crs="EPSG:32632", nodata=0,
    ...                    transform=from_origin(600000, 5600000, 10, 10)) as f:
    ...     f.write(np.arange(64 * 64, dtype="uint16").reshape(1, 64, 64))
    >>> from odc.geo.geobox import GeoBox
    >>> box = GeoBox.from_bbox((600000, 5599360, 600640, 5600000), "EPSG:32632", resolution=10)
    >>> item = pystac.Item("a", box.geographic_extent.json, None, dt.datetime(2024, 1, 1),
    ...                    {"proj:epsg": 32632})
    >>> item.add_asset("B04", pystac.Asset(path, roles=["data"]))
    >>> driver = CogDriver([(path, True)])
    >>> ds = odc.stac.load([item], bands=["B04"], crs="EPSG:32632", resolution=10,
    ...                    x=(600100, 600200), y=(5599800, 5599900), driver=driver,
    ...                    stac_cfg={"assets": {"B04": {"data_type": "uint16", "nodata": 0}}})
    >>> int(ds.B04[0, 0, 0]), driver.stats()
    (650, {'fast': 1, 'gdal': 0})
    """

    def __init__(self, sources: Sequence[tuple[str, bool]] = ()) -> None:
        self.sources = tuple(sources)
        self._rio = RioDriver()
        self._stats = _Stats()
        _LAST[:] = [self._stats]

    def __getstate__(self) -> dict[str, Any]:
        return {"sources": self.sources}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["sources"])

    def stats(self) -> dict[str, int]:
        """Reads served so far: ``{"fast": ..., "gdal": ...}``."""
        return {"fast": self._stats.fast, "gdal": self._stats.gdal}

    def new_load(self, geobox: GeoBox, *, chunks: Any = None) -> _LoadState:
        """The state of one load (odc-loader calls it once per load)."""
        return _LoadState(self._rio.new_load(geobox, chunks=chunks), geobox, self.sources,
                          self._stats)

    def finalise_load(self, load_state: _LoadState) -> Any:
        """End of a load (odc-loader calls it)."""
        return self._rio.finalise_load(load_state.rio_state)

    def capture_env(self) -> dict[str, Any]:
        """GDAL settings to carry to dask workers (for the reads GDAL does)."""
        return self._rio.capture_env()

    @contextlib.contextmanager
    def restore_env(self, env: dict[str, Any], load_state: _LoadState) -> Iterator[_Context]:
        """The context of the reads of one task (GDAL's environment: per GDAL read)."""
        yield _Context(self._rio, env, load_state)

    def open(self, src: RasterSource, ctx: _Context) -> _Reader:
        """A reader of one file (one band of one item)."""
        return _Reader(src, ctx, self)

    @property
    def md_parser(self) -> None:
        """odc-stac's own STAC parsing."""
        return None

    @property
    def dask_reader(self) -> None:
        """odc-loader's own dask reading."""
        return None

    @property
    def aux_reader(self) -> None:
        """No auxiliary bands."""
        return None


# The counters of the newest driver of this process, for last_load_stats() (tests, benchmarks).
_LAST: list[_Stats] = []


def last_load_stats() -> dict[str, int]:
    """Reads served by the fast reader and by GDAL in the newest load of this process.

    Examples
    --------
    >>> sorted(last_load_stats())
    ['fast', 'gdal']
    """
    stats = _LAST[0] if _LAST else _Stats()
    return {"fast": stats.fast, "gdal": stats.gdal}


@functools.lru_cache(maxsize=1)
def _gdal_lib() -> Any:
    """The libgdal that rasterio uses, through ctypes (None if not found)."""
    base = Path(rasterio.__file__).parent
    candidates = [str(p) for d in (base.parent / "rasterio.libs", base / ".dylibs")
                  if d.is_dir() for p in d.glob("libgdal*")]
    with contextlib.suppress(OSError), open("/proc/self/maps") as fh:
        candidates += sorted({ln.split()[-1] for ln in fh if "libgdal" in ln and "rasterio" in ln})
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
            lib.VSICurlClearCache  # noqa: B018 - raises AttributeError when absent
        except (OSError, AttributeError):
            continue
        return lib
    return None


def clear_gdal_cache() -> None:
    """Forget what GDAL's ``/vsicurl/`` remembers, so that a retry asks the server again.

    Examples
    --------
    >>> clear_gdal_cache()
    """
    lib = _gdal_lib()
    if lib is not None:
        lib.VSICurlClearCache()
