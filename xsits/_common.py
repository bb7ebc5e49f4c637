"""Small helpers shared by the operation modules (history, band selection, floats, GC, BLAS).

Also :class:`ContextThreadPool`: the thread pool of every xsits module, whose tasks run in
their submitter's :mod:`contextvars` context (so a run's own options, see
:func:`xsits.options.options_scope`, follow its work into pool threads); and :class:`Lru`,
the bounded, thread-safe mapping every process-wide cache of xsits is.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import functools
import gc
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

import numpy as np
import xarray as xr
from threadpoolctl import threadpool_limits


def as_float(var: xr.DataArray) -> xr.DataArray:
    """Integer reflectance -> ``float32`` with ``attrs["nodata"]`` as NaN (floats unchanged).

    Lazy on dask input. What operations that produce floats (composites, smoothing, point
    samples) do first, so that nodata (0) never enters a median or a filter.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.array([0, 1200], "uint16"), dims="time", attrs={"nodata": 0})
    >>> as_float(da).values.tolist(), as_float(da).attrs["nodata"]
    ([nan, 1200.0], nan)
    """
    if np.issubdtype(var.dtype, np.floating):
        return var
    out = var.astype("float32")
    nodata = var.attrs.get("nodata")
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        out = out.where(var != nodata)
    out.attrs = {**var.attrs, "nodata": float("nan")}
    return out


def append_history(obj: xr.Dataset | xr.DataArray, entry: str) -> xr.Dataset | xr.DataArray:
    """Return ``obj`` with ``entry`` appended as a new line of ``attrs["history"]``.

    Examples
    --------
    >>> import xarray as xr
    >>> append_history(xr.Dataset(), "xsits.ops.gapfill(method='linear')").attrs["history"]
    "xsits.ops.gapfill(method='linear')"
    """
    old = obj.attrs.get("history", "")
    out = obj.copy(deep=False)
    out.attrs = dict(obj.attrs)
    out.attrs["history"] = f"{old}\n{entry}" if old else entry
    return out


_URL_QUERY = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s?#'\"<>]*)\?[^\s#'\"<>]+")
#: ``user:password@`` (or ``token@``) in a URL's authority.
_URL_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#@'\"<>]+@")
_SECRET_KEYS = re.compile(
    r"(?i)\b((?:sig|se|sv|sp|sr|st|skoid|sktid|skt|ske|sks|skv|token|access_token|api_key|"
    r"apikey|key|signature|x-amz-signature|x-amz-credential|x-amz-security-token)=)[^&\s'\"]+"
)


def redact(text: str) -> str:
    """Remove URL query strings, URL credentials and ``token=``-like values from ``text``.

    Signed hrefs (Planetary Computer SAS tokens, S3 presigned URLs) carry their secret in the
    query string; error messages from GDAL quote the whole URL. Everything xsits records
    (errors, report, manifest, logs, CLI output) goes through this function.

    Examples
    --------
    >>> redact("HTTP 404 on /vsicurl/https://x.blob/a/B04.tif?st=2024&sig=SECRET%3D ok")
    'HTTP 404 on /vsicurl/https://x.blob/a/B04.tif?<redacted> ok'
    >>> redact("https://user:pw@stac.example.com/v1/search?token=S failed")
    'https://***@stac.example.com/v1/search?<redacted> failed'
    >>> redact("bad sig=SECRET in config")
    'bad sig=*** in config'
    >>> redact(redact("https://h/a.tif?sig=S"))  # redacting twice changes nothing
    'https://h/a.tif?<redacted>'
    """
    text = _URL_QUERY.sub(r"\1?<redacted>", text)
    text = _URL_USERINFO.sub(r"\1***@", text)
    return _SECRET_KEYS.sub(r"\1***", text)


def shorten(text: str, limit: int = 300) -> str:
    """``text`` if it has at most ``limit`` characters, else cut at a word boundary with " …".

    Examples
    --------
    >>> shorten("no item matches the query here", 20)
    'no item matches …'
    >>> shorten("short", 20)
    'short'
    """
    if len(text) <= limit:
        return text
    cut = text[: max(1, limit - 2)]
    head = cut.rsplit(None, 1)[0] if " " in cut.strip() else cut
    return head.rstrip(" ,;:(") + " …"


def one_line(err: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (or its type name), redacted and shortened.

    Shortened at a word boundary (:func:`shorten`), never mid-word.

    Examples
    --------
    >>> one_line(OSError("CURL error on https://h/a.tif?sig=S" + chr(10) + "more"))
    'CURL error on https://h/a.tif?<redacted>'
    """
    text = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
    return shorten(redact(text), limit)


# Process state on purpose: the GC thresholds are the interpreter's; nested and concurrent
# relaxed_gc() blocks count their depth so the outermost one restores them.
_GC_LOCK = threading.Lock()
_GC_DEPTH = 0
_GC_SAVED: tuple[int, ...] = (700, 10, 10)


@contextlib.contextmanager
def relaxed_gc(threshold: int = 10_000) -> Iterator[None]:
    """Collect garbage less often inside the block (restored after; nesting and threads safe).

    The objects alive on entry are frozen (``gc.freeze``: not scanned again) and the first
    generation is collected every ``threshold`` allocations instead of 700. Searching and
    reading thousands of files create millions of short-lived objects; with the default
    settings the collector's full scans of items and graphs took about a tenth of a batch.

    Examples
    --------
    >>> import gc
    >>> with relaxed_gc():
    ...     gc.get_threshold()[0]
    10000
    >>> gc.get_threshold()[0] != 10000
    True
    """
    global _GC_DEPTH, _GC_SAVED
    with _GC_LOCK:
        _GC_DEPTH += 1
        if _GC_DEPTH == 1:
            _GC_SAVED = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(threshold, *_GC_SAVED[1:])
    try:
        yield
    finally:
        with _GC_LOCK:
            _GC_DEPTH -= 1
            if _GC_DEPTH == 0:
                gc.set_threshold(*_GC_SAVED)
                gc.unfreeze()


# Process state on purpose: BLAS thread limits are the process's; same depth counting.
_BLAS_LOCK = threading.Lock()
_BLAS_DEPTH = 0
_BLAS_LIMITS: Any = None


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run BLAS (OpenBLAS, MKL) on the calling thread inside the block (restored after).

    odc-geo inverts a 3x3 matrix for every grid comparison; OpenBLAS hands each to its
    thread pool, whose threads then spin waiting for more work. On the 2-core benchmark this
    spinning took 1.5-3.5 s of CPU per batch of 24 features, time the reads did not have.
    Nesting and threads are safe (``threadpoolctl``).

    Examples
    --------
    >>> with single_threaded_blas():
    ...     pass
    """
    global _BLAS_DEPTH, _BLAS_LIMITS
    with _BLAS_LOCK:
        _BLAS_DEPTH += 1
        if _BLAS_DEPTH == 1:
            _BLAS_LIMITS = threadpool_limits(limits=1, user_api="blas")
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_DEPTH -= 1
            if _BLAS_DEPTH == 0 and _BLAS_LIMITS is not None:
                _BLAS_LIMITS.restore_original_limits()
                _BLAS_LIMITS = None


class ContextThreadPool(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose tasks run in the submitter's ``contextvars`` context.

    Threads do not inherit context variables; every pool of xsits is one of these, so that
    what a caller scoped (:func:`xsits.options.options_scope`) holds in the work it hands to
    pool threads, and nowhere else.

    Examples
    --------
    >>> import contextvars
    >>> var = contextvars.ContextVar("var", default="outside")
    >>> with ContextThreadPool(1) as pool:
    ...     token = var.set("mine")
    ...     got = pool.submit(var.get).result()
    ...     var.reset(token)
    >>> got, var.get()
    ('mine', 'outside')
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """``fn(*args, **kwargs)`` on a pool thread, in a copy of the caller's context."""
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)


def context_thread(target: Callable[[], Any], name: str) -> threading.Thread:
    """A daemon thread running ``target`` in a copy of the caller's ``contextvars`` context.

    Examples
    --------
    >>> t = context_thread(lambda: None, "x"); t.start(); t.join(); t.daemon
    True
    """
    return threading.Thread(target=contextvars.copy_context().run, args=(target,), name=name,
                            daemon=True)


#: glibc malloc arenas at most in a process where xsits runs its request threads.
MALLOC_ARENAS = 2


@functools.lru_cache(maxsize=1)
def cap_malloc_arenas() -> bool:
    """Cap glibc's malloc arenas at :data:`MALLOC_ARENAS` (once per process); True if capped.

    glibc gives each thread that allocates its own arena (up to 8 per core) and keeps the
    arenas' freed memory: with xsits' 64 request threads a batch's peak RSS grew by ~40 %
    (1,000 features: 1,342 MB, 961 MB with two arenas, at the same speed). Called when xsits
    is imported, before it starts a thread; a ``MALLOC_ARENA_MAX`` set in the environment is
    left to rule, and other C libraries than glibc's are left alone.

    Examples
    --------
    >>> cap_malloc_arenas() in (True, False)
    True
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(-8, MALLOC_ARENAS))  # -8: M_ARENA_MAX


cap_malloc_arenas()  # before any thread of xsits' starts: see its docstring


_T = TypeVar("_T")


class Lru(Generic[_T]):
    """A thread-safe least-recently-used mapping, bounded by entries and by bytes.

    Examples
    --------
    >>> cache = Lru(keep=2)
    >>> for k in "abc":
    ...     _ = cache.put(k, k.upper())
    >>> cache.get("a"), cache.get("c")
    (None, 'C')
    """

    def __init__(self, keep: int | None = None, max_bytes: Callable[[], int] | None = None,
                 ) -> None:
        self.keep, self.max_bytes = keep, max_bytes
        self._items: OrderedDict[Any, tuple[_T, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Any) -> _T | None:
        """The value of ``key`` (None if absent), now the most recently used."""
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return None
            self._items.move_to_end(key)
            return hit[0]

    def put(self, key: Any, value: _T, nbytes: int = 0) -> _T:
        """Keep ``value`` under ``key`` (``nbytes``: its size, for the byte bound)."""
        limit = self.max_bytes() if self.max_bytes is not None else None
        with self._lock:
            old = self._items.pop(key, None)
            self._bytes -= old[1] if old is not None else 0
            self._items[key] = (value, nbytes)
            self._bytes += nbytes
            while len(self._items) > 1 and (
                    (self.keep is not None and len(self._items) > self.keep)
                    or (limit is not None and self._bytes > limit)):
                _, (_, size) = self._items.popitem(last=False)
                self._bytes -= size
        return value

    def pop(self, key: Any) -> _T | None:
        """Forget ``key``; its value (None if absent)."""
        with self._lock:
            hit = self._items.pop(key, None)
            if hit is None:
                return None
            self._bytes -= hit[1]
            return hit[0]

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._items.clear()
            self._bytes = 0
