"""Launcher: a threaded HTTP file server with Range support, counting and fault injection.

Run as ``python xsits/testing/_cog_app.py --root DIR --port-file FILE``.  Built on
the ``rangehttpserver`` package's ``RangeRequestHandler`` and
:class:`http.server.ThreadingHTTPServer` (HTTP/1.1 keep-alive).  Counters are
served, uncounted, at ``/__stats`` and cleared by ``/__stats/reset``.  Faults of one path
are set, uncounted, at ``/__faults?path=/a.tif&kind=500&times=1`` (``kind``: an HTTP status,
``drop`` or ``truncate``; ``times``: how many of the next requests of that path fail, -1 for
all) and cleared by ``/__faults/clear``.  Throttling, as Planetary Computer does it: with
``--throttle-rate R --throttle-seconds S``, for S seconds from the first request a share R of
the requests (seeded) is answered 429 or 503 (alternately) with a ``Retry-After`` header
(``--retry-after``: seconds, or ``date`` for an HTTP date that many seconds ahead).
SAS tokens, as Planetary Computer's storage wants them: with ``--sas-lifetime L``, every file
request needs a query ``se=<expiry>&sig=<signature>`` that is not expired (else HTTP 403,
``AuthenticationFailed``); tokens living L seconds are handed out, uncounted, by
``/__sas/token/{account}/{container}`` (Planetary Computer's SAS API answer:
``{"msft:expiry": ..., "token": ...}``), and ``/__sas/rotate`` revokes every token given so far.
Bearer tokens, as NASA LP DAAC's data hosts want them: with ``--bearer-token T
--bearer-prefix P``, a file request whose path starts with ``P`` needs ``Authorization: Bearer
T`` (else HTTP 401); with ``--bearer-redirect`` it is then answered, as LP DAAC does, by a
307 redirect to a signed URL of the same file on another host name (``localhost`` for
``127.0.0.1``: S3 in LP DAAC's case), which serves it only with a valid signature and without
an ``Authorization`` header (else HTTP 400, as S3 answers a request with two auth
mechanisms; counted as ``auth_after_redirect``).
Used by :class:`xsits.testing.servers.CogServer`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import json
import os
import random
import socket
import threading
import time
from collections import Counter
from email.utils import formatdate
from functools import partial
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from RangeHTTPServer import RangeRequestHandler

if __package__:
    from ._child import bind_free_socket, watch_parent, write_port_file
else:  # run as a script: do not import the (heavy) xsits package
    from _child import bind_free_socket, watch_parent, write_port_file  # type: ignore

STATS_PATH = "/__stats"
FAULTS_PATH = "/__faults"
SAS_PATH = "/__sas"


class Sas:
    """Tokens that expire: ``se=<epoch seconds>&sp=r&sig=<hmac of se>``, checked per request.

    Examples
    --------
    >>> sas = Sas(lifetime=20)
    >>> token = sas.token()["token"]
    >>> sas.valid(token), sas.valid("se=1&sp=r&sig=x")
    (True, False)
    >>> sas.rotate(); sas.valid(token)
    False
    """

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self.secret = os.urandom(16)

    def _sig(self, se: str) -> str:
        return hmac.new(self.secret, se.encode(), hashlib.sha256).hexdigest()[:32]

    def token(self) -> dict[str, str]:
        """A new token and its expiry, as Planetary Computer's SAS API answers."""
        expiry = time.time() + self.lifetime
        se = f"{expiry:.3f}"
        when = dt.datetime.fromtimestamp(expiry, dt.UTC).isoformat().replace("+00:00", "Z")
        return {"msft:expiry": when, "token": f"se={se}&sp=r&sig={self._sig(se)}"}

    def valid(self, query: str) -> bool:
        """Whether a request's query carries a token of ours that has not expired."""
        q = {k: v[0] for k, v in parse_qs(query).items()}
        se, sig = q.get("se", ""), q.get("sig", "")
        try:
            alive = float(se) > time.time()
        except ValueError:
            return False
        return alive and sig == self._sig(se)

    def rotate(self) -> None:
        """Revoke every token handed out so far."""
        self.secret = os.urandom(16)


class Bearer:
    """A bearer token required under a path prefix; redirects signed for another host name.

    Examples
    --------
    >>> b = Bearer("t0k", "/lp-prod-protected/", redirect=True)
    >>> b.needs("/lp-prod-protected/a.tif"), b.valid("Bearer t0k"), b.valid("Bearer x")
    (True, True, False)
    >>> b.signed_ok("/a.tif", b.signature("/a.tif")), b.signed_ok("/a.tif", "x")
    (True, False)
    """

    #: The host name redirects go to (the server's own address under another name).
    REDIRECT_HOST = "localhost"

    def __init__(self, token: str, prefix: str, redirect: bool = False) -> None:
        self.token, self.prefix, self.redirect = token, prefix, redirect
        self.secret = os.urandom(16)

    def needs(self, path: str) -> bool:
        """Whether a request of ``path`` needs the token."""
        return path.startswith(self.prefix)

    def valid(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header carries the token."""
        return header == f"Bearer {self.token}"

    def signature(self, path: str) -> str:
        """The signature of a redirect to ``path``."""
        return hmac.new(self.secret, path.encode(), hashlib.sha256).hexdigest()[:32]

    def signed_ok(self, path: str, signature: str) -> bool:
        """Whether a redirected request carries the signature of its path."""
        return signature == self.signature(path)


class PathFaults:
    """Faults set for given paths: the next ``times`` requests of a path fail with ``kind``.

    Examples
    --------
    >>> f = PathFaults()
    >>> f.set("/a.tif", "500", 1)
    >>> f.take("/a.tif"), f.take("/a.tif"), f.take("/b.tif")
    ('500', None, None)
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.faults: dict[str, list] = {}

    def set(self, path: str, kind: str, times: int) -> None:
        """Fail the next ``times`` requests of ``path`` (-1: every one) with ``kind``."""
        with self.lock:
            self.faults[path] = [kind, times]

    def clear(self) -> None:
        """Forget every path fault."""
        with self.lock:
            self.faults.clear()

    def take(self, path: str) -> str | None:
        """The fault of this request of ``path``, or None."""
        with self.lock:
            hit = self.faults.get(path)
            if hit is None or hit[1] == 0:
                return None
            if hit[1] > 0:
                hit[1] -= 1
            return hit[0]


class Faults:
    """Seeded, thread-safe decision of which requests fail.

    Parameters
    ----------
    rate : float
        Probability that a request fails.
    seed : int
        Seed of the random generator (same arrival order, same failures).
    max_consecutive : int
        Never fail more than this many requests in a row (0 means no bound).

    Examples
    --------
    >>> f = Faults(rate=1.0, seed=0, max_consecutive=2)
    >>> [f.next() is not None for _ in range(3)]
    [True, True, False]
    """

    def __init__(self, rate: float, seed: int, max_consecutive: int = 0) -> None:
        self.rate = rate
        self.rng = random.Random(seed)
        self.max_consecutive = max_consecutive
        self.run = 0
        self.lock = threading.Lock()

    def next(self, kinds: tuple[str, ...] = ("drop", "truncate")) -> str | None:
        """Return the fault kind for the next request, or None when it succeeds."""
        if self.rate <= 0:
            return None
        with self.lock:
            hit = self.rng.random() < self.rate
            kind = self.rng.choice(kinds)
            if hit and self.max_consecutive and self.run >= self.max_consecutive:
                hit = False
            self.run = self.run + 1 if hit else 0
        return kind if hit else None


class Stats:
    """Thread-safe request counters."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Clear every counter."""
        self.counts: Counter[str] = Counter()
        self.paths: Counter[str] = Counter()

    def add(self, key: str, n: int = 1) -> None:
        """Add ``n`` to counter ``key``."""
        with self.lock:
            self.counts[key] += n

    def as_dict(self) -> dict[str, Any]:
        """Snapshot of the counters as a JSON-able dict."""
        with self.lock:
            keys = ("requests", "get", "head", "range_requests", "bytes_served", "faults",
                    "dropped", "truncated", "not_found", "throttled", "tokens", "forbidden",
                    "unauthorized", "authorized", "redirected_requests",
                    "auth_after_redirect", "max_inflight",
                    "max_inflight_throttling", "max_inflight_after")
            out: dict[str, Any] = {k: self.counts.get(k, 0) for k in keys}
            out["paths"] = dict(self.paths)
        return out


class Throttle:
    """For ``seconds`` from the first request, answer a share ``rate`` of requests 429 / 503.

    Examples
    --------
    >>> t = Throttle(rate=1.0, seconds=60, retry_after="2", seed=0)
    >>> t.next()[0], t.next()[0], t.next()[1]
    (429, 503, '2')
    """

    def __init__(self, rate: float, seconds: float, retry_after: str, seed: int) -> None:
        self.rate, self.seconds, self.retry_after = rate, seconds, retry_after
        self.rng = random.Random(seed + 1)
        self.lock = threading.Lock()
        self.start: float | None = None
        self.n = 0
        self.inflight = 0

    def active(self) -> bool:
        """Whether the throttling window is open (it opens with the first request)."""
        now = time.monotonic()
        with self.lock:
            if self.start is None:
                self.start = now
            return now - self.start < self.seconds

    def next(self) -> tuple[int, str] | None:
        """``(status, Retry-After value)`` for a throttled request, else None."""
        if self.rate <= 0 or not self.active():
            return None
        with self.lock:
            if self.rng.random() >= self.rate:
                return None
            self.n += 1
            status = 429 if self.n % 2 else 503
        value = self.retry_after
        if value.startswith("date"):
            value = formatdate(time.time() + float(value[4:] or 2), usegmt=True)
        return status, value


class Handler(RangeRequestHandler):
    """Range request handler with counting, added latency and injected faults."""

    protocol_version = "HTTP/1.1"
    stats: Stats
    faults: Faults
    path_faults: PathFaults
    throttle: Throttle
    sas: Sas | None = None
    bearer: Bearer | None = None
    latency_s: float = 0.0

    def setup(self) -> None:
        """Set TCP_NODELAY on the connection.

        Headers and body go out in separate writes; without it Nagle + delayed ACK
        add ~40 ms to every request on a keep-alive connection.
        """
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Stay quiet."""

    def _stats_endpoint(self) -> bool:
        path = self.path.split("?", 1)[0]
        if path not in (STATS_PATH, STATS_PATH + "/reset"):
            return False
        if path.endswith("/reset"):
            with self.stats.lock:
                self.stats.reset()
        body = json.dumps(self.stats.as_dict()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return True

    def _faults_endpoint(self) -> bool:
        parts = urlsplit(self.path)
        if parts.path not in (FAULTS_PATH, FAULTS_PATH + "/clear"):
            return False
        if parts.path.endswith("/clear"):
            self.path_faults.clear()
        else:
            q = {k: v[0] for k, v in parse_qs(parts.query).items()}
            self.path_faults.set(q["path"], q.get("kind", "500"), int(q.get("times", "1")))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(b"{}")
        return True

    def _send(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _sas_endpoint(self) -> bool:
        path = self.path.split("?", 1)[0]
        if not path.startswith(SAS_PATH + "/") or self.sas is None:
            return False
        if path == SAS_PATH + "/rotate":
            self.sas.rotate()
            self._send(200, b"{}", "application/json")
        else:
            self.stats.add("tokens")
            self._send(200, json.dumps(self.sas.token()).encode(), "application/json")
        return True

    def _bearer_refused(self) -> bool:
        """LP DAAC's checks (see the module docstring): True when answered here."""
        b = self.bearer
        if b is None:
            return False
        path, _, query = self.path.partition("?")
        auth = self.headers.get("Authorization")
        if (self.headers.get("Host") or "").split(":")[0] == b.REDIRECT_HOST:
            self.stats.add("redirected_requests")
            if auth is not None:
                self.stats.add("auth_after_redirect")
                self._send(400, b"InvalidArgument: Only one auth mechanism allowed")
                return True
            sig = parse_qs(query).get("X-Amz-Signature", [""])[0]
            if not b.signed_ok(path, sig):
                self._send(403, b"AccessDenied: the signature does not match")
                return True
            return False
        if not b.needs(path):
            return False
        if not b.valid(auth):
            self.stats.add("unauthorized")
            self._send(401, b"Unauthorized: an Earthdata Login bearer token is required")
            return True
        self.stats.add("authorized")
        if not b.redirect:
            return False
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        where = (f"http://{b.REDIRECT_HOST}:{self.server.server_address[1]}{path}"
                 "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=test%2Fus-west-2"
                 f"&X-Amz-Date={stamp}&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
                 f"&X-Amz-Signature={b.signature(path)}")
        self.send_response(307)
        self.send_header("Location", where)
        self.send_header("Content-Length", "0")
        self.end_headers()
        return True

    def _serve(self, method: str) -> None:
        if self._stats_endpoint() or self._faults_endpoint() or self._sas_endpoint():
            return
        if self._bearer_refused():
            return
        if self.sas is not None and not self.sas.valid(self.path.partition("?")[2]):
            self.stats.add("requests")
            self.stats.add("forbidden")
            self._send(403, b"AuthenticationFailed: the signature is missing or expired")
            return
        self.stats.add("requests")
        self.stats.add(method.lower())
        with self.stats.lock:
            self.stats.paths[self.path.split("?", 1)[0]] += 1
        if "Range" in self.headers:
            self.stats.add("range_requests")
        throttle = self.throttle
        with throttle.lock:
            throttle.inflight += 1
            now_in = throttle.inflight
        try:
            self._count_inflight(now_in)
            self._serve_counted(method)
        finally:
            with throttle.lock:
                throttle.inflight -= 1

    def _count_inflight(self, n: int) -> None:
        key = "max_inflight_throttling" if self.throttle.rate > 0 and self.throttle.active() \
            else "max_inflight_after" if self.throttle.rate > 0 else "max_inflight"
        with self.stats.lock:
            for k in (key, "max_inflight"):
                self.stats.counts[k] = max(self.stats.counts.get(k, 0), n)

    def _send_text(self, method: str, status: int, body: bytes,
                   headers: dict[str, str] | None = None) -> None:
        """Answer ``status`` with a plain-text ``body`` (sent for GET only) and ``headers``."""
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if method == "GET":
            self.wfile.write(body)

    def _serve_counted(self, method: str) -> None:
        if self.latency_s:
            time.sleep(self.latency_s)
        hit = self.throttle.next()
        if hit is not None:
            self.stats.add("throttled")
            status, value = hit
            self._send_text(method, status, b"slow down", {"Retry-After": value})
            return
        self.fault = self.path_faults.take(self.path.split("?", 1)[0]) or self.faults.next()
        if self.fault is not None and self.fault.isdigit():
            self.stats.add("faults")
            self._send_text(method, int(self.fault), f"injected HTTP {self.fault}".encode())
            return
        if self.fault == "drop":
            self.stats.add("faults")
            self.stats.add("dropped")
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        f = self.send_head()
        if f is None:
            self.stats.add("not_found")
            return
        try:
            if method == "GET":
                self.copyfile(f, self.wfile)
        finally:
            f.close()

    def do_GET(self) -> None:  # noqa: N802
        """Serve a file (or a byte range of it)."""
        self._serve("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        """Serve the headers of a file."""
        self._serve("HEAD")

    def copyfile(self, source: Any, outputfile: Any) -> None:
        """Copy the whole file or the asked range, counting bytes; truncate on a fault."""
        size = os.fstat(source.fileno()).st_size
        start, stop = 0, size - 1
        if self.range:
            first, last = self.range
            start = first or 0
            stop = size - 1 if last is None or last >= size else last
        length = stop - start + 1
        if self.fault == "truncate":
            length = length // 2
        source.seek(start)
        sent = 0
        while sent < length:
            buf = source.read(min(64 * 1024, length - sent))
            if not buf:
                break
            outputfile.write(buf)
            sent += len(buf)
        self.stats.add("bytes_served", sent)
        if self.fault == "truncate":
            self.stats.add("faults")
            self.stats.add("truncated")
            self.close_connection = True
            try:
                outputfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512


def main(argv: list[str] | None = None) -> None:
    """Serve ``--root`` on a free 127.0.0.1 port and write the port to ``--port-file``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--max-consecutive-faults", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--throttle-rate", type=float, default=0.0)
    parser.add_argument("--throttle-seconds", type=float, default=0.0)
    parser.add_argument("--retry-after", default="1")
    parser.add_argument("--sas-lifetime", type=float, default=0.0)
    parser.add_argument("--bearer-token", default="")
    parser.add_argument("--bearer-prefix", default="/")
    parser.add_argument("--bearer-redirect", action="store_true")
    parser.add_argument("--parent-pid", type=int, default=0)
    args = parser.parse_args(argv)

    watch_parent(args.parent_pid)
    Handler.stats = Stats()
    Handler.faults = Faults(args.fault_rate, args.seed, args.max_consecutive_faults)
    Handler.path_faults = PathFaults()
    Handler.throttle = Throttle(args.throttle_rate, args.throttle_seconds, args.retry_after,
                                args.seed)
    Handler.sas = Sas(args.sas_lifetime) if args.sas_lifetime > 0 else None
    Handler.bearer = (Bearer(args.bearer_token, args.bearer_prefix, args.bearer_redirect)
                      if args.bearer_token else None)
    Handler.latency_s = args.latency_ms / 1000.0
    handler = partial(Handler, directory=os.path.abspath(args.root))
    sock = bind_free_socket()
    server = _Server(("127.0.0.1", 0), handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.server_address = sock.getsockname()
    write_port_file(args.port_file, sock.getsockname()[1])
    server.serve_forever(poll_interval=0.2)


if __name__ == "__main__":
    main()
