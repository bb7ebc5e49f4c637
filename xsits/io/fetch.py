"""Byte ranges of files over HTTP(S), S3 or on disk: many at a time, each fetched once.

Owns: the process's object stores (obstore: HTTP, with the Earthdata bearer token on NASA LP
DAAC's hosts (:mod:`xsits.io.earthdata`), local files, and ``s3://`` buckets with the
S3 settings of :func:`s3_settings`, requester-pays and anonymous included, the same settings
GDAL is given by :func:`gdal_s3_env`), its request threads and its cache of fetched bytes
(:func:`submit`, :func:`find`); how large a file's first request is (:func:`head_bytes`);
what a failed request means (:func:`client_status`, :func:`reason`). Every request goes
through :func:`xsits.io.retry.call` (per host: a throttling host gets fewer requests and its
``Retry-After`` is honoured, :func:`_retry_after`); HTTP 403 / 404 fail at once with a
:class:`LoadError` that names the file without its query string.
Must not: parse or decode what it fetches (:mod:`xsits.io.tiff`, :mod:`xsits.io.reader`).

Examples
--------
>>> import tempfile
>>> path = tempfile.mktemp(suffix=".bin")
>>> _ = open(path, "wb").write(b"0123456789")
>>> bytes(submit(path, 2, 5).result()), bytes(find(path, 3, 4))
(b'234', b'3')
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

import obstore
from obstore.store import HTTPStore, LocalStore, S3Store

from xsits._common import ContextThreadPool, Lru, redact
from xsits.errors import LoadError, TransientError
from xsits.io import earthdata, retry
from xsits.options import S3_KEYS, get_options

T = TypeVar("T")

#: Bytes asked for by a file's first request: its header and a COG's smallest overviews.
HEAD_BYTES = 128 * 1024
#: A file of at most this size is "small"; see :data:`SMALL_FILES_SEEN`.
SMALL_FILE_BYTES = 2**20
#: Once a host's first files were all small, a file's first request asks for
#: :data:`SMALL_FILE_BYTES` (a small file comes whole, in one request) when ``whole_files``.
SMALL_FILES_SEEN = 16


def per_process(factory: Callable[[], T]) -> Callable[[], T]:
    """``factory()``'s object for this process, made on first use and again after a fork.

    Thread pools do not survive a fork: a dask worker process makes its own.

    Examples
    --------
    >>> pool = per_process(lambda: ContextThreadPool(1))
    >>> pool() is pool()
    True
    """
    made: dict[int, T] = {}
    lock = threading.Lock()

    def get() -> T:
        pid = os.getpid()
        with lock:
            if pid not in made:
                made.clear()
                made[pid] = factory()
            return made[pid]

    return get


class _Bytes:
    """The process's stores, request threads and fetched bytes (see the module docstring)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pool = ContextThreadPool(get_options().max_requests,
                                       thread_name_prefix="xsits-fetch")
        self.stores: dict[str, Any] = {}
        self.segments: OrderedDict[str, list[tuple[int, memoryview]]] = OrderedDict()
        self.cached = 0
        self.sizes: dict[str, int] = {}
        self.inflight: dict[tuple[str, int, int], Future] = {}
        self.host_sizes: dict[str, list[int]] = {}
        # a file's first request, fixed once: readers that open it at the same time share it
        self.heads: dict[str, int] = {}


# The process's fetch state: one per process, so that features sharing a file fetch it once.
_state = per_process(_Bytes)


def locate(uri: str) -> tuple[str, str]:
    """``(store key, path in that store)`` of a URL or a local path.

    Examples
    --------
    >>> locate("https://host/a/b.tif")
    ('https://host', 'a/b.tif')
    >>> locate("https://host/b.tif?sig=1")  # signed: a store of its own keeps the query
    ('https://host/b.tif?sig=1', '')
    >>> locate("s3://bucket/tiles/B04.tif")
    ('s3://bucket', 'tiles/B04.tif')
    """
    p = urlparse(uri)
    if p.scheme == "s3":
        return f"s3://{p.netloc}", unquote(p.path).lstrip("/")
    if p.scheme in ("http", "https"):
        if p.query or p.params:
            return uri, ""
        return f"{p.scheme}://{p.netloc}", unquote(p.path).lstrip("/")
    if p.scheme == "file":
        return "file", os.path.abspath(unquote(p.path)).lstrip("/")
    return "file", os.path.abspath(uri).lstrip("/")


def fetchable(uri: str) -> bool:
    """Whether this module can fetch ``uri`` (HTTP(S), ``s3://``, ``file://`` or a path).

    Examples
    --------
    >>> fetchable("s3://bucket/a.tif"), fetchable("https://host/a.tif"), fetchable("gs://b/a")
    (True, True, False)
    """
    scheme = urlparse(uri).scheme
    return scheme in ("http", "https", "file", "s3") or (scheme == "" and os.path.exists(uri))


def client_status(err: BaseException) -> int | None:
    """The HTTP 4xx status of a client fault (not 408 / 425 / 429), if ``err`` is one.

    Examples
    --------
    >>> client_status(FileNotFoundError("x")), client_status(TimeoutError("x"))
    (404, None)
    """
    if isinstance(err, FileNotFoundError) or type(err).__name__ == "NotFoundError":
        return 404  # obstore's NotFoundError: S3 NoSuchKey, HTTP 404
    if type(err).__name__ == "UnauthenticatedError":
        return 401  # obstore's: no or bad credentials (an Earthdata host without a token)
    if isinstance(err, PermissionError) or type(err).__name__ == "PermissionDeniedError":
        return 403  # obstore's: S3 AccessDenied
    status = retry.status_of(err)
    if status is not None and 400 <= status < 500 and status not in retry.RETRY_STATUSES:
        return status
    return None


def _transient(err: BaseException) -> bool:
    if client_status(err) is not None or isinstance(err, (LoadError, ValueError, TypeError)):
        return False
    return True  # obstore's other errors: timeouts, resets, 5xx, short bodies


def reason(err: BaseException) -> str:
    """Why a request failed, in one line, with the fix for client faults and no secrets.

    Examples
    --------
    >>> reason(FileNotFoundError("gone"))
    'HTTP 404, the file does not exist; check the asset href'
    """
    status = client_status(err)
    if status == 404:
        return "HTTP 404, the file does not exist; check the asset href"
    if status in (401, 403):
        return (f"HTTP {status}, access denied; check the credentials (Planetary Computer "
                "hrefs are signed by xsits; s3:// needs AWS credentials in the environment or "
                "set_options(s3=...), and requester_pays=True for requester-pays buckets; "
                f"NASA Earthdata (LP DAAC) hrefs need a valid token in ${earthdata.TOKEN_ENV})")
    if status is not None:
        return f"HTTP {status}"
    return redact(str(err).splitlines()[0] if str(err) else type(err).__name__)


#: Seconds a ``Retry-After`` learnt of a host is reused before it is asked again.
RETRY_AFTER_REUSE = 1.0
#: Hosts whose ``Retry-After`` is kept per process (the least recently used are forgotten).
KEEP_HOSTS = 1024
#: The last ``Retry-After`` learnt of each throttling host: host -> (when, seconds or None).
RETRY_AFTER_SEEN: Lru[tuple[float, float | None]] = Lru(keep=KEEP_HOSTS)


def _retry_after(uri: str) -> float | None:
    """The ``Retry-After`` of a throttling host: one small request to it, at most per second.

    obstore reports a 429 / 503 without its headers; this asks the same file for one byte
    and reads the header of the answer (None when it does not throttle, or has no header).
    """
    host = urlparse(uri).netloc
    now = time.monotonic()
    seen = RETRY_AFTER_SEEN.get(host)
    if seen is not None and now - seen[0] < RETRY_AFTER_REUSE:
        return seen[1] if seen[1] is None else max(0.0, seen[1] - (now - seen[0]))
    if urlparse(uri).scheme not in ("http", "https"):
        return None
    wait = None
    try:
        req = urllib.request.Request(uri, headers={"Range": "bytes=0-0"})
        for key, value in earthdata.headers(uri).items():  # never on to a redirect's host
            req.add_unredirected_header(key, value)
        with urllib.request.urlopen(req, timeout=10):  # noqa: S310 - http(s) only
            pass
    except urllib.error.HTTPError as err:
        wait = retry.parse_retry_after(err.headers.get("Retry-After"))
    except OSError:
        pass
    RETRY_AFTER_SEEN.put(host, (time.monotonic(), wait))
    return wait


def s3_settings() -> dict[str, Any]:
    """The S3 settings in force: the ``s3`` option over the standard AWS environment.

    ``endpoint_url`` (``$AWS_ENDPOINT_URL_S3``, ``$AWS_ENDPOINT_URL``), ``region``
    (``$AWS_REGION``, ``$AWS_DEFAULT_REGION``, else ``us-west-2``, where Earth Search's
    buckets are), ``requester_pays`` (``$AWS_REQUESTER_PAYS``), ``anonymous``
    (``$AWS_NO_SIGN_REQUEST``); credentials from the option, else the environment
    (``$AWS_ACCESS_KEY_ID``...), read by obstore and GDAL themselves.

    Examples
    --------
    >>> import xsits
    >>> with xsits.set_options(s3={"requester_pays": True, "region": "eu-central-1"}):
    ...     s = s3_settings()
    >>> s["requester_pays"], s["region"]
    (True, 'eu-central-1')
    """
    env = os.environ
    opts = dict(get_options().s3 or {})

    def flag(name: str) -> bool:
        return env.get(name, "").strip().lower() in ("1", "true", "yes")

    out: dict[str, Any] = {
        "endpoint_url": opts.get("endpoint_url") or env.get("AWS_ENDPOINT_URL_S3")
        or env.get("AWS_ENDPOINT_URL"),
        "region": opts.get("region") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        or "us-west-2",
        "requester_pays": bool(opts.get("requester_pays", flag("AWS_REQUESTER_PAYS"))),
        "anonymous": bool(opts.get("anonymous", flag("AWS_NO_SIGN_REQUEST"))),
    }
    for key in S3_KEYS[4:]:
        if opts.get(key):
            out[key] = opts[key]
    return out


def gdal_s3_env() -> dict[str, str]:
    """The GDAL configuration of the same S3 settings (for the reads GDAL does).

    Examples
    --------
    >>> import xsits
    >>> with xsits.set_options(s3={"endpoint_url": "http://127.0.0.1:9000",
    ...                            "requester_pays": True}):
    ...     env = gdal_s3_env()
    >>> env["AWS_S3_ENDPOINT"], env["AWS_HTTPS"], env["AWS_REQUEST_PAYER"]
    ('127.0.0.1:9000', 'NO', 'requester')
    """
    s = s3_settings()
    env = {"AWS_REGION": s["region"]}
    if s["endpoint_url"]:
        parts = urlparse(s["endpoint_url"])
        env.update(AWS_S3_ENDPOINT=parts.netloc, AWS_VIRTUAL_HOSTING="FALSE",
                   AWS_HTTPS="NO" if parts.scheme == "http" else "YES")
    if s["requester_pays"]:
        env["AWS_REQUEST_PAYER"] = "requester"
    if s["anonymous"]:
        env["AWS_NO_SIGN_REQUEST"] = "YES"
    for key in S3_KEYS[4:]:
        if s.get(key):
            env[key.upper()] = s[key]
    return env


def _s3_store(bucket: str) -> Any:
    s = s3_settings()
    kwargs: dict[str, Any] = {"region": s["region"], "request_payer": s["requester_pays"],
                              "skip_signature": s["anonymous"]}
    if s["endpoint_url"]:
        kwargs["endpoint"] = s["endpoint_url"]
    for key in S3_KEYS[4:]:
        if s.get(key):
            kwargs[key.removeprefix("aws_")] = s[key]
    return S3Store(bucket, client_options={"allow_http": True, "timeout": "120s",
                                           "connect_timeout": "20s"},
                   retry_config={"max_retries": 0}, **kwargs)


def _store(key: str) -> Any:
    st = _state()
    auth = earthdata.headers(key) if key.startswith("http") else {}
    if key.startswith("s3://"):  # one store per bucket and settings in force
        key = f"{key}#{hash(tuple(sorted(s3_settings().items())))}"
    elif auth:  # one store per token (a new token in the environment: a new store)
        key = f"{key}#{hashlib.sha256(auth['Authorization'].encode()).hexdigest()[:16]}"
    with st.lock:
        if key in st.stores:
            return st.stores[key]
    if key.startswith("s3://"):
        store = _s3_store(urlparse(key.split("#", 1)[0]).netloc)
    elif key == "file":
        store = LocalStore("/")
    else:  # an Earthdata host: its bearer token in every request (none on other hosts)
        options: dict[str, Any] = {"allow_http": True, "timeout": "120s",
                                   "connect_timeout": "20s"}
        if auth:
            options["default_headers"] = auth
        store = HTTPStore.from_url(
            key.split("#", 1)[0], client_options=options,
            retry_config={"max_retries": 0})  # xsits.io.retry is the one retry policy
    with st.lock:
        return st.stores.setdefault(key, store)


def _get(uri: str, start: int, end: int) -> memoryview:
    st = _state()
    key, path = locate(uri)

    def once() -> memoryview:
        try:
            got = obstore.get(_store(key), path, options={"range": (start, end)})
        except Exception as err:
            if retry.is_throttled(err):  # obstore's errors carry no headers: ask Retry-After
                raise TransientError(
                    f"HTTP {retry.status_of(err)} (throttled) from {redact(uri)}",
                    retry_after=_retry_after(uri)) from err
            raise
        size = int(got.meta["size"])
        data = memoryview(bytes(got.bytes()))
        if len(data) != min(end, size) - start:
            raise TransientError(
                f"truncated body: {len(data)} of {min(end, size) - start} bytes")
        st.sizes[uri] = size
        return data

    try:
        data = retry.call(once, what=f"reading {redact(uri)}", transient=_transient,
                          host=urlparse(uri).netloc or None)
    except Exception as err:
        raise LoadError(f"cannot read {redact(uri)}: {reason(err)}") from err
    limit = get_options().cache_bytes
    with st.lock:
        st.segments.setdefault(uri, []).append((start, data))
        st.segments.move_to_end(uri)
        st.cached += len(data)
        while st.cached > limit and len(st.segments) > 1:
            _, old = st.segments.popitem(last=False)
            st.cached -= sum(len(b) for _, b in old)
    return data


def size(uri: str) -> int | None:
    """The size of ``uri`` in bytes, once a request of it returned (else None)."""
    return _state().sizes.get(uri)


def find(uri: str, start: int, end: int) -> memoryview | None:
    """Fetched bytes ``[start, end)`` of ``uri`` (clamped to its size), else None."""
    st = _state()
    known = st.sizes.get(uri)
    if known is not None:
        end = min(end, known)
    with st.lock:
        for s, buf in st.segments.get(uri, ()):
            if s <= start and end <= s + len(buf):
                st.segments.move_to_end(uri)
                return buf[start - s:end - s]
    return None


def submit(uri: str, start: int, end: int) -> Future:
    """Bytes ``[start, end)`` of ``uri``: fetched bytes, or one request (deduplicated)."""
    hit = find(uri, start, end)
    if hit is not None:
        done: Future = Future()
        done.set_result(hit)
        return done
    st = _state()
    key = (uri, start, end)
    with st.lock:
        fut = st.inflight.get(key)
        if fut is None:
            fut = st.inflight[key] = st.pool.submit(_get, uri, start, end)
            fut.add_done_callback(lambda _f: _forget_inflight(key))
    return fut


def _forget_inflight(key: tuple) -> None:
    st = _state()
    with st.lock:
        st.inflight.pop(key, None)


def head_bytes(uri: str) -> int:
    """How many bytes a file's first request asks for (see :data:`SMALL_FILES_SEEN`).

    Decided once per file, so readers opening it at the same time send one request.

    Examples
    --------
    >>> head_bytes("http://unknown-host/a.tif") == HEAD_BYTES
    True
    """
    if not get_options().whole_files:
        return HEAD_BYTES
    st = _state()
    with st.lock:
        if uri not in st.heads:
            seen = st.host_sizes.get(urlparse(uri).netloc, [])
            small = len(seen) >= SMALL_FILES_SEEN and max(seen) <= SMALL_FILE_BYTES
            st.heads[uri] = SMALL_FILE_BYTES if small else HEAD_BYTES
        return st.heads[uri]


def saw_size(uri: str) -> None:
    """Note the size of a file whose first request returned, for :func:`head_bytes`."""
    st = _state()
    known = st.sizes.get(uri)
    if known is not None:
        with st.lock:
            seen = st.host_sizes.setdefault(urlparse(uri).netloc, [])
            if len(seen) < SMALL_FILES_SEEN or known > SMALL_FILE_BYTES:
                seen.append(known)


def clear() -> None:
    """Forget every fetched byte and size (what was learnt of hosts stays).

    Examples
    --------
    >>> clear()
    """
    st = _state()
    with st.lock:
        st.segments.clear()
        st.cached = 0
        st.sizes.clear()
        st.heads.clear()
