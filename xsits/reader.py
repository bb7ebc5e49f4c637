"""COG reads for ``odc.stac.load(driver=...)``: proven layouts fast, everything else by GDAL.

Owns: :class:`CogDriver`, an odc-loader reader driver. odc-stac keeps the geobox, grouping,
fusing, dtypes and nodata; the driver only answers "these pixels of this file on this grid".
For each read it decides, from the file's header, between two readers:

- **the fast reader**, for the layouts and requests on its allow-list (:func:`fast_refusal`,
  :func:`plan_read`), each one proven equal to GDAL by ``tests/test_conformance.py``: a
  tiled or striped GeoTIFF, uncompressed / DEFLATE / LZW / ZSTD, predictor 1-3, integer or
  float samples, pixel or band interleave, no mask band, EPSG georeferencing; nearest
  resampling. Bytes are fetched many files at a time (obstore, :data:`Options.max_requests`
  requests in flight), headers parsed and tiles decoded by tifffile / imagecodecs. A read on
  the file's own lattice is a window copy; any other is a lookup through the source pixel
  GDAL's own nearest warp picks for each output pixel (:func:`_gdal_index`), computed once
  per grid pair;
- **GDAL** (odc-loader's :class:`~odc.loader.RioReader`) for everything else.

A layout unknown to the fast reader is never an error: it goes to GDAL. Network failures are
retried by :mod:`xsits.retry`; HTTP 403 / 404 fail at once with a :class:`LoadError` naming
the href (never its query string).

Must not: choose output grids, dtypes or nodata (odc-stac's), group or fuse dates, or decode
pixels by hand.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.overlap import compute_reproject_roi
from odc.geo.roi import roi_is_empty, roi_shape
from odc.loader import (
    RasterLoadParams,
    RasterSource,
    RioDriver,
    RioReader,
    resolve_dst_dtype,
    resolve_dst_nodata,
    resolve_src_nodata,
)

from xsits import retry
from xsits._common import redact
from xsits.errors import LoadError
from xsits.options import get_options

log = logging.getLogger(__name__)

#: Bytes asked for by a file's first request: its header and a COG's smallest overviews.
HEAD_BYTES = 128 * 1024
#: A file of at most this size is "small"; see :data:`SMALL_FILES_SEEN`.
SMALL_FILE_BYTES = 2**20
#: Once a host's first files were all small, a file's first request asks for
#: :data:`SMALL_FILE_BYTES` (a small file comes whole, in one request) when ``whole_files``.
SMALL_FILES_SEEN = 16
#: Smallest request made when a header reads beyond what was fetched (IFDs at the end...).
BLOCK_BYTES = 64 * 1024
#: Output windows larger than this (pixels) are warped by GDAL directly.
FAST_WARP_PIXELS = 1024 * 1024

#: TIFF compressions the fast reader decodes (lossless, decoded by imagecodecs like GDAL).
FAST_COMPRESSIONS = {1: "none", 5: "LZW", 8: "DEFLATE", 32946: "DEFLATE", 50000: "ZSTD"}
#: Sample dtypes the fast reader serves.
FAST_DTYPES = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"}


# --------------------------------------------------------------------------- network


class _Network:
    """The process's HTTP stores, request threads and caches of bytes, headers and tiles.

    Process-wide on purpose: the features of one tile read the same files, and fetch them
    once. A forked child makes its own (threads do not survive a fork).
    """

    def __init__(self) -> None:
        opts = get_options()
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(opts.max_requests, thread_name_prefix="xsits-fetch")
        self.stores: dict[str, Any] = {}
        self.segments: OrderedDict[str, list[tuple[int, memoryview]]] = OrderedDict()
        self.cached_bytes = 0
        self.sizes: dict[str, int] = {}
        self.inflight: dict[tuple[str, int, int], Future] = {}
        self.host_sizes: dict[str, list[int]] = {}
        self.headers: OrderedDict[str, Header | BaseException] = OrderedDict()
        self.tiles: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.tile_bytes = 0
        self.indices: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.plans: OrderedDict[tuple, Any] = OrderedDict()
        self.planner = ThreadPoolExecutor(1, thread_name_prefix="xsits-plan")

    # bytes ------------------------------------------------------------------
    def find(self, uri: str, start: int, end: int) -> memoryview | None:
        """Cached bytes ``[start, end)`` of ``uri`` (clamped to its size), else None."""
        size = self.sizes.get(uri)
        if size is not None:
            end = min(end, size)
        with self.lock:
            for s, buf in self.segments.get(uri, ()):
                if s <= start and end <= s + len(buf):
                    self.segments.move_to_end(uri)
                    return buf[start - s:end - s]
        return None

    def _store(self, key: str) -> Any:
        from obstore.store import HTTPStore, LocalStore

        with self.lock:
            if key in self.stores:
                return self.stores[key]
        if key == "file":
            store = LocalStore("/")
        else:
            store = HTTPStore.from_url(
                key, client_options={"allow_http": True, "timeout": "120s",
                                     "connect_timeout": "20s"},
                retry_config={"max_retries": 0})  # xsits.retry is the one retry policy
        with self.lock:
            return self.stores.setdefault(key, store)

    def _get(self, uri: str, start: int, end: int) -> memoryview:
        import obstore

        key, path = _locate(uri)

        def once() -> memoryview:
            got = obstore.get(self._store(key), path, options={"range": (start, end)})
            size = int(got.meta["size"])
            data = memoryview(bytes(got.bytes()))
            if len(data) != min(end, size) - start:
                raise retry.TransientError(
                    f"truncated body: {len(data)} of {min(end, size) - start} bytes")
            self.sizes[uri] = size
            return data

        try:
            data = retry.call(once, what=f"reading {redact(uri)}", transient=_transient)
        except Exception as err:
            raise LoadError(f"cannot read {redact(uri)}: {_reason(err)}") from err
        self._keep(uri, start, data)
        return data

    def _keep(self, uri: str, start: int, data: memoryview) -> None:
        limit = get_options().cache_bytes
        with self.lock:
            self.segments.setdefault(uri, []).append((start, data))
            self.segments.move_to_end(uri)
            self.cached_bytes += len(data)
            while self.cached_bytes > limit and len(self.segments) > 1:
                _, old = self.segments.popitem(last=False)
                self.cached_bytes -= sum(len(b) for _, b in old)

    def submit(self, uri: str, start: int, end: int) -> Future:
        """Bytes ``[start, end)`` of ``uri``: from the cache, or one request (deduplicated)."""
        hit = self.find(uri, start, end)
        if hit is not None:
            done: Future = Future()
            done.set_result(hit)
            return done
        key = (uri, start, end)
        with self.lock:
            fut = self.inflight.get(key)
            if fut is None:
                fut = self.pool.submit(self._get, uri, start, end)
                self.inflight[key] = fut
                fut.add_done_callback(lambda _f: self._forget_inflight(key))
        return fut

    def _forget_inflight(self, key: tuple) -> None:
        with self.lock:
            self.inflight.pop(key, None)

    def head_bytes(self, uri: str) -> int:
        """How many bytes a file's first request asks for (see :data:`SMALL_FILES_SEEN`)."""
        if not get_options().whole_files:
            return HEAD_BYTES
        seen = self.host_sizes.get(urlparse(uri).netloc, [])
        if len(seen) >= SMALL_FILES_SEEN and max(seen) <= SMALL_FILE_BYTES:
            return SMALL_FILE_BYTES
        return HEAD_BYTES

    def saw_size(self, uri: str) -> None:
        size = self.sizes.get(uri)
        if size is not None:
            with self.lock:
                seen = self.host_sizes.setdefault(urlparse(uri).netloc, [])
                if len(seen) < SMALL_FILES_SEEN or size > SMALL_FILE_BYTES:
                    seen.append(size)

    # small LRU caches ---------------------------------------------------------
    def remember(self, cache: OrderedDict, key: Any, value: Any, keep: int) -> Any:
        with self.lock:
            cache[key] = value
            cache.move_to_end(key)
            while len(cache) > keep:
                cache.popitem(last=False)
        return value

    def recall(self, cache: OrderedDict, key: Any) -> Any:
        with self.lock:
            value = cache.get(key)
            if value is not None:
                cache.move_to_end(key)
            return value

    def keep_tile(self, key: tuple, tile: np.ndarray) -> None:
        limit = get_options().cache_bytes // 2
        with self.lock:
            if key in self.tiles:
                return
            self.tiles[key] = tile
            self.tile_bytes += tile.nbytes
            while self.tile_bytes > limit and len(self.tiles) > 1:
                _, old = self.tiles.popitem(last=False)
                self.tile_bytes -= old.nbytes

    def clear(self) -> None:
        with self.lock:
            self.segments.clear()
            self.cached_bytes = 0
            self.sizes.clear()
            self.headers.clear()
            self.tiles.clear()
            self.tile_bytes = 0
            self.indices.clear()
            self.plans.clear()


# The process's network state (see _Network); created on first use, again after a fork.
_NET: list[_Network] = []
_NET_LOCK = threading.Lock()  # guards _NET's creation only


def _net() -> _Network:
    with _NET_LOCK:
        if not _NET or _NET[0].pid != os.getpid():
            _NET[:] = [_Network()]
        return _NET[0]


def clear_cache() -> None:
    """Forget every fetched byte, parsed header and decoded tile of this process.

    Examples
    --------
    >>> clear_cache()
    """
    _net().clear()
    clear_gdal_cache()


def _locate(uri: str) -> tuple[str, str]:
    """``(store key, path in that store)`` of a URL or a local path."""
    p = urlparse(uri)
    if p.scheme in ("http", "https"):
        if p.query or p.params:  # signed URLs: a store per URL keeps the query string
            return uri, ""
        return f"{p.scheme}://{p.netloc}", unquote(p.path).lstrip("/")
    if p.scheme == "file":
        return "file", os.path.abspath(unquote(p.path)).lstrip("/")
    return "file", os.path.abspath(uri).lstrip("/")


def _fetchable(uri: str) -> bool:
    scheme = urlparse(uri).scheme
    return scheme in ("http", "https", "file") or (scheme == "" and os.path.exists(uri))


def _client_status(err: BaseException) -> int | None:
    """The HTTP 4xx status of a client fault (not 408 / 425 / 429), if ``err`` is one."""
    if isinstance(err, FileNotFoundError):
        return 404
    if isinstance(err, PermissionError):
        return 403
    status = retry.status_of(err)
    if status is not None and 400 <= status < 500 and status not in retry.RETRY_STATUSES:
        return status
    return None


def _transient(err: BaseException) -> bool:
    if _client_status(err) is not None or isinstance(err, (LoadError, ValueError, TypeError)):
        return False
    return True  # obstore's other errors: timeouts, resets, 5xx, short bodies


def _reason(err: BaseException) -> str:
    status = _client_status(err)
    if status == 404:
        return "HTTP 404, the file does not exist; check the asset href"
    if status in (401, 403):
        return (f"HTTP {status}, access denied; sign the hrefs (stac='planetary-computer' "
                "does) or check the credentials")
    if status is not None:
        return f"HTTP {status}"
    return redact(str(err).splitlines()[0] if str(err) else type(err).__name__)


# --------------------------------------------------------------------------- headers


class _RangeFile:
    """A read-only file over :class:`_Network`, for tifffile to parse a header from."""

    def __init__(self, uri: str, first: memoryview) -> None:
        self.uri, self.pos = uri, 0
        self.size = _net().sizes.get(uri, len(first))

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else self.pos + offset if whence == 1 else \
            self.size + offset
        return self.pos

    def read(self, n: int = -1) -> bytes:
        start = self.pos
        end = self.size if n is None or n < 0 else min(self.size, start + n)
        if end <= start:
            return b""
        net = _net()
        data = net.find(self.uri, start, end)
        if data is None:
            block_end = min(self.size, max(end, start + BLOCK_BYTES))
            data = net.submit(self.uri, start, block_end).result()[:end - start]
        self.pos = end
        return bytes(data)

    def readinto(self, buf: Any) -> int:
        data = self.read(len(buf))
        buf[:len(data)] = data
        return len(data)

    def close(self) -> None:
        pass

    @property
    def closed(self) -> bool:
        return False


@dataclass(frozen=True)
class Level:
    """One resolution of a file: its grid and where its tiles (or strips) are."""

    geobox: GeoBox
    block: tuple[int, int]  # (rows, cols) of a tile, or (rows per strip, width)
    offsets: np.ndarray
    counts: np.ndarray
    page: Any = field(repr=False)  # tifffile.TiffPage: decodes the level's segments

    @property
    def grid(self) -> tuple[int, int]:
        """Tiles down and across."""
        (h, w), (bh, bw) = self.geobox.shape.yx, self.block
        return -(-h // bh), -(-w // bw)


@dataclass(frozen=True)
class Header:
    """What a file's header says, and whether the fast reader serves it."""

    uri: str
    dtype: str
    count: int  # bands (samples per pixel)
    planar: bool  # band-interleaved (PlanarConfiguration 2)
    nodata: float | None
    levels: tuple[Level, ...]  # full resolution first, then overviews, finer to coarser
    refusal: str | None  # why the fast reader does not serve this file (None: it does)

    @property
    def factors(self) -> list[int]:
        """Overview factors as rasterio reports them (``width // overview width``, rounded)."""
        w = self.levels[0].geobox.shape.x
        return [int(round(w / lv.geobox.shape.x)) for lv in self.levels[1:]]


def _geobox(page: Any, geo: dict[str, Any], shape: tuple[int, int]) -> GeoBox | str:
    """The pixel grid of a full-resolution page, or why it is not served."""
    if "ModelTransformation" in geo or "ModelTransformationTag" in page.tags:
        return "a ModelTransformation (rotated or sheared grid)"
    scale, tie = geo.get("ModelPixelScale"), geo.get("ModelTiepoint")
    if not scale or not tie or len(tie) != 6:
        return "no ModelPixelScale / single ModelTiepoint"
    if int(geo.get("GTRasterTypeGeoKey", 1)) != 1:
        return "PixelIsPoint georeferencing"
    model = int(geo.get("GTModelTypeGeoKey", 0))
    code = geo.get("ProjectedCSTypeGeoKey") if model == 1 else \
        geo.get("GeographicTypeGeoKey") if model == 2 else None
    if code is None or int(code) in (0, 32767):
        return "no EPSG code in the GeoKeys (user-defined CRS)"
    i, j, _, x, y, _ = (float(v) for v in tie)
    sx, sy = float(scale[0]), float(scale[1])
    transform = Affine(sx, 0.0, x - i * sx, 0.0, -sy, y + j * sy)
    return GeoBox(shape, transform, f"EPSG:{int(code)}")


def fast_refusal(tif: Any) -> str | None:
    """Why the fast reader does not serve a parsed file (None when it does).

    The allow-list is what ``tests/test_conformance.py`` proves equal to GDAL.

    Examples
    --------
    >>> import tempfile, numpy as np, rasterio, tifffile
    >>> from rasterio.transform import from_origin
    >>> path = tempfile.mktemp(suffix=".tif")
    >>> with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=1,
    ...                    dtype="uint8", crs="EPSG:32632", compress="jpeg",
    ...                    transform=from_origin(0, 40, 10, 10)) as f:
    ...     f.write(np.zeros((1, 4, 4), "uint8"))
    >>> with tifffile.TiffFile(path) as tif:
    ...     fast_refusal(tif)
    'compression JPEG'
    """
    pages = list(tif.pages)
    first = pages[0]
    if any(int(p.subfiletype) & 4 for p in pages):
        return "an internal mask band"
    for p in pages:
        comp = int(p.compression)
        if comp not in FAST_COMPRESSIONS:
            return f"compression {p.compression.name}"
        if int(p.predictor) not in (1, 2, 3):
            return f"predictor {int(p.predictor)}"
        if any(int(s) in (1, 2) for s in p.extrasamples or ()):
            return "an alpha band"
        if int(p.photometric) not in (1, 2):
            return f"photometric {p.photometric.name}"
        if p.dtype is None or p.dtype.name not in FAST_DTYPES or \
                p.bitspersample != p.dtype.itemsize * 8:
            return f"samples of {p.bitspersample} bits ({p.dtype})"
        if p.is_tiled and p.tiledepth > 1 or p.imagedepth > 1:
            return "a 3-D image"
        if p.samplesperpixel != first.samplesperpixel or p.dtype != first.dtype or \
                p.planarconfig != first.planarconfig:
            return "overviews unlike the full-resolution image"
        if any(int(c) == 0 for c in p.databytecounts):
            return "sparse tiles (no bytes)"
    return None


def _parse(uri: str, first: memoryview) -> Header:
    import tifffile

    with tifffile.TiffFile(_RangeFile(uri, first)) as tif:
        pages = [p for p in tif.pages if not int(p.subfiletype) & 4]
        page0 = pages[0]
        geo = tif.geotiff_metadata or {}
        gbox = _geobox(page0, geo, (page0.imagelength, page0.imagewidth))
        refusal = gbox if isinstance(gbox, str) else fast_refusal(tif)
        nodata_tag = page0.tags.get(42113)
        nodata = None
        if nodata_tag is not None:
            with contextlib.suppress(ValueError):
                nodata = float(str(nodata_tag.value).strip().rstrip("\x00"))
        levels = []
        if refusal is None:
            ordered = [page0] + sorted((p for p in pages[1:] if int(p.subfiletype) & 1),
                                       key=lambda p: -p.imagewidth)
            for p in ordered:
                h, w = p.imagelength, p.imagewidth
                fx, fy = page0.imagewidth / w, page0.imagelength / h  # as GDAL's overviews
                t = gbox.transform
                lv_box = GeoBox((h, w), Affine(t.a * fx, 0.0, t.c, 0.0, t.e * fy, t.f),
                                gbox.crs)
                block = (p.tilelength, p.tilewidth) if p.is_tiled else \
                    (min(p.rowsperstrip or h, h), w)
                levels.append(Level(lv_box, block, np.asarray(p.dataoffsets),
                                    np.asarray(p.databytecounts), p))
        return Header(uri, page0.dtype.name if page0.dtype is not None else "?",
                      int(page0.samplesperpixel), int(page0.planarconfig) == 2, nodata,
                      tuple(levels), refusal)


def headers(uris: Sequence[str]) -> list[Header | BaseException]:
    """The parsed headers of ``uris``, fetched all at once (an exception per failure).

    Examples
    --------
    >>> import tempfile, numpy as np, rasterio
    >>> from rasterio.transform import from_origin
    >>> path = tempfile.mktemp(suffix=".tif")
    >>> with rasterio.open(path, "w", driver="COG", width=600, height=600, count=1,
    ...                    dtype="uint16", crs="EPSG:32632", nodata=0, compress="deflate",
    ...                    blocksize=256, transform=from_origin(600000, 5600000, 10, 10)) as f:
    ...     f.write(np.ones((1, 600, 600), "uint16"))
    >>> (h,) = headers([path])
    >>> h.dtype, h.nodata, h.refusal, [lv.geobox.shape.x for lv in h.levels]
    ('uint16', 0.0, None, [600, 300, 150])
    """
    net = _net()
    out: dict[str, Any] = {}
    firsts = {}
    for uri in dict.fromkeys(uris):
        known = net.recall(net.headers, uri)
        if known is not None:
            out[uri] = known
        else:
            firsts[uri] = net.submit(uri, 0, net.head_bytes(uri))
    for uri, fut in firsts.items():
        try:
            first = fut.result()
            net.saw_size(uri)
            head: Header | BaseException = _parse(uri, first)
        except LoadError as err:
            head = err  # network failures are not remembered: a later load asks again
            out[uri] = head
            continue
        except Exception as err:  # not a TIFF tifffile reads: GDAL's
            head = Header(uri, "?", 0, False, None, (), f"unreadable header ({err})")
        out[uri] = net.remember(net.headers, uri, head, keep=8192)
    return [out[u] for u in uris]


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Plan:
    """How the fast reader answers one read: which level, which source window, how."""

    level: int
    roi_dst: tuple[slice, slice]
    window: tuple[slice, slice]  # source pixels read, on ``level``
    index: np.ndarray | None  # per output pixel of roi_dst: flat position in window, or -1


def _pick_overview(read_shrink: int, factors: Sequence[int]) -> int | None:
    """The overview odc-loader reads for a shrink factor (its rule, on rasterio's factors)."""
    if not factors or read_shrink < factors[0]:
        return None
    best = 0
    for i, f in enumerate(factors):
        if f > read_shrink:
            break
        best = i
    return best


def plan_read(head: Header, cfg: RasterLoadParams, dst_geobox: GeoBox) -> Plan | None:
    """The fast reader's plan for one read, or None when GDAL must do it.

    The level and the output window are odc-loader's choice (``compute_reproject_roi`` with
    its tolerance; an overview when the output is coarser). A read on the level's own lattice
    is a window copy; any other nearest read looks up the source pixel that GDAL's nearest
    warp picks for each output pixel (:func:`_gdal_index`).

    Examples
    --------
    >>> import tempfile, numpy as np, rasterio
    >>> from rasterio.transform import from_origin
    >>> from odc.loader import RasterLoadParams
    >>> path = tempfile.mktemp(suffix=".tif")
    >>> with rasterio.open(path, "w", driver="COG", width=300, height=300, count=1,
    ...                    dtype="uint16", crs="EPSG:32632", nodata=0,
    ...                    transform=from_origin(600000, 5600000, 10, 10)) as f:
    ...     f.write(np.ones((1, 300, 300), "uint16"))
    >>> (h,) = headers([path])
    >>> window = h.levels[0].geobox[10:20, 30:50]
    >>> p = plan_read(h, RasterLoadParams(dtype="uint16"), window)
    >>> p.level, p.window, p.index is None
    (0, (slice(10, 20, None), slice(30, 50, None)), True)
    """
    if head.refusal is not None or not cfg.nearest:
        return None
    net = _net()
    key = (tuple(lv.geobox for lv in head.levels), dst_geobox, cfg.use_overviews)
    hit = net.recall(net.plans, key)
    if hit is None:
        # pyproj makes a transformer per thread (~50 ms each CRS pair): plan on one thread
        hit = net.remember(net.plans, key, net.planner.submit(
            _plan_read, head, cfg, dst_geobox).result() or False, keep=4096)
    return hit or None


def _plan_read(head: Header, cfg: RasterLoadParams, dst_geobox: GeoBox) -> Plan | None:
    base = head.levels[0].geobox
    rr = compute_reproject_roi(base, dst_geobox, ttol=0.9 if cfg.nearest else 0.05)
    roi_dst = rr.roi_dst
    level = 0
    if cfg.use_overviews and rr.read_shrink > 1:
        ovr = _pick_overview(rr.read_shrink, head.factors)
        level = 0 if ovr is None else ovr + 1
    if roi_is_empty(roi_dst) or roi_is_empty(rr.roi_src):
        return Plan(level, roi_dst, (slice(0, 0), slice(0, 0)), None)
    if level == 0 and rr.paste_ok and rr.read_shrink == 1:
        return Plan(0, roi_dst, tuple(rr.roi_src), None)
    if math.prod(roi_shape(roi_dst)) > FAST_WARP_PIXELS:
        return None
    found = _gdal_index(head.levels[level].geobox, dst_geobox[roi_dst])
    if found is None:
        return None
    window, index = found
    return Plan(level, roi_dst, window, index)


def _gdal_index(src: GeoBox, dst: GeoBox) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """For each pixel of ``dst``, the ``src`` pixel GDAL's nearest warp takes (or -1).

    GDAL itself warps a raster of source positions (a window of ``src`` with a margin) onto
    ``dst``, so every output pixel comes from exactly the source pixel a direct GDAL warp of
    the file would take. Cached per grid pair.
    """
    net = _net()
    key = (src, dst)
    hit = net.recall(net.indices, key)
    if hit is not None:
        return hit
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.warp import Resampling, reproject

    (h, w) = src.shape.yx
    rr = compute_reproject_roi(src, dst, padding=0)
    if roi_is_empty(rr.roi_src):
        return None
    margin = 4
    while True:
        ys, xs = rr.roi_src
        y0, y1 = max(0, ys.start - margin), min(h, ys.stop + margin)
        x0, x1 = max(0, xs.start - margin), min(w, xs.stop + margin)
        positions = np.arange((y1 - y0) * (x1 - x0), dtype="int32").reshape(y1 - y0, x1 - x0)
        index = np.full(dst.shape.yx, -1, dtype="int32")
        with warnings.catch_warnings():  # rasterio: "no geotransform" of its in-memory copy
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            reproject(positions, index, src_transform=src[y0:y1, x0:x1].transform,
                      src_crs=str(src.crs), src_nodata=None, dst_transform=dst.transform,
                      dst_crs=str(dst.crs), dst_nodata=-1, resampling=Resampling.nearest)
        rows, cols = np.divmod(index[index >= 0], x1 - x0)
        touches = rows.size and ((y0 > 0 and rows.min() == 0) or
                                 (y1 < h and rows.max() == y1 - y0 - 1) or
                                 (x0 > 0 and cols.min() == 0) or
                                 (x1 < w and cols.max() == x1 - x0 - 1))
        if not touches:
            break
        if margin > 256:
            return None
        margin *= 4  # the window was too tight for GDAL's choice: widen it and warp again
    found = ((slice(y0, y1), slice(x0, x1)), index)
    return net.remember(net.indices, key, found, keep=4096)


# --------------------------------------------------------------------------- pixels


def _blocks(level: Level, window: tuple[slice, slice]) -> list[tuple[int, int]]:
    """``(row, col)`` of the blocks (tiles or strips) that ``window`` touches."""
    (bh, bw), (ys, xs) = level.block, window
    return [(r, c) for r in range(ys.start // bh, -(-ys.stop // bh))
            for c in range(xs.start // bw, -(-xs.stop // bw))]


def _segment(head: Header, level: Level, r: int, c: int, band: int) -> int:
    down, across = level.grid
    plane = band - 1 if head.planar else 0
    return plane * down * across + r * across + c


def block_ranges(head: Header, plan: Plan, band: int) -> list[tuple[str, int, int]]:
    """The byte ranges ``(uri, start, end)`` a plan needs.

    Examples
    --------
    >>> block_ranges(Header("a.tif", "uint8", 1, False, None, (), "x"),
    ...              Plan(0, (slice(0, 0), slice(0, 0)), (slice(0, 0), slice(0, 0)), None), 1)
    []
    """
    if roi_is_empty(plan.window):
        return []
    level = head.levels[plan.level]
    out = []
    for r, c in _blocks(level, plan.window):
        k = _segment(head, level, r, c, band)
        start = int(level.offsets[k])
        out.append((head.uri, start, start + int(level.counts[k])))
    return out


def _window_pixels(head: Header, plan: Plan, band: int) -> np.ndarray:
    """The source window of a plan, decoded (native byte order)."""
    net = _net()
    level = head.levels[plan.level]
    ys, xs = plan.window
    out = np.empty((ys.stop - ys.start, xs.stop - xs.start), dtype=head.dtype)
    (bh, bw) = level.block
    blocks = _blocks(level, plan.window)
    futures = {}
    for r, c in blocks:
        key = (head.uri, plan.level, _segment(head, level, r, c, band))
        if net.recall(net.tiles, key) is None:
            k = key[2]
            start = int(level.offsets[k])
            futures[key] = net.submit(head.uri, start, start + int(level.counts[k]))
    for r, c in blocks:
        k = _segment(head, level, r, c, band)
        key = (head.uri, plan.level, k)
        tile = net.recall(net.tiles, key)
        if tile is None:
            data = futures[key].result()
            segment, _, _ = level.page.decode(bytes(data), k)
            tile = segment.reshape(segment.shape[-3:])  # (rows, cols, samples)
            net.keep_tile(key, tile)
        sample = 0 if head.planar else band - 1
        ty, tx = r * bh, c * bw
        y0, y1 = max(ys.start, ty), min(ys.stop, ty + bh, level.geobox.shape.y)
        x0, x1 = max(xs.start, tx), min(xs.stop, tx + bw, level.geobox.shape.x)
        out[y0 - ys.start:y1 - ys.start, x0 - xs.start:x1 - xs.start] = \
            tile[y0 - ty:y1 - ty, x0 - tx:x1 - tx, sample]
    return out


def _nodata_mask(pix: np.ndarray, nodata: float | None) -> np.ndarray:
    if pix.dtype.kind == "f":
        return np.isnan(pix) if nodata is None or math.isnan(nodata) else \
            np.isnan(pix) | (pix == nodata)
    return np.zeros(pix.shape, bool) if nodata is None else pix == nodata


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return (math.isnan(a) and math.isnan(b)) or a == b


def _exact_cast(src: np.dtype, dst: np.dtype) -> bool:
    """Whether every ``src`` value converts to ``dst`` as GDAL converts it (no clamping)."""
    return src == dst or np.can_cast(src, dst, "safe")


def _fast_read(head: Header, plan: Plan, src: RasterSource, cfg: RasterLoadParams,
               dst_geobox: GeoBox, dst: np.ndarray | None) -> tuple[tuple[slice, slice],
                                                                  np.ndarray]:
    """Pixels of one read by the fast reader, as odc-loader's rasterio reader writes them."""
    dst_dtype = resolve_dst_dtype(head.dtype, cfg)
    src_nodata = resolve_src_nodata(head.nodata, cfg)
    dst_nodata = resolve_dst_nodata(dst_dtype, cfg, src_nodata)
    roi = plan.roi_dst
    out = dst[roi] if dst is not None else np.empty(roi_shape(roi), dtype=dst_dtype)
    if roi_is_empty(roi):
        return roi, out
    if roi_is_empty(plan.window):
        if dst_nodata is not None:
            np.copyto(out, dst_nodata)
        return roi, out
    pixels = _window_pixels(head, plan, src.band)
    if plan.index is None:  # a window copy, then nodata remapped (odc's paste)
        out[...] = pixels
        if dst_nodata is not None and not _same(src_nodata, dst_nodata):
            np.copyto(out, dst_nodata, where=_nodata_mask(out, src_nodata))
        return roi, out
    # GDAL's nearest warp: the output starts as nodata; valid source pixels are copied
    if dst_nodata is not None:
        np.copyto(out, dst_nodata)
    hit = plan.index >= 0
    values = pixels.reshape(-1)[plan.index[hit]]
    if src_nodata is not None:
        keep = ~_nodata_mask(values, src_nodata)
        hit[hit] = keep
        values = values[keep]
    out[hit] = values
    return roi, out


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
            uris = [u for u, _ in self.sources if _fetchable(u)]
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
                net = _net()
                for uri, start, end in ranges:
                    net.submit(uri, start, end)


class _Context:
    def __init__(self, rio_ctx: Any, state: _LoadState) -> None:
        self.rio_ctx, self.state = rio_ctx, state


class _Reader:
    def __init__(self, src: RasterSource, ctx: _Context, driver: CogDriver) -> None:
        self.src, self.ctx, self.driver = src, ctx, driver

    def read(self, cfg: RasterLoadParams, dst_geobox: GeoBox, *, dst: np.ndarray | None = None,
             selection: Any = None) -> tuple[tuple[slice, slice], np.ndarray]:
        """One read: the fast reader's when it serves it, else GDAL's (odc's RioReader)."""
        state = self.ctx.state
        uri = self.src.uri
        if get_options().fast_reader and selection is None and _fetchable(uri):
            state.prefetch()
            (head,) = headers([uri])
            if isinstance(head, BaseException):
                raise head
            plan = None
            if head.refusal is None and 1 <= self.src.band <= head.count and \
                    _exact_cast(np.dtype(head.dtype), resolve_dst_dtype(head.dtype, cfg)):
                plan = plan_read(head, cfg, dst_geobox)
            if plan is not None:
                state.stats.count(True)
                return _fast_read(head, plan, self.src, cfg, dst_geobox, dst)
        state.stats.count(False)
        reader = RioReader(self.src, self.ctx.rio_ctx)
        return retry.call(lambda: _gdal_read(reader, uri, cfg, dst_geobox, dst, selection),
                          what=f"reading {redact(uri)} with GDAL", transient=_gdal_transient,
                          before_retry=lambda _err: clear_gdal_cache())


def _gdal_read(reader: RioReader, uri: str, cfg: RasterLoadParams, dst_geobox: GeoBox,
               dst: np.ndarray | None, selection: Any) -> Any:
    try:
        return reader.read(cfg, dst_geobox, dst=dst, selection=selection)
    except Exception as err:
        status = _client_status(err)
        if status is not None:
            raise LoadError(f"cannot read {redact(uri)}: {_reason(err)}") from err
        raise


def _gdal_transient(err: BaseException) -> bool:
    from rasterio.errors import RasterioError

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
        """The context of the reads of one task."""
        with self._rio.restore_env(env, load_state.rio_state) as rio_ctx:
            yield _Context(rio_ctx, load_state)

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
    import ctypes
    from pathlib import Path

    import rasterio

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
