"""Launching the local test servers: one child process each, waited for, counted, stopped.

Every server of :mod:`xsits.testing.servers` and :mod:`xsits.testing.pgstac` runs a
launcher module of this package (``_cog_app``, ``_proxy_app``, ``_stac_app``) as a child
process on 127.0.0.1 (no GIL contention with the client under test), with no HTTP proxy in
its environment; it writes its port to a file once it listens.

Owns: :class:`ChildServer` (start one launcher, wait for its port and for HTTP, stop it),
:class:`StatsMixin` (a server's life cycle as a context manager and its request counters at
``/__stats``), :func:`stop_process`, :class:`ServerError`, and the small helpers the servers
share (:func:`http_json`, :func:`free_port`, :func:`log_tail`).
Must not: know what a server serves.

Examples
--------
>>> 1024 <= free_port() <= 65535
True
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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from xsits.errors import XsitsError
from xsits.testing._child import bind_free_socket

__all__ = ["ChildServer", "ServerError", "StatsMixin", "free_port", "http_json", "log_tail",
           "stop_process"]

_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


class ServerError(XsitsError, RuntimeError):
    """A local test server could not start (missing PostgreSQL, port clash, crash)."""


def http_json(url: str, method: str = "GET", timeout: float = 10.0) -> Any:
    """GET (or ``method``) ``url`` of a local server, bypassing any proxy; its JSON answer."""
    req = urllib.request.Request(url, method=method)
    # bypass any *_proxy environment variables: these servers are local
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def free_port() -> int:
    """A TCP port of 127.0.0.1 free a moment ago."""
    s = bind_free_socket()
    port = s.getsockname()[1]
    s.close()
    return port


def log_tail(path: Path, n: int = 20) -> str:
    """The last ``n`` lines of a server's log as one line ("" when it cannot be read)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return " | ".join(lines[-n:])


class ChildServer:
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
        """Run launcher ``module`` with ``args``; its port once it listens (``ServerError``)."""
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
            f"log {self.log}: {log_tail(self.log)}"
        )

    def wait_http(self, url: str, timeout: float = 30.0) -> None:
        """Wait until ``url`` answers 200 (``ServerError`` after ``timeout`` s or a crash)."""
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
            f"log {self.log}: {log_tail(self.log)}"
        )

    def stop(self) -> None:
        """Stop the process (idempotent)."""
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


class StatsMixin:
    """Request counters at ``/__stats``, and the life cycle of a one-child-process server."""

    url: str
    _dir: Path | None = None
    _child: ChildServer | None = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self):  # pragma: no cover - each server defines it
        """Start the server; return ``self``."""
        raise NotImplementedError

    def _launch(self, name: str, module: str, args: list[str]) -> str:
        """Start ``module`` in a child process; return ``http://127.0.0.1:<port>``."""
        atexit.register(self.stop)
        self._dir = Path(tempfile.mkdtemp(prefix=f"xsits-{name}-"))
        self._child = ChildServer(name, self._dir)
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
        """The server's request counters."""
        return http_json(self._base() + "/__stats")

    def reset_stats(self) -> None:
        """Set every request counter back to zero."""
        http_json(self._base() + "/__stats/reset")
