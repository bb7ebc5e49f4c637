"""Real local servers for tests, the demo and benchmarks: a STAC API, a COG server, a fault proxy.

Everything listens on 127.0.0.1 on free ports and runs in child processes (no GIL
contention with the client under test); each server is a context manager that
stops what it started.

- :class:`PgstacServer`: stac-fastapi-pgstac (uvicorn) on a private PostgreSQL +
  PostGIS cluster created with ``initdb`` in a temporary directory.
- :class:`CogServer`: a threaded HTTP file server with ``Range`` support
  (``rangehttpserver``), optional added latency and injected faults.
- :class:`FaultProxy`: an aiohttp reverse proxy answering 500/429 to a seeded
  fraction of requests, adding latency and rewriting absolute links.

Every server counts the requests it receives; read the counts with ``.stats()``
(served, uncounted, at the unlisted path ``/__stats``) and clear them with
``.reset_stats()``.

Examples
--------
The demo world (:func:`xsits.demo.demo_world`) served as a real STAC API and COG server:

>>> import pystac_client
>>> from xsits.demo import demo_world
>>> from xsits.testing.servers import CogServer, PgstacServer
>>> world = demo_world()
>>> with PgstacServer() as api, CogServer(world.root) as cogs:
...     api.load(world.collection, world.item_dicts(cogs.url))
...     search = pystac_client.Client.open(api.url).search(max_items=3)
...     [it.assets["B04"].href.startswith(cogs.url) for it in search.items()]
[True, True, True]
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from xsits.errors import XsitsError

__all__ = [
    "CogServer",
    "FaultProxy",
    "PgstacServer",
    "ServerError",
    "postgres_available",
]

_PG_USER = "postgres"
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


class ServerError(XsitsError, RuntimeError):
    """A local test server could not start (missing PostgreSQL, port clash, crash)."""


# --------------------------------------------------------------------------- helpers


def _pg_bindir() -> Path | None:
    """Directory holding ``initdb``/``pg_ctl``: ``$XSITS_PG_BINDIR``, PATH, or Debian's layout."""
    env = os.environ.get("XSITS_PG_BINDIR")
    if env:  # authoritative when set
        ok = (Path(env) / "initdb").exists() and (Path(env) / "pg_ctl").exists()
        return Path(env) if ok else None
    candidates = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)

    def _version(p: Path) -> tuple[int, ...]:
        try:
            return tuple(int(x) for x in p.parent.name.split("."))
        except ValueError:
            return (0,)

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version, reverse=True)
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    return None


def _postgis_installed(bindir: Path) -> bool:
    sharedir = None
    pg_config = bindir / "pg_config"
    if pg_config.exists():
        try:
            sharedir = subprocess.run(
                [str(pg_config), "--sharedir"], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            sharedir = None
    dirs = [Path(sharedir)] if sharedir else []
    dirs.append(Path("/usr/share/postgresql") / bindir.parent.name)
    return any((d / "extension" / "postgis.control").exists() for d in dirs)


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def postgres_available() -> tuple[bool, str]:
    """Tell whether a private PostgreSQL + PostGIS cluster and the STAC API can be started here.

    Checks for ``initdb``/``pg_ctl`` (``$XSITS_PG_BINDIR``, ``PATH`` or
    ``/usr/lib/postgresql/*/bin``), the PostGIS extension, the Python packages
    ``stac_fastapi.pgstac``, ``pypgstac``, ``psycopg`` and ``uvicorn``, and, when
    running as root, a ``postgres`` system user and ``runuser``/``su``
    (PostgreSQL refuses to run as root).

    Returns
    -------
    tuple of (bool, str)
        ``(True, "")`` when everything is there, else ``(False, reason)`` with
        the fix in the reason.

    Examples
    --------
    >>> from xsits.testing.servers import postgres_available
    >>> ok, reason = postgres_available()
    >>> isinstance(ok, bool) and isinstance(reason, str)
    True
    """
    bindir = _pg_bindir()
    if bindir is None:
        return False, (
            "PostgreSQL server binaries (initdb, pg_ctl) not found; install them with "
            "tests/install-system-deps.sh or set XSITS_PG_BINDIR"
        )
    if not _postgis_installed(bindir):
        return False, (
            f"PostGIS extension not installed for PostgreSQL in {bindir}; "
            "run tests/install-system-deps.sh"
        )
    for mod in ("stac_fastapi.pgstac", "pypgstac", "psycopg", "uvicorn"):
        try:
            __import__(mod)
        except ImportError:
            return False, f"Python package {mod!r} missing; pip install -e '.[test]'"
    if _is_root():
        import pwd

        try:
            pwd.getpwnam(_PG_USER)
        except KeyError:
            return False, (
                "running as root but no 'postgres' system user to run PostgreSQL as; "
                "create it (useradd -r postgres) or run as a normal user"
            )
        if not (shutil.which("runuser") or shutil.which("su")):
            return False, "running as root but neither runuser nor su is available"
    return True, ""


def _as_pg_user(cmd: Sequence[str]) -> list[str]:
    """Prefix ``cmd`` so that it runs as the ``postgres`` user when we are root."""
    cmd = [str(c) for c in cmd]
    if not _is_root():
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", _PG_USER, "--", *cmd]
    return ["su", _PG_USER, "-s", "/bin/sh", "-c", subprocess.list2cmdline(cmd)]


def _http_json(url: str, method: str = "GET", timeout: float = 10.0) -> Any:
    req = urllib.request.Request(url, method=method)
    # bypass any *_proxy environment variables: these servers are local
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def _free_port() -> int:
    from xsits.testing._child import bind_free_socket

    s = bind_free_socket()
    port = s.getsockname()[1]
    s.close()
    return port


def _tail(path: Path, n: int = 20) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return " | ".join(lines[-n:])


class _ChildServer:
    """One server process launched with ``python -m MODULE ... --port-file F``."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.log = workdir / f"{name}.log"

    def start(
        self, module: str, args: Iterable[str], *, env: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> int:
        port_file = self.workdir / f"{self.name}.port"
        full_env = dict(os.environ if env is None else env)
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_PACKAGE_PARENT, full_env.get("PYTHONPATH", "")) if p
        )
        for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                    "all_proxy"):
            full_env.pop(var, None)
        full_env["NO_PROXY"] = full_env["no_proxy"] = "127.0.0.1,localhost"
        # run the launcher by file path: ``-m xsits.testing...`` would import the whole
        # (heavy) xsits package first and add a second to every start
        script = Path(__file__).with_name(module.rsplit(".", 1)[-1] + ".py")
        cmd = [sys.executable, str(script), "--port-file", str(port_file),
               "--parent-pid", str(os.getpid()), *args]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=full_env, cwd=str(self.workdir),
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_file.exists():
                self.port = int(port_file.read_text())
                return self.port
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise ServerError(
            f"{self.name} server ({module}) did not start within {timeout:.0f} s; "
            f"log {self.log}: {_tail(self.log)}"
        )

    def wait_http(self, url: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                break
            try:
                with opener.open(url, timeout=5) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = exc
            time.sleep(0.05)
        raise ServerError(
            f"{self.name} server at {url} not answering within {timeout:.0f} s ({last}); "
            f"log {self.log}: {_tail(self.log)}"
        )

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        stop_process(proc)


def stop_process(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """Terminate ``proc`` (kill it after ``timeout`` seconds); nothing if it has ended.

    Examples
    --------
    >>> stop_process(None)
    """
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


class _StatsMixin:
    """Request counters at ``/__stats``, and the life cycle of a one-child-process server."""

    url: str
    _dir: Path | None = None
    _child: _ChildServer | None = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self):  # pragma: no cover - each server defines it
        raise NotImplementedError

    def _launch(self, name: str, module: str, args: list[str]) -> str:
        """Start ``module`` in a child process; return ``http://127.0.0.1:<port>``."""
        atexit.register(self.stop)
        self._dir = Path(tempfile.mkdtemp(prefix=f"xsits-{name}-"))
        self._child = _ChildServer(name, self._dir)
        try:
            base = f"http://127.0.0.1:{self._child.start(module, args)}"
            self._child.wait_http(base + "/__stats")
        except BaseException:
            self.stop()
            raise
        return base

    def stop(self) -> None:
        """Stop the server process and remove its scratch directory (idempotent)."""
        atexit.unregister(self.stop)
        if self._child is not None:
            self._child.stop()
            self._child = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _base(self) -> str:
        return self.url.rstrip("/")

    def stats(self) -> dict[str, Any]:
        return _http_json(self._base() + "/__stats")

    def reset_stats(self) -> None:
        """Set every request counter back to zero."""
        _http_json(self._base() + "/__stats/reset")


# --------------------------------------------------------------------------- STAC API


class PgstacServer(_StatsMixin):
    """A real STAC API: stac-fastapi-pgstac on a private PostgreSQL + PostGIS cluster.

    On start: ``initdb`` in a temporary directory (as the ``postgres`` system
    user when running as root), ``pg_ctl start`` on a free 127.0.0.1 port with
    durability switched off (``fsync=off``: throw-away data), ``CREATE DATABASE
    pgstac``, ``pypgstac`` migration, then uvicorn serving
    ``stac_fastapi.pgstac.app:create_app`` behind a request-counting middleware
    in a child process configured by ``PGHOST``/``PGPORT``/``PGUSER``/
    ``PGPASSWORD``/``PGDATABASE``.  All extensions are enabled (``query``,
    ``filter`` (CQL2), ``sortby``, ``fields``, paging).  On stop: uvicorn
    terminated, ``pg_ctl stop -m fast``, directory removed.

    Parameters
    ----------
    collection : dict, optional
        A STAC collection to load once started.
    items : list of dict, optional
        Items to load with ``collection``.
    startup_timeout : float
        Seconds to wait for each of PostgreSQL and the API.
    api_hydrate : bool
        Hydrate items in the API (stac-fastapi-pgstac's ``USE_API_HYDRATE``: PostgreSQL
        returns pgstac's dehydrated items, Python merges in the collection's
        ``item_assets``) rather than in PostgreSQL (the default, as deployed by default).
        Same answers; about a fifth of the server CPU per returned item.

    Attributes
    ----------
    url : str
        Root of the API, no trailing slash, e.g. ``"http://127.0.0.1:40123"``.
    dsn : str
        libpq connection string of the pgstac database.
    startup_seconds : float
        Wall time ``start()`` took.

    Examples
    --------
    >>> import pystac_client
    >>> from xsits.demo import demo_world
    >>> world = demo_world()
    >>> with PgstacServer() as api:
    ...     api.load(world.collection, world.item_dicts("http://cogs.invalid/"))
    ...     n = len(list(pystac_client.Client.open(api.url).search(
    ...         collections=["sentinel-2-l2a"], max_items=5).items()))
    ...     n, api.stats()["/search"]
    (5, 1)
    """

    def __init__(
        self,
        collection: dict | None = None,
        items: list[dict] | None = None,
        *,
        startup_timeout: float = 60.0,
        api_hydrate: bool = False,
    ) -> None:
        self.url = ""
        self.dsn = ""
        self.api_hydrate = api_hydrate
        self.startup_seconds = float("nan")
        self._collection = collection
        self._items = items or []
        self._timeout = startup_timeout
        self._dir: Path | None = None
        self._pgdata: Path | None = None
        self._bindir: Path | None = None
        self._pg_started = False
        self._api: _ChildServer | None = None

    # -- lifecycle
    def start(self) -> PgstacServer:
        """Create the cluster, migrate pgstac, start the API; raise ServerError on failure."""
        t0 = time.monotonic()
        ok, reason = postgres_available()
        if not ok:
            raise ServerError(reason)
        atexit.register(self.stop)
        try:
            self._start_postgres()
            self._migrate()
            self._start_api()
        except BaseException:
            self.stop()
            raise
        if self._collection is not None:
            self.load(self._collection, self._items)
        self.startup_seconds = time.monotonic() - t0
        return self

    def _run_pg(self, cmd: Sequence[str], what: str) -> None:
        res = subprocess.run(
            _as_pg_user(cmd), capture_output=True, text=True, timeout=self._timeout,
            stdin=subprocess.DEVNULL, cwd="/",
        )
        if res.returncode != 0:
            msg = (res.stderr or res.stdout).strip().replace("\n", " | ")
            raise ServerError(f"PostgreSQL {what} failed ({res.returncode}): {msg[-1500:]}")

    def _start_postgres(self) -> None:
        self._bindir = _pg_bindir()
        assert self._bindir is not None
        # /tmp rather than $TMPDIR: the postgres user must be able to reach it when we are root
        base = "/tmp" if _is_root() and os.path.isdir("/tmp") else None
        self._dir = Path(tempfile.mkdtemp(prefix="xsits-pgstac-", dir=base))
        sockdir = self._dir / "sock"
        sockdir.mkdir()
        if _is_root():
            import pwd

            pw = pwd.getpwnam(_PG_USER)
            for p in (self._dir, sockdir):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self._pgdata = self._dir / "data"
        self._run_pg(
            [self._bindir / "initdb", "-D", self._pgdata, "-U", _PG_USER, "--auth=trust",
             "-E", "UTF8", "--locale=C", "--no-sync"],
            "initdb",
        )
        last: Exception | None = None
        for _attempt in range(3):
            port = _free_port()
            opts = (
                f"-p {port} -k {sockdir} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            try:
                self._run_pg(
                    [self._bindir / "pg_ctl", "-D", self._pgdata, "-l", self._dir / "postgres.log",
                     "-w", "-t", str(int(self._timeout)), "-o", opts, "start"],
                    "pg_ctl start",
                )
            except ServerError as exc:
                last = ServerError(f"{exc}; server log: {_tail(self._dir / 'postgres.log')}")
                continue
            self._pg_started = True
            self._port = port
            break
        else:
            assert last is not None
            raise last
        import psycopg

        admin = f"postgresql://{_PG_USER}@127.0.0.1:{self._port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE pgstac")
        self.dsn = f"postgresql://{_PG_USER}:{_PG_USER}@127.0.0.1:{self._port}/pgstac"

    def _migrate(self) -> None:
        from pypgstac.db import PgstacDB
        from pypgstac.migrate import Migrate

        db = PgstacDB(dsn=self.dsn)
        try:
            Migrate(db).run_migration()
        finally:
            db.close()

    def _start_api(self) -> None:
        assert self._dir is not None
        env = {
            k: v for k, v in os.environ.items()
            if not k.startswith(("PG", "POSTGRES_", "ENABLED_EXTENSIONS", "DB_", "USE_API_HYDRATE"))
        }
        env.update(
            PGHOST="127.0.0.1", PGPORT=str(self._port), PGUSER=_PG_USER,
            PGPASSWORD=_PG_USER, PGDATABASE="pgstac",
            # older stac-fastapi-pgstac read these names
            POSTGRES_HOST_READER="127.0.0.1", POSTGRES_HOST_WRITER="127.0.0.1",
            POSTGRES_PORT=str(self._port), POSTGRES_USER=_PG_USER, POSTGRES_PASS=_PG_USER,
            POSTGRES_DBNAME="pgstac", DB_MIN_CONN_SIZE="1", DB_MAX_CONN_SIZE="20",
            USE_API_HYDRATE=str(self.api_hydrate).lower(),
        )
        self._api = _ChildServer("stac-api", self._dir)
        port = self._api.start("xsits.testing._stac_app", [], env=env, timeout=self._timeout)
        self.url = f"http://127.0.0.1:{port}"
        self._api.wait_http(self.url + "/", timeout=self._timeout)
        self.reset_stats()

    def stop(self) -> None:
        """Stop uvicorn and PostgreSQL and delete the cluster directory (idempotent)."""
        atexit.unregister(self.stop)
        if self._api is not None:
            self._api.stop()
            self._api = None
        if self._pg_started and self._bindir is not None and self._pgdata is not None:
            try:
                self._run_pg(
                    [self._bindir / "pg_ctl", "-D", self._pgdata, "-m", "fast", "-w", "stop"],
                    "pg_ctl stop",
                )
            except (ServerError, subprocess.TimeoutExpired):
                pass
            self._pg_started = False
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    # -- data and counters
    def load(
        self,
        collection: dict,
        items: Iterable[dict] = (),
        *,
        chunk: int = 500,
        queryables: bool = True,
    ) -> None:
        """Insert or update a collection and its items (pgstac ``upsert_*`` SQL functions).

        With ``queryables``, every scalar item property not yet registered becomes a
        pgstac queryable typed from the data (pgstac's ``missing_queryables``), as
        real deployments do: without it pgstac compares and sorts unregistered
        properties as text (``sortby`` on ``eo:cloud_cover`` would put 100 before 11).
        The database is then analyzed, so the first searches plan with statistics of the
        new rows.

        Parameters
        ----------
        collection : dict
            STAC collection JSON.
        items : iterable of dict
            STAC items; their ``collection`` field is set to the collection id.
        chunk : int
            Items sent per SQL call.
        queryables : bool
            Register the items' scalar properties as typed queryables.

        Examples
        --------
        >>> from xsits.demo import demo_world
        >>> world = demo_world()
        >>> with PgstacServer() as api:
        ...     api.load(world.collection, world.item_dicts("http://cogs.invalid/"))
        ...     collection = world.collection["id"]
        ...     api.url.startswith("http://127.0.0.1:"), collection
        (True, 'sentinel-2-l2a')
        """
        import psycopg

        if not self.dsn:
            raise ServerError("PgstacServer.load called before start(); use a with block")
        cid = collection["id"]
        batch: list[dict] = []
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("SET search_path TO pgstac, public")
            conn.execute("SELECT upsert_collection(%s::jsonb)", [json.dumps(collection)])
            for item in items:
                batch.append({**item, "collection": cid})
                if len(batch) >= chunk:
                    conn.execute("SELECT upsert_items(%s::jsonb)", [json.dumps(batch)])
                    batch = []
            if batch:
                conn.execute("SELECT upsert_items(%s::jsonb)", [json.dumps(batch)])
            if queryables:
                rows = conn.execute(
                    "SELECT name, definition FROM missing_queryables(%s, 100, 10)", [cid]
                ).fetchall()
                for name, definition in rows:
                    if (definition or {}).get("type") in ("number", "integer", "string", "boolean"):
                        conn.execute(
                            "SELECT upsert_queryable(%s, %s::jsonb, NULL, NULL, %s)",
                            [name, json.dumps(definition), [cid]],
                        )
            # planner statistics now, not when autovacuum gets to the fresh rows (mid-search)
            conn.execute("ANALYZE")

    def stats(self) -> dict[str, int]:
        """Return the requests received by the API since start/reset, by URL path.

        Returns
        -------
        dict of str to int
            e.g. ``{"/search": 3, "/collections": 1}``; ``/__stats`` itself is not counted.

        Examples
        --------
        >>> import urllib.request
        >>> with PgstacServer() as api:
        ...     _ = urllib.request.urlopen(api.url + "/").read()
        ...     api.stats()
        {'/': 1}
        """
        return super().stats()


# --------------------------------------------------------------------------- COG server


class CogServer(_StatsMixin):
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
    ) -> None:
        self.root = Path(root)
        self.latency_ms = latency_ms
        self.fault_rate = fault_rate
        self.seed = seed
        self.max_consecutive_faults = max_consecutive_faults
        self.throttle = (throttle_rate, throttle_seconds, retry_after)
        self.sas_lifetime = sas_lifetime
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
             "--sas-lifetime", str(self.sas_lifetime)],
        )
        self.url = base + "/"
        return self

    @property
    def sas_url(self) -> str:
        """The SAS token endpoint (``{sas_url}/{account}/{container}``), with ``sas_lifetime``."""
        return self._base() + "/__sas/token"

    def rotate_sas(self) -> None:
        """Revoke every SAS token handed out so far (the next reads answer 403)."""
        _http_json(self._base() + "/__sas/rotate")

    def set_fault(self, path: str, kind: str | int, times: int = 1) -> None:
        """Fail the next ``times`` requests of ``path`` (-1: every one) with ``kind``.

        ``kind``: an HTTP status (``404``, ``403``, ``500``...), ``"drop"`` (the connection
        closes without an answer) or ``"truncate"`` (half of the body, then the connection
        closes). ``path`` is relative to :attr:`url` (``"a/b.tif"``).

        Examples
        --------
        >>> cogs.set_fault("T31UFQ/B04.tif", 500, times=1)  # doctest: +SKIP
        """
        from urllib.parse import urlencode

        query = urlencode({"path": "/" + path.lstrip("/"), "kind": str(kind), "times": times})
        _http_json(self._base() + "/__faults?" + query)

    def clear_faults(self) -> None:
        """Forget every fault set by :meth:`set_fault`."""
        _http_json(self._base() + "/__faults/clear")

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


# --------------------------------------------------------------------------- fault proxy


class FaultProxy(_StatsMixin):
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
        port = _free_port()
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
        import boto3

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
