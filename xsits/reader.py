"""COG reads for odc-stac with every needed byte range fetched once, many at a time.

``load`` reads each feature's cube through a *reader driver* called for every (date, band):
odc-stac's graph calls it, and so does :func:`xsits.load._read_small_cube` (one task per small
cube). :class:`CogDriver` is that driver. Instead of a GDAL open per chunk (three HTTP
requests and ~10 ms of Python per read), it

1. fetches, on the first read of a feature, **all** of that feature's files at once, with up
   to :data:`MAX_REQUESTS` range requests in flight (obstore's Rust HTTP, on a thread pool):
   per file one request for the first :data:`PREFETCH_BYTES` (the header and, in a COG, the
   smallest overviews), then one per needed tile not already in it; files of a host found to
   be small (:data:`SMALL_FILE_BYTES`: chips, windows of scenes) are fetched whole, in one;
2. parses headers (the needed IFD tags of a DEFLATE or uncompressed COG; tifffile for
   anything else), inflates DEFLATE tiles only up to the needed rows (ISA-L, or libdeflate
   for whole tiles) and keeps only each file's window;
3. answers each chunk read from that window: a slice when the grids line up (reading on the
   items' native grid, :func:`xsits.load.load_cube`), a pixel repeat when the grid is ``k``
   times finer (a 20 m band on a 10 m grid), else an in-memory warp.

Bytes are kept in a process-wide cache (:data:`CACHE_BYTES`), so features sharing a file (or a
block) fetch it once. Failed requests are retried (obstore, then :class:`CogDriver` re-reads
the file with backoff). Anything this reader does not handle (not a tiled GeoTIFF, no EPSG
georeferencing, ``s3://`` URLs...) is read by odc-stac's rasterio reader, with retries.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
from odc.geo.geobox import GeoBox
from odc.geo.overlap import compute_reproject_roi
from odc.geo.warp import rio_reproject
from odc.loader._reader import (
    nodata_mask,
    pick_overview,
    resolve_dst_dtype,
    resolve_dst_nodata,
    resolve_src_nodata,
    same_nodata,
)

from xsits._common import redact
from xsits.errors import LoadError

log = logging.getLogger(__name__)

#: First bytes of each file fetched in one request: the header and a COG's smallest overviews.
PREFETCH_BYTES = 128 * 1024
#: Files of a host are fetched whole, in one request instead of two (header, then tiles), once
#: the first :data:`SMALL_FILES_SEEN` files read there were all at most this size (chips,
#: small windows of scenes). Big files (a full Sentinel-2 tile) keep :data:`PREFETCH_BYTES`.
SMALL_FILE_BYTES = 2**20
SMALL_FILES_SEEN = 16
#: Range requests in flight at once per process (sized for latency, not for cores).
MAX_REQUESTS = 64
#: Fetched bytes kept per process, so that features sharing a file fetch it once.
CACHE_BYTES = 256 * 2**20
#: A feature's files are all fetched on its first read when its windows hold at most this many
#: bytes; a larger cube reads each chunk's windows when the chunk is computed.
PREFETCH_FEATURE_BYTES = 256 * 2**20
#: Parsed headers kept per process.
HEADERS_KEPT = 8192
#: HTTP clients kept per process (one per host; one per URL for signed URLs).
STORES_KEPT = 256


class Unsupported(Exception):
    """A file to read with the rasterio reader instead (not tiled, no EPSG code...)."""


# --------------------------------------------------------------------------- bytes


class _State:
    """Per-process network state: HTTP clients, a thread pool, fetched bytes (an LRU).

    Range requests run on :data:`MAX_REQUESTS` threads with obstore's blocking calls, which
    release the GIL while they wait (Rust HTTP): for many small requests, about a third less
    CPU than coroutines on an event loop. Concurrent requests for one range share one fetch.
    """

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.pid = os.getpid()
        self.pool = ThreadPoolExecutor(MAX_REQUESTS, thread_name_prefix="xsits-http")
        self.lock = threading.Lock()
        self.stores: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self.bytes: collections.OrderedDict[tuple, memoryview] = collections.OrderedDict()
        self.used = 0
        self.pending: dict[tuple, Future] = {}
        self.sizes: dict[str, tuple[int, int]] = {}  # per host: files seen, the largest size
        self.sizes_lock = threading.Lock()

    def cached(self, key: tuple, fetch: Callable[[], memoryview]) -> memoryview | Future:
        """The bytes under ``key`` if cached, else a future: of a fetch in flight or ``fetch``."""
        with self.lock:
            got = self.bytes.get(key)
            if got is not None:
                self.bytes.move_to_end(key)
                return got
            fut = self.pending.get(key)
            if fut is None:
                fut = self.pending[key] = self.pool.submit(fetch)
                fut.add_done_callback(lambda f: self._done(key, f))
            return fut

    def _done(self, key: tuple, fut: Future) -> None:
        with self.lock:
            self.pending.pop(key, None)
            if fut.cancelled() or fut.exception() is not None:
                return
            value = fut.result()
            self.bytes[key] = value
            self.used += len(value)
            while self.used > CACHE_BYTES and len(self.bytes) > 1:
                _, old = self.bytes.popitem(last=False)
                self.used -= len(old)

    def forget(self, match: Callable[[tuple], bool]) -> None:
        with self.lock:
            for key in [k for k in self.bytes if match(k)]:
                self.used -= len(self.bytes.pop(key))

    def head_bytes(self, uri: str) -> int:
        """How many first bytes of ``uri`` to fetch with its header.

        :data:`PREFETCH_BYTES`, or the whole file (with a margin) when its host's files are
        small (:data:`SMALL_FILE_BYTES`).
        """
        seen, largest = self.sizes.get(_host(uri), (0, 0))
        if seen < SMALL_FILES_SEEN or largest > SMALL_FILE_BYTES or largest <= PREFETCH_BYTES:
            return PREFETCH_BYTES
        return -(-largest * 5 // 4 // 2**16) * 2**16  # a margin, in 64 KiB steps

    def knows(self, uri: str) -> bool:
        """Whether enough files of ``uri``'s host were seen for :meth:`head_bytes` to decide."""
        return self.sizes.get(_host(uri), (0, 0))[0] >= SMALL_FILES_SEEN

    def note_sizes(self, uris: Sequence[str], sizes: Sequence[int]) -> None:
        """Record the sizes of files read (from their headers), for :meth:`head_bytes`."""
        hosts: dict[str, list[int]] = {}
        for uri, size in zip(uris, sizes, strict=True):
            hosts.setdefault(_host(uri), []).append(size)
        with self.sizes_lock:
            for host, got in hosts.items():
                seen, largest = self.sizes.get(host, (0, 0))
                self.sizes[host] = seen + len(got), max(largest, *got)


_STATE: _State | None = None
_STATE_LOCK = threading.Lock()


def _state() -> _State:
    """The process's network state (new in a forked child: threads do not survive a fork)."""
    global _STATE
    with _STATE_LOCK:
        if _STATE is None or _STATE.pid != os.getpid():
            _STATE = _State()
        return _STATE


def _host(uri: str) -> str:
    """The host serving ``uri`` (``""`` for local files)."""
    return urlparse(uri).netloc


def _locate(uri: str) -> tuple[str, str]:
    """``(store key, path in that store)`` of a URL or local path; Unsupported otherwise."""
    p = urlparse(uri)
    if p.scheme in ("http", "https"):
        if p.query or p.params:  # signed URLs: a store per URL keeps the query string
            return uri, ""
        return f"{p.scheme}://{p.netloc}", unquote(p.path).lstrip("/")
    if p.scheme == "file":
        return "file", os.path.abspath(unquote(p.path)).lstrip("/")
    if p.scheme == "":
        return "file", os.path.abspath(uri).lstrip("/")
    raise Unsupported(f"{p.scheme}:// URLs are read with rasterio")


def _store(key: str) -> Any:
    from obstore.store import HTTPStore, LocalStore

    st = _state()
    with st.lock:
        if key in st.stores:
            st.stores.move_to_end(key)
            return st.stores[key]
    if key == "file":
        store = LocalStore("/")
    else:
        store = HTTPStore.from_url(
            key,
            client_options={"allow_http": True, "timeout": "120s", "connect_timeout": "20s"},
            retry_config={"max_retries": 5, "retry_timeout": dt.timedelta(seconds=120),
                          "backoff": {"init_backoff": dt.timedelta(milliseconds=200)}},
        )
    with st.lock:
        store = st.stores.setdefault(key, store)
        while len(st.stores) > STORES_KEPT:  # signed URLs get a store each: keep a few
            st.stores.popitem(last=False)
    return store


def _get(uri: str, start: int, end: int, retries: int, delay: float) -> memoryview:
    """Bytes ``[start, end)`` of ``uri`` (fewer at the end of the file), retried with backoff.

    obstore checks the body against the response's ``Content-Length`` / ``Content-Range``
    (a truncated body is an error); after obstore's own retries, the request is made again
    ``retries`` times with what was cached of ``uri`` forgotten.
    """
    import time

    import obstore

    key, path = _locate(uri)
    for attempt in range(retries + 1):
        try:
            return memoryview(obstore.get_range(_store(key), path, start=start, end=end))
        except Exception as err:
            if attempt >= retries:
                raise LoadError(f"cannot read {redact(uri)}: {err}") from err
            log.info("read of %s failed (attempt %d: %s); retrying", redact(uri), attempt + 1,
                     err)
            _state().forget(lambda k: k[0] == uri)
            time.sleep(delay * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def fetch(ranges: Sequence[tuple[str, int, int]], *, retries: int = 4, delay: float = 0.2,
          heads: dict[str, int] | None = None) -> list[memoryview | BaseException]:
    """Byte ranges ``(uri, start, end)``, all requested at once; an exception per failure.

    Ranges are read through the process cache: a range inside a file's first
    :data:`PREFETCH_BYTES` (or ``heads[uri]`` bytes: what its header's request asked for)
    comes from one request for those bytes (a COG's header and smallest overviews).

    Examples
    --------
    >>> import tempfile
    >>> path = tempfile.mktemp(suffix=".bin")
    >>> _ = open(path, "wb").write(b"0123456789")
    >>> [b.tobytes() for b in fetch([(path, 0, 2), (path, 8, 10)])]
    [b'01', b'89']
    """
    st = _state()

    def request(uri: str, start: int, end: int) -> memoryview | Future:
        return st.cached((uri, start, end), lambda: _get(uri, start, end, retries, delay))

    sizes = {uri: (heads or {}).get(uri, PREFETCH_BYTES) for uri, _, _ in ranges}
    got = {uri: request(uri, 0, sizes[uri]) for uri, start, _ in ranges if start < sizes[uri]}
    futures: list[Future | memoryview | BaseException] = []
    for uri, start, end in ranges:
        if start < sizes[uri]:
            head = got[uri]
            try:
                head = head.result() if isinstance(head, Future) else head
            except Exception as err:
                futures.append(err)
                continue
            if end <= len(head) or len(head) < sizes[uri]:
                futures.append(head[start:end])
                continue
        futures.append(request(uri, start, end))
    out: list[memoryview | BaseException] = []
    for fut in futures:
        if not isinstance(fut, Future):
            out.append(fut)
            continue
        try:
            out.append(fut.result())
        except Exception as err:
            out.append(err)
    return out


# --------------------------------------------------------------------------- headers


@dataclass(frozen=True)
class Level:
    """One resolution level of a file: its page index, pixel grid and tile shape."""

    page: int
    geobox: GeoBox
    tile: tuple[int, int]


@dataclass(frozen=True, eq=False)
class Header:
    """What reads need from a file's header (parsed by tifffile from its first bytes)."""

    levels: tuple[Level, ...]
    overviews: tuple[int, ...]
    nodata: float | None
    dtype: np.dtype
    planar: bool
    tiles: tuple[tuple[np.ndarray, np.ndarray], ...]  # per level: tile offsets, byte counts
    deflate: tuple[int, ...]  # per level: DEFLATE's predictor (1 or 2), 0 when not DEFLATE
    decode: tuple[Callable | None, ...]  # per level: tifffile's tile decoder when not DEFLATE
    samples: int = 1
    byteorder: str = "<"
    key: tuple = ()  # the levels as plain values (a cache key for read plans)
    fetched: int = PREFETCH_BYTES  # first bytes asked for with the header (fewer: whole file)

    @property
    def end(self) -> int:
        """Where the file's last tile ends (about its size)."""
        return max((int((off + n).max()) for off, n in self.tiles if len(off)), default=0)


def _geobox(geo: dict, shape: tuple[int, int]) -> GeoBox:
    """The full-resolution grid from GeoTIFF tags (EPSG code, pixel scale and tie point)."""
    from affine import Affine

    epsg = geo.get("ProjectedCSTypeGeoKey") or geo.get("GeographicTypeGeoKey")
    if not epsg or int(epsg) == 32767:
        raise Unsupported("no EPSG code in the GeoTIFF keys")
    if geo.get("ModelTransformation") is not None:
        m = np.asarray(geo["ModelTransformation"], dtype="float64").ravel()
        transform = Affine(m[0], m[1], m[3], m[4], m[5], m[7])
    elif geo.get("ModelPixelScale") and geo.get("ModelTiepoint"):
        sx, sy = geo["ModelPixelScale"][:2]
        i, j, _, x, y, _ = geo["ModelTiepoint"][:6]
        transform = Affine(sx, 0, x - i * sx, 0, -sy, y + j * sy)
    else:
        raise Unsupported("no georeferencing tags")
    if int(geo.get("GTRasterTypeGeoKey", 1)) == 2:  # PixelIsPoint: GDAL shifts half a pixel
        transform = transform * Affine.translation(-0.5, -0.5)
    return GeoBox(shape, transform, f"EPSG:{int(epsg)}")


#: GeoTIFF georeferencing tags: (code, name).
_GEO_TAGS = ((33550, "ModelPixelScale"), (33922, "ModelTiepoint"), (34264, "ModelTransformation"))


def _geo_tags(tags: Any) -> dict[str, Any]:
    """The GeoTIFF tags and keys :func:`_geobox` needs, from tifffile's tags.

    tifffile's ``geotiff_metadata`` decodes every key: a fifth of a header's parsing time.
    """
    geo = {name: tags[code].value for code, name in _GEO_TAGS if tags.get(code) is not None}
    keys = tags.get(34735)
    geo.update(_geo_keys(None if keys is None else keys.value))
    return geo


def _geo_keys(values: Sequence[int] | None) -> dict[str, int]:
    """The CRS and raster-type keys of a GeoKeyDirectory (header, then id/where/count/value)."""
    names = {3072: "ProjectedCSTypeGeoKey", 2048: "GeographicTypeGeoKey",
             1025: "GTRasterTypeGeoKey"}
    out: dict[str, int] = {}
    if values is None:
        return out
    values = [int(v) for v in values]
    for i in range(4, 4 + 4 * values[3], 4):
        key, location, _, value = values[i:i + 4]
        if key in names and location == 0:
            out[names[key]] = value
    return out


#: TIFF field types: struct format of one value.
_TIFF_TYPES = {1: "B", 2: "s", 3: "H", 4: "I", 5: "2I", 6: "b", 7: "B", 8: "h", 9: "i",
               10: "2i", 11: "f", 12: "d", 16: "Q", 17: "q", 18: "Q"}
_ARRAY_TYPES = {3: "u2", 4: "u4", 16: "u8"}
#: The tags a read needs (the rest of an IFD is skipped).
_WANTED_TAGS = frozenset({254, 256, 257, 258, 259, 277, 284, 317, 322, 323, 324, 325, 339,
                          33550, 33922, 34264, 34735, 42113})


def _ifds(head: bytes | memoryview) -> tuple[str, list[dict[int, Any]]]:
    """``(byte order, [{tag: value}])`` of every IFD in ``head`` (wanted tags only).

    About ten times faster than tifffile's full parse of every tag, which dominated reading
    many small windows; anything unusual raises and :func:`parse_header` uses tifffile.
    """
    import struct

    bo = {b"II": "<", b"MM": ">"}[bytes(head[:2])]
    (version,) = struct.unpack_from(bo + "H", head, 2)
    big = version == 43
    if version not in (42, 43):
        raise ValueError("not a TIFF")
    cnt_fmt, ent_fmt, ptr_fmt, inline = ("Q", "HHQ", "Q", 8) if big else ("H", "HHI", "I", 4)
    ent_size = 20 if big else 12
    (offset,) = struct.unpack_from(bo + ptr_fmt, head, 8 if big else 4)
    ifds: list[dict[int, Any]] = []
    while offset and len(ifds) < 64:
        (n,) = struct.unpack_from(bo + cnt_fmt, head, offset)
        start = offset + struct.calcsize(cnt_fmt)
        tags: dict[int, Any] = {}
        for k in range(n):
            pos = start + k * ent_size
            code, typ, count = struct.unpack_from(bo + ent_fmt, head, pos)
            if code not in _WANTED_TAGS:
                continue
            fmt = _TIFF_TYPES[typ]
            size = struct.calcsize(fmt) * count
            where = pos + 4 + struct.calcsize(ent_fmt[2])
            if size > inline:
                (where,) = struct.unpack_from(bo + ptr_fmt, head, where)
            if where + size > len(head):
                raise ValueError("tag values beyond the first bytes")
            if typ == 2:
                tags[code] = bytes(head[where:where + count]).rstrip(b"\0").decode()
            elif count > 4 and typ in (3, 4, 16):
                tags[code] = np.frombuffer(head, bo + _ARRAY_TYPES[typ], count, where)
            else:
                tags[code] = struct.unpack_from(f"{bo}{count * len(fmt)}{fmt[-1]}"
                                                if len(fmt) > 1 else f"{bo}{count}{fmt}",
                                                head, where)
        ifds.append(tags)
        (offset,) = struct.unpack_from(bo + ptr_fmt, head, start + n * ent_size)
    return bo, ifds


def _first(tags: dict[int, Any], code: int, default: Any = None) -> Any:
    value = tags.get(code)
    return default if value is None else value[0]


#: Headers by file layout (every tag but the tile offsets and byte counts): the files of one
#: band of a tile differ only in those, and building the levels' grids is most of a parse.
_LAYOUTS: collections.OrderedDict[tuple, Header] = collections.OrderedDict()
_LAYOUTS_KEPT = 1024
_LAYOUTS_LOCK = threading.Lock()


def _lean_header(head: bytes | memoryview) -> Header | None:
    """The header of a DEFLATE or uncompressed tiled GeoTIFF; None for tifffile to parse."""
    bo, ifds = _ifds(head)
    layout = (bo, tuple(tuple(sorted((code, v if isinstance(v, str | tuple) else tuple(v))
                                     for code, v in t.items() if code not in (324, 325)))
                        for t in ifds))
    with _LAYOUTS_LOCK:
        known = _LAYOUTS.get(layout)
    if known is None:
        known = _parse_lean(bo, ifds)
        with _LAYOUTS_LOCK:
            _LAYOUTS[layout] = known
            while len(_LAYOUTS) > _LAYOUTS_KEPT:
                _LAYOUTS.popitem(last=False)
    if known[0] is None:
        return None
    header, pages = known  # the same layout: only the tiles' offsets and byte counts differ
    return dataclasses.replace(header, tiles=tuple(
        (np.asarray(ifds[i][324]), np.asarray(ifds[i][325])) for i in pages))


def _parse_lean(bo: str, ifds: list[dict[int, Any]]) -> tuple[Header | None, tuple[int, ...]]:
    """A header from its IFDs (or None) and the IFD of each of its levels."""
    base = ifds[0]
    spp = _first(base, 277, 1)
    bits = _first(base, 258, 1)
    kind = {1: "u", 2: "i", 3: "f"}.get(_first(base, 339, 1))
    if 322 not in base or kind is None or bits not in (8, 16, 32, 64):
        return None, ()
    if any(len(set(t.get(258, (bits,)))) > 1 for t in ifds):  # mixed sample sizes
        return None, ()
    pages = [0] + [i for i, t in enumerate(ifds) if i and _first(t, 254, 0) & 1
                   and not _first(t, 254, 0) & 4 and 322 in t and _first(t, 277, 1) == spp]
    pages.sort(key=lambda i: -_first(ifds[i], 256))
    keep = [ifds[i] for i in pages]
    predictors = (1, 2) if kind in "iu" else (1,)  # horizontal differencing: integers only
    if any(_first(t, 259, 1) not in (1, 8, 32946) or _first(t, 317, 1) not in predictors
           for t in keep):
        return None, ()  # JPEG, LZW, ZSTD, floating-point predictors: tifffile's decoders
    geo = {name: base[code] for code, name in _GEO_TAGS if code in base}
    geo.update(_geo_keys(base.get(34735)))
    gbox = _geobox(geo, (_first(base, 257), _first(base, 256)))
    levels = tuple(Level(i, gbox if t is base else gbox.zoom_to((_first(t, 257), _first(t, 256))),
                         (_first(t, 323), _first(t, 322))) for i, t in enumerate(keep))
    nodata = base.get(42113)
    return Header(
        levels=levels,
        key=tuple((lv.tile, _grid_key(lv.geobox)) for lv in levels),
        overviews=tuple(round(_first(base, 256) / _first(t, 256)) for t in keep[1:]),
        nodata=float(nodata) if nodata else None,
        dtype=np.dtype(f"{kind}{bits // 8}"),
        planar=spp > 1 and _first(base, 284, 1) == 2,
        tiles=tuple((np.asarray(t[324]), np.asarray(t[325])) for t in keep),
        deflate=tuple(_first(t, 317, 1) if _first(t, 259, 1) != 1 else 0 for t in keep),
        decode=tuple(None if _first(t, 259, 1) != 1 else _raw_decoder(bo, kind, bits, t, spp)
                     for t in keep),
        samples=spp,
        byteorder=bo,
    ), tuple(pages)


def _raw_decoder(bo: str, kind: str, bits: int, tags: dict[int, Any], spp: int) -> Callable:
    """A decoder of uncompressed tiles with tifffile's signature (``(bytes, index)``)."""
    th, tw = _first(tags, 323), _first(tags, 322)
    dtype = np.dtype(f"{bo}{kind}{bits // 8}")

    def decode(data: bytes, index: int) -> tuple[np.ndarray]:
        return (np.frombuffer(data, dtype, th * tw * spp).reshape(1, th, tw, spp),)

    return decode


def parse_header(head: bytes | memoryview) -> Header:
    """Parse a GeoTIFF's header from its first bytes; :class:`Unsupported` if not a COG.

    DEFLATE and uncompressed COGs (the usual ones) are parsed by reading only the tags a read
    needs; any other file by tifffile.

    Examples
    --------
    >>> parse_header(open("cog.tif", "rb").read(131072)).levels[0].geobox.crs  # doctest: +SKIP
    CRS('EPSG:32632')
    """
    import io

    import tifffile

    try:
        lean = _lean_header(head)
    except Unsupported:
        raise
    except Exception:  # noqa: BLE001 - anything unusual: tifffile parses it
        lean = None
    if lean is not None:
        return lean
    try:
        with tifffile.TiffFile(io.BytesIO(head)) as tif:
            pages = list(tif.pages)
            base = pages[0]
            geo = _geo_tags(base.tags)
            if not base.is_tiled or base.dtype is None or base.dtype.kind not in "uif":
                raise Unsupported("not a tiled GeoTIFF")
            gbox = _geobox(geo, base.shape[:2])
            keep = [base] + [p for p in pages[1:] if int(p.subfiletype) & 1
                             and not int(p.subfiletype) & 4 and p.is_tiled
                             and p.samplesperpixel == base.samplesperpixel]
            keep.sort(key=lambda p: -p.imagewidth)
            levels = tuple(Level(i, gbox if p is base else gbox.zoom_to(p.shape[:2]),
                                 (p.tilelength, p.tilewidth)) for i, p in enumerate(keep))
            nodata = base.nodata
            predictors = (1, 2) if base.dtype.kind in "iu" else (1,)  # see _lean_header
            deflate = tuple(int(p.predictor) if int(p.compression) in (8, 32946)
                            and int(p.predictor) in predictors else 0 for p in keep)
            return Header(
                levels=levels,
                key=tuple((lv.tile, _grid_key(lv.geobox)) for lv in levels),
                overviews=tuple(round(base.imagewidth / p.imagewidth) for p in keep[1:]),
                nodata=None if nodata in (None, 0) and "GDAL_NODATA" not in base.tags
                else float(nodata),
                dtype=base.dtype,
                planar=base.samplesperpixel > 1 and int(base.planarconfig) == 2,
                tiles=tuple((np.asarray(p.dataoffsets), np.asarray(p.databytecounts))
                            for p in keep),
                deflate=deflate,
                decode=tuple(None if d else p.decode for p, d in zip(keep, deflate,
                                                                      strict=True)),
                samples=base.samplesperpixel,
                byteorder=tif.byteorder,
            )
    except Unsupported:
        raise
    except Exception as err:  # metadata beyond the first bytes, not a TIFF...
        raise Unsupported(f"header not parsed from the first {len(head)} bytes: {err}") \
            from err


_HEADERS: collections.OrderedDict[str, Header] = collections.OrderedDict()
_HEADERS_LOCK = threading.Lock()


def headers(uris: Sequence[str], *, retries: int = 4,
            delay: float = 0.2) -> dict[str, Header | BaseException]:
    """Parsed headers of ``uris`` (cached per process), their first bytes fetched at once.

    A file that is not a COG this reader handles maps to an :class:`Unsupported`; one that
    cannot be read after the retries to a :class:`~xsits.errors.LoadError`.

    Examples
    --------
    >>> headers(["cog.tif"])["cog.tif"].dtype  # doctest: +SKIP
    dtype('uint16')
    """
    out: dict[str, Header | BaseException] = {}
    with _HEADERS_LOCK:
        for u in uris:
            if u in _HEADERS:
                out[u] = _HEADERS[u]
    todo = list(dict.fromkeys(u for u in uris if u not in out))
    if not todo:  # every header cached (each chunk read asks for its file's): no fetch
        return out
    st = _state()
    if len(todo) > SMALL_FILES_SEEN and not st.knows(todo[0]):
        # a host not seen yet: a few headers first, to learn whether its files are small
        out.update(headers(todo[:SMALL_FILES_SEEN], retries=retries, delay=delay))
        todo = todo[SMALL_FILES_SEEN:]
    sizes = {u: st.head_bytes(u) for u in todo}
    seen: list[str] = []
    ends: list[int] = []
    for u, head in zip(todo, fetch([(u, 0, sizes[u]) for u in todo], retries=retries,
                                   delay=delay, heads=sizes), strict=True):
        if isinstance(head, BaseException):
            out[u] = head
            continue
        try:
            parsed = parse_header(head)
        except Unsupported as why:
            out[u] = why
            continue
        if sizes[u] != parsed.fetched:
            parsed = dataclasses.replace(parsed, fetched=sizes[u])
        out[u] = parsed
        seen.append(u)
        ends.append(len(head) if len(head) < sizes[u] else max(parsed.end, len(head)))
    with _HEADERS_LOCK:
        for u in seen:
            _HEADERS[u] = out[u]
        while len(_HEADERS) > HEADERS_KEPT:
            _HEADERS.popitem(last=False)
    st.note_sizes(seen, ends)
    return out


def clear_cache() -> None:
    """Forget the bytes, headers and windows this process has cached (files changed...).

    Examples
    --------
    >>> clear_cache()
    """
    st = _state()
    st.forget(lambda _: True)
    with st.sizes_lock:
        st.sizes.clear()
    _TILE_CACHE.clear()
    with _HEADERS_LOCK:
        _HEADERS.clear()
    with _AHEAD_LOCK:
        _AHEAD.clear()


def header(uri: str, *, retries: int = 4, delay: float = 0.2) -> Header:
    """One file's parsed header (see :func:`headers`); raises when it has none.

    Examples
    --------
    >>> header("cog.tif").levels[0].geobox.crs  # doctest: +SKIP
    CRS('EPSG:32632')
    """
    got = headers([uri], retries=retries, delay=delay)[uri]
    if isinstance(got, BaseException):
        raise got
    return got


# --------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class Plan:
    """How one file is read for one output grid: which level, which pixels, paste or warp."""

    level: Level
    roi_src: tuple[slice, slice]
    roi_dst: tuple[slice, slice]
    paste: bool


def plan_read(head: Header, dst_geobox: GeoBox, *, nearest: bool = True,
              use_overviews: bool = True) -> Plan:
    """The level and source window of a read onto ``dst_geobox``, as odc-stac chooses them.

    The overview is picked like odc-stac's rasterio reader does (the coarsest one not coarser
    than the output), so values are the same as ``odc.stac.load``'s. Plans are cached: the
    files of one band of a tile share them across dates.

    Examples
    --------
    >>> p = plan_read(header("cog.tif"), dst_geobox)  # doctest: +SKIP
    >>> p.level.page, p.paste  # doctest: +SKIP
    (1, True)
    """
    key = (head.key, _grid_key(dst_geobox), nearest, use_overviews)
    with _PLANS_LOCK:
        plan = _PLANS.get(key)
    if plan is None:
        plan = _plan(head.levels, head.overviews, dst_geobox, nearest, use_overviews)
        with _PLANS_LOCK:
            _PLANS[key] = plan
            while len(_PLANS) > PLANS_KEPT:
                _PLANS.popitem(last=False)
    return plan


#: Read plans kept per process (keyed by plain values: hashing a GeoBox hashes its CRS' WKT).
PLANS_KEPT = 4096
_PLANS: collections.OrderedDict[tuple, Plan] = collections.OrderedDict()
_PLANS_LOCK = threading.Lock()


def _grid_key(gbox: GeoBox) -> tuple:
    return gbox.shape.yx, tuple(gbox.affine)[:6], str(gbox.crs)


def _plan(levels: tuple[Level, ...], overviews: tuple[int, ...], dst_geobox: GeoBox,
          nearest: bool, use_overviews: bool) -> Plan:
    ttol = 0.9 if nearest else 0.05
    rr = compute_reproject_roi(levels[0].geobox, dst_geobox, ttol=ttol)
    level = levels[0]
    if use_overviews and rr.read_shrink > 1:
        idx = pick_overview(rr.read_shrink, overviews)
        if idx is not None:
            level = levels[idx + 1]
            rr = compute_reproject_roi(level.geobox, dst_geobox, ttol=ttol)
    return Plan(level, rr.roi_src, rr.roi_dst, bool(rr.paste_ok and rr.read_shrink == 1))


def _fill(head: Header) -> float:
    """The value of pixels in empty (sparse) tiles: nodata, else 0."""
    nodata = head.nodata
    if nodata is None or (np.isnan(nodata) and head.dtype.kind != "f"):
        return 0
    return nodata


def _tiles(head: Header, level: Level, roi: tuple[slice, slice],
           band: int) -> list[tuple[int, int, int, int, int]]:
    """``(tile index, offset, byte count, row, col)`` of the tiles ``roi`` touches."""
    offsets, counts = head.tiles[level.page]
    th, tw = level.tile
    ntx = -(-level.geobox.shape[1] // tw)
    nty = -(-level.geobox.shape[0] // th)
    plane = (band - 1) * ntx * nty if head.planar else 0
    (r0, r1), (c0, c1) = ((s.start, s.stop) for s in roi)
    out = []
    for ty in range(r0 // th, -(-r1 // th)):
        for tx in range(c0 // tw, -(-c1 // tw)):
            i = plane + ty * ntx + tx
            out.append((i, int(offsets[i]), int(counts[i]), ty * th, tx * tw))
    return out


_BUFFERS = threading.local()
#: A DEFLATE tile is inflated only up to the last needed row when those rows are at most this
#: fraction of it (ISA-L's streaming inflate; libdeflate inflates whole tiles ~10 % faster).
PARTIAL_INFLATE = 0.75


def _decode(head: Header, level: Level, index: int, data: memoryview, band: int,
            rows: tuple[int, int], width: int) -> np.ndarray:
    """Rows ``rows`` and the first ``width`` columns of ``band`` of one tile.

    DEFLATE tiles (the usual COG) are inflated up to the last needed row with ISA-L (isal)
    when those rows are less than :data:`PARTIAL_INFLATE` of the tile, else whole with
    libdeflate (imagecodecs; both ~2-3x faster than zlib), and their horizontal predictor is
    undone on the needed rows only (imagecodecs' ``delta_decode``); any other encoding is
    decoded by tifffile.
    """
    import imagecodecs
    from isal import isal_zlib

    predictor = head.deflate[level.page]
    sample = 0 if head.planar else band - 1
    decode = head.decode[level.page]
    if decode is not None:
        tile = decode(bytes(data), index)[0]
        return tile[0, rows[0]:rows[1], :width, sample]
    th, tw = level.tile
    spp = 1 if head.planar else head.samples
    size = th * tw * spp * head.dtype.itemsize
    need = rows[1] * tw * spp * head.dtype.itemsize
    if need <= PARTIAL_INFLATE * size:  # a window in the top of the tile: stop inflating there
        raw = isal_zlib.decompressobj().decompress(data, need)
        if len(raw) < need:
            raise ValueError(f"tile {index} holds less than {rows[1]} rows")
    else:
        buf = getattr(_BUFFERS, "buf", None)
        if buf is None or len(buf) < size:  # one reused buffer per thread: no page faults
            buf = _BUFFERS.buf = bytearray(size)
        raw = imagecodecs.deflate_decode(data, out=memoryview(buf)[:size])
    dtype = head.dtype.newbyteorder(head.byteorder)
    tile = np.frombuffer(raw, dtype=dtype, count=need // dtype.itemsize).reshape(
        rows[1], tw, spp)[rows[0]:, :width, sample]
    if predictor == 2:  # differences along each row (modulo the integer type)
        if tile.dtype.isnative:  # imagecodecs' C loop: ~3x faster than np.cumsum
            return imagecodecs.delta_decode(tile, axis=-1)
        return np.cumsum(tile, axis=1, dtype=head.dtype)
    return tile.astype(head.dtype)  # a copy: the buffer is reused


class _TileCache:
    """Decoded tiles that several features read (an LRU of :data:`TILE_CACHE_BYTES`).

    A tile is decoded whole and kept only when it is asked for a second time: features
    apart from each other (the usual case) decode just their rows, features sharing tiles
    (a dense AOI) decode each tile about twice instead of once per feature.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tiles: collections.OrderedDict[tuple, np.ndarray] = collections.OrderedDict()
        self.seen: collections.OrderedDict[tuple, None] = collections.OrderedDict()
        self.used = 0

    def get(self, key: tuple) -> np.ndarray | None:
        with self.lock:
            tile = self.tiles.get(key)
            if tile is not None:
                self.tiles.move_to_end(key)
            return tile

    def wanted_again(self, key: tuple) -> bool:
        """True when ``key`` was asked for before (decode it whole and :meth:`put` it)."""
        with self.lock:
            if key in self.seen:
                return True
            self.seen[key] = None
            while len(self.seen) > 16 * TILE_CACHE_BYTES // 2**16:
                self.seen.popitem(last=False)
            return False

    def put(self, key: tuple, tile: np.ndarray) -> None:
        tile.setflags(write=False)
        with self.lock:
            if key not in self.tiles:
                self.tiles[key] = tile
                self.used += tile.nbytes
            while self.used > TILE_CACHE_BYTES and len(self.tiles) > 1:
                _, old = self.tiles.popitem(last=False)
                self.used -= old.nbytes

    def clear(self) -> None:
        with self.lock:
            self.tiles.clear()
            self.seen.clear()
            self.used = 0


#: Decoded tiles kept per process for features that share them (see :class:`_TileCache`).
TILE_CACHE_BYTES = 256 * 2**20
_TILE_CACHE = _TileCache()


def read_windows(reads: Sequence[tuple[str, int, Header, Plan]], *, retries: int = 4,
                 delay: float = 0.2) -> list[np.ndarray | BaseException]:
    """The pixels of several ``(uri, band, header, plan)`` windows, their tiles fetched at once.

    Only the tiles the windows touch are fetched (ranges within a file's first bytes come
    from the header's request) and decoded; tiles that other features read too are decoded
    once and kept (:class:`_TileCache`).

    Examples
    --------
    >>> head = header("cog.tif")  # doctest: +SKIP
    >>> plan = plan_read(head, dst_geobox)  # doctest: +SKIP
    >>> read_windows([("cog.tif", 1, head, plan)])[0].shape  # doctest: +SKIP
    (14, 14)
    """
    wanted = [[(i, off, n, y0, x0, _TILE_CACHE.get((uri, plan.level.page, i, band)))
               for i, off, n, y0, x0 in _tiles(head, plan.level, plan.roi_src, band)]
              for uri, band, head, plan in reads]
    ranges = sorted({(uri, off, off + n) for (uri, *_), tiles in zip(reads, wanted, strict=True)
                     for _, off, n, _, _, decoded in tiles if n and decoded is None})
    heads = {uri: head.fetched for uri, _, head, _ in reads}
    got = dict(zip(ranges, fetch(ranges, retries=retries, delay=delay, heads=heads),
                   strict=True))
    out: list[np.ndarray | BaseException] = []
    for (uri, band, head, plan), tiles in zip(reads, wanted, strict=True):
        (r0, r1), (c0, c1) = ((s.start, s.stop) for s in plan.roi_src)
        th, tw = plan.level.tile
        # a window inside one (non-sparse) tile is a view of its decoded rows: no fill, no copy
        one = len(tiles) == 1 and tiles[0][2] > 0
        pixels = None if one else np.full((r1 - r0, c1 - c0), _fill(head), dtype=head.dtype)
        try:
            for i, off, n, y0, x0, decoded in tiles:
                if not n:  # sparse tile: nodata
                    continue
                ys, xs = max(r0, y0), max(c0, x0)
                ye, xe = min(r1, y0 + th), min(c1, x0 + tw)
                key = (uri, plan.level.page, i, band)
                if decoded is None:
                    data = got[(uri, off, off + n)]
                    if isinstance(data, BaseException):
                        raise data
                    if _TILE_CACHE.wanted_again(key):  # another feature read it: keep it
                        decoded = _decode(head, plan.level, i, data, band, (0, th), tw)
                        _TILE_CACHE.put(key, decoded)
                if decoded is not None:
                    tile = decoded[ys - y0:ye - y0, :xe - x0]
                else:
                    tile = _decode(head, plan.level, i, data, band, (ys - y0, ye - y0), xe - x0)
                if pixels is None:
                    pixels = tile[:, xs - x0:]
                else:
                    pixels[ys - r0:ye - r0, xs - c0:xe - c0] = tile[:, xs - x0:]
        except Exception as err:
            out.append(err if isinstance(err, LoadError)
                       else LoadError(f"cannot decode {redact(uri)}: {err}"))
            continue
        out.append(pixels)
    return out


# --------------------------------------------------------------------------- odc-stac driver

#: Windows fetched ahead for each driver (feature): ``{token: {(uri, band): (plan, pixels)}}``.
_AHEAD: collections.OrderedDict[str, dict] = collections.OrderedDict()
_AHEAD_KEPT = 256
_AHEAD_LOCK = threading.Lock()
_AHEAD_EVENTS: dict[str, threading.Event] = {}


@dataclass(frozen=True)
class Source:
    """One file a feature reads: its URL, band index and whether resampling is nearest."""

    uri: str
    band: int = 1
    nearest: bool = True


class _CogReader:
    def __init__(self, driver: CogDriver, src: Any, ctx: Any) -> None:
        self.driver, self.src, self.ctx = driver, src, ctx

    def read(self, cfg: Any, dst_geobox: GeoBox, *, dst: np.ndarray | None = None,
             selection: Any = None) -> tuple[tuple[slice, slice], np.ndarray]:
        uri, band = self.src.uri, self.src.band
        if selection is None and uri not in _RIO_ONLY and isinstance(band, int):
            try:
                return self.driver.read(uri, band, cfg, dst_geobox, dst)
            except Unsupported as why:
                log.debug("%s: %s", redact(uri), why)
                _RIO_ONLY.add(uri)
        fallback = self.driver.fallback  # GDAL's environment is entered for this read only
        with fallback.restore_env(self.ctx.env, self.ctx.load_state) as local:
            return fallback.open(self.src, local).read(cfg, dst_geobox, dst=dst,
                                                       selection=selection)


@dataclass(frozen=True)
class _Local:
    """The load context of a chunk: what the rasterio fallback needs to enter GDAL's env."""

    load_state: Any
    env: dict[str, Any]


#: Files found unsupported in this process (read with rasterio from then on).
_RIO_ONLY: set[str] = set()


class CogDriver:
    """odc-stac reader driver: a feature's windows fetched at once, rasterio as fallback.

    Parameters
    ----------
    sources
        Every file the feature will read, to fetch them all on its first read; ``()`` reads
        each chunk's files when it is computed.
    geobox
        The grid the feature is read onto (the cube's geobox before any warp).
    retries, delay
        Retries of a failed file read and the first backoff (seconds); the rasterio fallback
        uses the same.
    fallback
        The driver for files this one does not read (odc-stac's rasterio driver, retrying).

    Examples
    --------
    >>> from xsits.load import RetryingRioDriver
    >>> d = CogDriver((), None, fallback=RetryingRioDriver())
    >>> d.retries
    4
    """

    def __init__(self, sources: Sequence[Source], geobox: GeoBox | None, *, retries: int = 4,
                 delay: float = 0.2, fallback: Any) -> None:
        self.sources, self.geobox = tuple(sources), geobox
        self.retries, self.delay = retries, delay
        self.fallback = fallback
        self.token = uuid.uuid4().hex

    # the ReaderDriver protocol: everything but `open` is the rasterio driver's
    def new_load(self, geobox: GeoBox, *, chunks: dict[str, int] | None = None) -> Any:
        """The rasterio driver's load state."""
        return self.fallback.new_load(geobox, chunks=chunks)

    def finalise_load(self, load_state: Any) -> Any:
        """As the rasterio driver."""
        return self.fallback.finalise_load(load_state)

    def capture_env(self) -> dict[str, Any]:
        """GDAL settings, for the rasterio fallback on workers."""
        return self.fallback.capture_env()

    @contextlib.contextmanager
    def restore_env(self, env: dict[str, Any], load_state: Any) -> Iterator[Any]:
        """A local load context, without entering GDAL's environment per chunk."""
        yield _Local(load_state, env)

    def open(self, src: Any, ctx: _Local) -> _CogReader:
        """A reader of one source."""
        return _CogReader(self, src, ctx)

    @property
    def md_parser(self) -> Any:
        """odc-stac's STAC metadata parser."""
        return self.fallback.md_parser

    @property
    def dask_reader(self) -> Any:
        """None: odc-stac builds the dask graph."""
        return None

    @property
    def aux_reader(self) -> Any:
        """odc-stac's auxiliary data reader."""
        return self.fallback.aux_reader

    # reading
    def read(self, uri: str, band: int, cfg: Any, dst_geobox: GeoBox,
             dst: np.ndarray | None) -> tuple[tuple[slice, slice], np.ndarray]:
        """Read ``band`` of ``uri`` onto ``dst_geobox`` like odc-stac's rasterio reader."""
        ahead = self._ahead().pop((uri, band), None)
        head = header(uri, retries=self.retries, delay=self.delay)
        plan = plan_read(head, dst_geobox, nearest=cfg.nearest,
                         use_overviews=cfg.use_overviews)
        src_nodata = resolve_src_nodata(head.nodata, cfg)
        roi_dst = plan.roi_dst
        if dst is not None:
            out = dst[roi_dst]
        else:
            shape = tuple(s.stop - s.start for s in roi_dst)
            out = np.empty(shape, dtype=resolve_dst_dtype(head.dtype.name, cfg))
        dst_nodata = resolve_dst_nodata(out.dtype, cfg, src_nodata)
        if out.size == 0:
            return roi_dst, out
        if plan.roi_src[0].stop <= plan.roi_src[0].start or \
                plan.roi_src[1].stop <= plan.roi_src[1].start:
            if dst_nodata is not None:
                np.copyto(out, dst_nodata)
            return roi_dst, out
        pixels = _cut(ahead, plan) if ahead is not None else None
        if pixels is None:
            (pixels,) = read_windows([(uri, band, head, plan)], retries=self.retries,
                                     delay=self.delay)
            if isinstance(pixels, BaseException):
                raise pixels
        if plan.paste:  # the grids line up: no GeoBox slicing (~50 us each)
            placed = pixels
        else:
            src_gbox, dst_gbox = plan.level.geobox[plan.roi_src], dst_geobox[roi_dst]
            placed = _replicate(pixels, src_gbox, dst_gbox) if cfg.nearest else None
        if placed is not None:
            np.copyto(out, placed, casting="unsafe")
            if dst_nodata is not None and not same_nodata(src_nodata, dst_nodata):
                np.copyto(out, dst_nodata, where=nodata_mask(placed, src_nodata))
        else:
            rio_reproject(pixels, out, src_gbox, dst_gbox,
                          cfg.resampling, src_nodata=src_nodata, dst_nodata=dst_nodata)
        return roi_dst, out

    def _ahead(self) -> dict:
        """The feature's windows fetched ahead (fetching them on the first call)."""
        if not self.sources or self.geobox is None:
            return {}
        with _AHEAD_LOCK:
            done = _AHEAD.get(self.token)
            if done is not None:
                return done
            event = _AHEAD_EVENTS.get(self.token)
            first = event is None
            if first:
                event = _AHEAD_EVENTS[self.token] = threading.Event()
        if not first:
            event.wait()
            return _AHEAD.get(self.token, {})
        windows: dict = {}
        try:
            windows = self._fetch_ahead()
        except Exception as err:  # the chunk reads will fetch (and retry) one by one
            log.info("fetching ahead failed (%s); reading chunk by chunk", err)
        finally:  # never leave the feature's other readers waiting
            with _AHEAD_LOCK:
                _AHEAD[self.token] = windows
                while len(_AHEAD) > _AHEAD_KEPT:
                    _AHEAD.popitem(last=False)
                _AHEAD_EVENTS.pop(self.token, None)
            event.set()
        return windows

    def _fetch_ahead(self) -> dict:
        gbox = self.geobox
        assert gbox is not None
        if len(self.sources) * gbox.shape[0] * gbox.shape[1] * 2 > PREFETCH_FEATURE_BYTES:
            return {}
        srcs = [s for s in self.sources if s.uri not in _RIO_ONLY]
        heads = headers([s.uri for s in srcs], retries=self.retries, delay=self.delay)
        reads = []
        for s in srcs:
            head = heads[s.uri]
            if isinstance(head, Unsupported):
                _RIO_ONLY.add(s.uri)
            if isinstance(head, BaseException):  # the chunk read retries and reports it
                continue
            plan = plan_read(head, gbox, nearest=s.nearest)
            if all(r.stop > r.start for r in plan.roi_src):
                reads.append((s.uri, s.band, head, plan))
        pixels = read_windows(reads, retries=self.retries, delay=self.delay)
        return {(uri, band): (plan, px) for (uri, band, _, plan), px
                in zip(reads, pixels, strict=True) if not isinstance(px, BaseException)}


def _replicate(pixels: np.ndarray, src: GeoBox, dst: GeoBox) -> np.ndarray | None:
    """``pixels`` (on ``src``) on ``dst`` when ``dst`` is ``src`` split ``k`` times, else None.

    A nearest warp onto a grid ``k`` times finer on the same lattice (a 20 m band read on a
    10 m grid) takes source pixel ``(i // k, j // k)`` for output pixel ``(i, j)``: the same
    values as GDAL's, by repeating each pixel, without a warp.

    Examples
    --------
    >>> src = GeoBox.from_bbox((0, 0, 40, 40), "EPSG:32632", resolution=20)
    >>> dst = GeoBox.from_bbox((10, 0, 40, 30), "EPSG:32632", resolution=10)
    >>> _replicate(np.arange(4).reshape(2, 2), src, dst).tolist()
    [[0, 1, 1], [2, 3, 3], [2, 3, 3]]
    """
    if src.crs != dst.crs:
        return None
    sa, da = src.affine, dst.affine
    if sa.b or sa.d or da.b or da.d or sa.a <= 0 or da.a <= 0 or sa.e >= 0 or da.e >= 0:
        return None
    k = sa.a / da.a
    offsets = ((da.c - sa.c) / da.a, (sa.f - da.f) / -da.e, k, -sa.e / -da.e)
    ox, oy, kx, ky = (round(v) for v in offsets)
    if kx < 1 or kx != ky or any(abs(v - r) > 1e-6 for v, r in zip(offsets, (ox, oy, kx, ky),
                                                                    strict=True)):
        return None
    (h, w), (sh, sw) = dst.shape.yx, src.shape.yx
    if ox < 0 or oy < 0 or ox + w > sw * kx or oy + h > sh * kx:
        return None
    rows, cols = (np.arange(oy, oy + h) // kx, np.arange(ox, ox + w) // kx)
    return pixels.take(rows, axis=0).take(cols, axis=1)  # ~4x faster than pixels[rows, cols]


def _cut(ahead: tuple[Plan, np.ndarray], plan: Plan) -> np.ndarray | None:
    """``plan``'s window out of a window fetched ahead, or None if it is not inside it."""
    got, pixels = ahead
    if got.level.page != plan.level.page:
        return None
    (gr, gc), (r, c) = got.roi_src, plan.roi_src
    if r.start < gr.start or r.stop > gr.stop or c.start < gc.start or c.stop > gc.stop:
        return None
    return pixels[r.start - gr.start:r.stop - gr.start, c.start - gc.start:c.stop - gc.start]
