"""Real local servers for tests, the demo and benchmarks: a COG server, a fault proxy, S3.

Everything listens on 127.0.0.1 on free ports and runs in child processes (no GIL
contention with the client under test); each server is a context manager that
stops what it started.

- :class:`~xsits.testing.pgstac.PgstacServer` (:mod:`xsits.testing.pgstac`):
  stac-fastapi-pgstac (uvicorn) on a private PostgreSQL + PostGIS cluster created with
  ``initdb`` in a temporary directory.
- :class:`CogServer`: a threaded HTTP file server with ``Range`` support
  (``rangehttpserver``), optional added latency and injected faults.
- :class:`FaultProxy`: an aiohttp reverse proxy answering 500/429 to a seeded
  fraction of requests, adding latency and rewriting absolute links.
- :class:`S3Server`: moto's S3-compatible server, for ``s3://`` hrefs.

Every server counts the requests it receives; read the counts with ``.stats()``
(served, uncounted, at the unlisted path ``/__stats``) and clear them with
``.reset_stats()``. Launching, waiting and stopping is :mod:`xsits.testing.launch`'s.

Owns: what the COG server, the fault proxy and the S3 server are asked to do (faults,
latency, throttling, SAS tokens, uploads) and their counters.
Must not: hold PostgreSQL or STAC API code (:mod:`xsits.testing.pgstac`).

Examples
--------
The demo world (:func:`xsits.demo.demo_world`) served as a real STAC API and COG server:

>>> import pystac_client
>>> from xsits.demo import demo_world
>>> from xsits.testing.pgstac import PgstacServer
>>> from xsits.testing.servers import CogServer
>>> world = demo_world()
>>> with PgstacServer() as api, CogServer(world.root) as cogs:
...     api.load(world.collection, world.item_dicts(cogs.url))
...     search = pystac_client.Client.open(api.url).search(max_items=3)
...     [it.assets["B04"].href.startswith(cogs.url) for it in search.items()]
[True, True, True]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from xsits.testing.launch import ServerError, StatsMixin, free_port, http_json

__all__ = ["CogServer", "FaultProxy", "S3Server"]


class CogServer(StatsMixin):
    """Serve a directory over HTTP with ``Range`` support, counting, latency and faults.

    A ``ThreadingHTTPServer`` with the ``rangehttpserver`` handler (HTTP/1.1
    keep-alive, one thread per connection) in a child process, so it handles many
    concurrent requests without competing for the test process's GIL.

    Parameters
    ----------
    root : str or Path
        Directory to serve.
    latency_ms : float
        Added delay before each request is answered.
    fault_rate : float
        Probability (seeded RNG) that a request fails: half of the failures
        drop the connection without an answer, half send the headers with the
        full ``Content-Length`` then only half of the body.
    seed : int
        Seed of the fault RNG (deterministic for a given arrival order).
    max_consecutive_faults : int
        Never fail more than this many requests in a row (0: unbounded).
    throttle_rate, throttle_seconds, retry_after
        For ``throttle_seconds`` from the first request, answer a share ``throttle_rate``
        of requests 429 / 503 (alternately) with ``Retry-After: retry_after`` (seconds, or
        ``"date"`` + seconds for an HTTP date). ``stats()`` counts ``throttled`` and the
        most requests in flight at once while throttling / after.
    sas_lifetime
        When > 0, every file request needs an unexpired SAS token of this server (else HTTP
        403); :attr:`sas_url` hands out tokens living that many seconds, as Planetary
        Computer's SAS API does, and :meth:`rotate_sas` revokes them all.
    bearer_token, bearer_prefix, bearer_redirect
        With a token: requests of paths under ``bearer_prefix`` (e.g.
        ``"lp-prod-protected/"``) need ``Authorization: Bearer <token>`` (else HTTP 401), as
        NASA LP DAAC's data hosts; with ``bearer_redirect`` they are redirected (307) to a
        signed URL on the host name ``localhost``, which refuses any ``Authorization``
        header (HTTP 400, as S3). ``stats()`` counts ``unauthorized``, ``authorized``,
        ``redirected_requests`` and ``auth_after_redirect``.

    Attributes
    ----------
    url : str
        Root URL with a trailing slash; a file ``root/a/b.tif`` is ``url + "a/b.tif"``.

    Examples
    --------
    >>> import rasterio
    >>> from xsits.demo import demo_world
    >>> href = demo_world().item_dicts("")[0]["assets"]["B04"]["href"]
    >>> with CogServer(demo_world().root, latency_ms=50) as cogs:
    ...     with rasterio.open(cogs.url + href) as src:
    ...         block = src.read(1, window=((0, 64), (0, 64)))
    ...     block.shape, cogs.stats()["range_requests"] > 0
    ((64, 64), True)
    """

    def __init__(
        self,
        root: str | os.PathLike,
        latency_ms: float = 0,
        fault_rate: float = 0.0,
        seed: int = 0,
        *,
        max_consecutive_faults: int = 0,
        throttle_rate: float = 0.0,
        throttle_seconds: float = 0.0,
        retry_after: str = "1",
        sas_lifetime: float = 0.0,
        bearer_token: str = "",
        bearer_prefix: str = "",
        bearer_redirect: bool = False,
    ) -> None:
        self.root = Path(root)
        self.latency_ms = latency_ms
        self.fault_rate = fault_rate
        self.seed = seed
        self.max_consecutive_faults = max_consecutive_faults
        self.throttle = (throttle_rate, throttle_seconds, retry_after)
        self.sas_lifetime = sas_lifetime
        self.bearer = (bearer_token, "/" + bearer_prefix.lstrip("/"), bearer_redirect)
        self.url = ""

    def start(self) -> CogServer:
        """Start serving; raise ServerError when the server does not come up."""
        if not self.root.is_dir():
            raise ServerError(f"CogServer root {self.root} is not a directory; create it first")
        base = self._launch(
            "cog",
            "xsits.testing._cog_app",
            ["--root", str(self.root.resolve()), "--latency-ms", str(self.latency_ms),
             "--fault-rate", str(self.fault_rate), "--seed", str(self.seed),
             "--max-consecutive-faults", str(self.max_consecutive_faults),
             "--throttle-rate", str(self.throttle[0]), "--throttle-seconds",
             str(self.throttle[1]), "--retry-after", str(self.throttle[2]),
             "--sas-lifetime", str(self.sas_lifetime),
             *(["--bearer-token", self.bearer[0], "--bearer-prefix", self.bearer[1]]
               if self.bearer[0] else []),
             *(["--bearer-redirect"] if self.bearer[2] else [])],
        )
        self.url = base + "/"
        return self

    @property
    def sas_url(self) -> str:
        """The SAS token endpoint (``{sas_url}/{account}/{container}``), with ``sas_lifetime``."""
        return self._base() + "/__sas/token"

    def rotate_sas(self) -> None:
        """Revoke every SAS token handed out so far (the next reads answer 403)."""
        http_json(self._base() + "/__sas/rotate")

    def set_fault(self, path: str, kind: str | int, times: int = 1) -> None:
        """Fail the next ``times`` requests of ``path`` (-1: every one) with ``kind``.

        ``kind``: an HTTP status (``404``, ``403``, ``500``...), ``"drop"`` (the connection
        closes without an answer) or ``"truncate"`` (half of the body, then the connection
        closes). ``path`` is relative to :attr:`url` (``"a/b.tif"``).

        Examples
        --------
        >>> cogs.set_fault("T31UFQ/B04.tif", 500, times=1)  # doctest: +SKIP
        """
        query = urlencode({"path": "/" + path.lstrip("/"), "kind": str(kind), "times": times})
        http_json(self._base() + "/__faults?" + query)

    def clear_faults(self) -> None:
        """Forget every fault set by :meth:`set_fault`."""
        http_json(self._base() + "/__faults/clear")

    def stats(self) -> dict[str, Any]:
        """Return the request counters since start/reset.

        Returns
        -------
        dict
            ``requests`` (GET + HEAD), ``get``, ``head``, ``range_requests``,
            ``bytes_served``, ``faults``, ``dropped``, ``truncated``,
            ``not_found`` and ``paths`` (requests by URL path).

        Examples
        --------
        >>> import tempfile, urllib.request
        >>> from pathlib import Path
        >>> root = Path(tempfile.mkdtemp())
        >>> _ = (root / "a.bin").write_bytes(bytes(range(8)))
        >>> with CogServer(root) as cogs:
        ...     req = urllib.request.Request(cogs.url + "a.bin", headers={"Range": "bytes=2-4"})
        ...     got = list(urllib.request.urlopen(req).read())
        ...     got, cogs.stats()["requests"], cogs.stats()["range_requests"]
        ([2, 3, 4], 1, 1)
        """
        return super().stats()


class FaultProxy(StatsMixin):
    """Reverse proxy in front of a local server that fails, delays and counts requests.

    An aiohttp server in a child process.  A seeded fraction ``error_rate`` of
    the requests is answered directly with one of ``statuses`` (JSON body); the
    others are forwarded to ``target_url``.  Absolute links to the target in JSON
    answers (and ``Location`` headers) are rewritten to the proxy, so paging
    ``next`` links and asset hrefs come back through it.

    Parameters
    ----------
    target_url : str
        The server to forward to, e.g. ``api.url`` or ``cogs.url``.
    error_rate : float
        Probability that a request is answered with an error status.
    statuses : sequence of int
        Error statuses to choose from (seeded, uniformly).
    latency_ms : float
        Added delay before each request is answered or forwarded.
    seed : int
        Seed of the fault RNG (deterministic for a given arrival order).
    max_consecutive_faults : int
        Never fail more than this many requests in a row (0: unbounded); with
        ``n`` a client retrying ``n`` times always gets through.
    fault_paths : sequence of str
        Only requests whose path starts with one of these may fail (default: any),
        e.g. ``("/search",)`` to fail STAC searches but not the landing page.

    Attributes
    ----------
    url : str
        The proxy URL, with a trailing slash iff ``target_url`` has one.

    Examples
    --------
    >>> import tempfile, urllib.error, urllib.request
    >>> root = tempfile.mkdtemp()
    >>> with CogServer(root) as cogs, FaultProxy(cogs.url, error_rate=1.0,
    ...                                          statuses=(503,)) as proxy:
    ...     try:
    ...         urllib.request.urlopen(proxy.url + "a.tif")
    ...     except urllib.error.HTTPError as err:
    ...         print(err.code)
    ...     proxy.stats()["by_status"]
    503
    {'503': 1}
    """

    def __init__(
        self,
        target_url: str,
        error_rate: float = 0.0,
        statuses: Sequence[int] = (500, 429),
        latency_ms: float = 0,
        seed: int = 0,
        *,
        max_consecutive_faults: int = 0,
        fault_paths: Sequence[str] = (),
    ) -> None:
        self.target_url = target_url
        self.fault_paths = tuple(fault_paths)
        self.error_rate = error_rate
        self.statuses = tuple(statuses)
        self.latency_ms = latency_ms
        self.seed = seed
        self.max_consecutive_faults = max_consecutive_faults
        self.url = ""

    def start(self) -> FaultProxy:
        """Start the proxy; raise ServerError when it does not come up."""
        base = self._launch(
            "proxy",
            "xsits.testing._proxy_app",
            ["--target", self.target_url, "--error-rate", str(self.error_rate),
             "--statuses", ",".join(str(s) for s in self.statuses),
             "--latency-ms", str(self.latency_ms), "--seed", str(self.seed),
             "--max-consecutive-faults", str(self.max_consecutive_faults),
             "--fault-paths", ",".join(self.fault_paths)],
        )
        self.url = base + "/" if self.target_url.endswith("/") else base
        return self

    def stats(self) -> dict[str, Any]:
        """Return the request counters since start/reset.

        Returns
        -------
        dict
            ``requests`` (all but ``/__stats``), ``faults`` (injected),
            ``by_status`` (answers by status code, as strings) and ``paths``.

        Examples
        --------
        >>> import tempfile, urllib.error, urllib.request
        >>> with CogServer(tempfile.mkdtemp()) as cogs, FaultProxy(cogs.url,
        ...                                                        error_rate=0.5) as proxy:
        ...     for _ in range(10):
        ...         try:
        ...             urllib.request.urlopen(proxy.url + "missing.tif")
        ...         except urllib.error.HTTPError:
        ...             pass
        ...     0 < proxy.stats()["faults"] < 10, proxy.stats()["requests"]
        (True, 10)
        """
        return super().stats()


class S3Server:
    """A local S3-compatible server (moto's server mode) on 127.0.0.1, for ``s3://`` hrefs.

    Needs the test extra (``moto[server]``, with boto3). Credentials are moto's: any key.
    Buckets are made in ``us-east-1``.

    Attributes
    ----------
    url : str
        The endpoint (``http://127.0.0.1:<port>``), for ``set_options(s3={"endpoint_url":
        ...})`` or ``$AWS_ENDPOINT_URL``.

    Examples
    --------
    >>> with S3Server() as s3:  # doctest: +SKIP
    ...     s3.upload(root, "bucket", requester_pays=True)
    """

    def __init__(self) -> None:
        self.url = ""
        self._server: Any = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> S3Server:
        """Start moto's threaded server on a free 127.0.0.1 port."""
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as err:  # pragma: no cover - the test extra is missing
            raise ServerError("S3Server needs moto[server]: pip install 'xsits[test]'") from err
        port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._server.start()
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        """Stop the server."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self) -> Any:
        """A boto3 S3 client of this server."""
        import boto3  # the test extra (moto[server])

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def upload(self, root: str | os.PathLike, bucket: str, *,
               requester_pays: bool = False) -> list[str]:
        """Copy every file under ``root`` to ``bucket`` (created) under the same keys."""
        s3 = self.client()
        s3.create_bucket(Bucket=bucket)  # in us-east-1
        if requester_pays:
            s3.put_bucket_request_payment(
                Bucket=bucket, RequestPaymentConfiguration={"Payer": "Requester"})
        keys = []
        for path in sorted(Path(root).rglob("*")):
            if path.is_file():
                key = path.relative_to(root).as_posix()
                s3.upload_file(str(path), bucket, key)
                keys.append(key)
        return keys
