"""A real local STAC API: stac-fastapi-pgstac on a private PostgreSQL + PostGIS cluster.

:class:`PgstacServer` creates a cluster with ``initdb`` in a temporary directory (as the
``postgres`` user when run as root), migrates pgstac into it, and starts the API (uvicorn)
in a child process (:mod:`xsits.testing.launch`). :func:`postgres_available` says whether
this machine can, and why not.

Owns: finding PostgreSQL's binaries and PostGIS, the cluster's life cycle, pgstac's
migration, loading collections and items, the API's process.
Must not: serve files (:class:`xsits.testing.servers.CogServer`) or generate items.

Examples
--------
>>> ok, why = postgres_available()
>>> isinstance(ok, bool) and isinstance(why, str)
True
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from xsits.testing.launch import ChildServer, ServerError, StatsMixin, free_port, log_tail

__all__ = ["PgstacServer", "postgres_available"]

_PG_USER = "postgres"


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
    >>> from xsits.testing.pgstac import postgres_available
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
        import pwd  # POSIX only

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


class PgstacServer(StatsMixin):
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
        self._api: ChildServer | None = None

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
            import pwd  # POSIX only

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
            port = free_port()
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
                last = ServerError(f"{exc}; server log: {log_tail(self._dir / 'postgres.log')}")
                continue
            self._pg_started = True
            self._port = port
            break
        else:
            assert last is not None
            raise last
        import psycopg  # the test extra

        admin = f"postgresql://{_PG_USER}@127.0.0.1:{self._port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE pgstac")
        self.dsn = f"postgresql://{_PG_USER}:{_PG_USER}@127.0.0.1:{self._port}/pgstac"

    def _migrate(self) -> None:
        from pypgstac.db import PgstacDB  # the test extra
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
        self._api = ChildServer("stac-api", self._dir)
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
        import psycopg  # the test extra

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
