"""The benchmark's COG server: nginx serving the world, with latency per request and counts.

The issue measured ``sits`` on "a local stac-fastapi-pgstac + nginx world"; a static file
server in C is also what a COG bucket looks like to a client: it costs the 2-core machine
almost no CPU, where the test suite's threaded Python server (:class:`xsits.testing.servers.
CogServer`) spends ~0.4 ms of CPU per request, time the contenders then do not have.

- ``Range`` requests are served by nginx itself (``sendfile``, HTTP/1.1 keep-alive).
- Latency: ``access_by_lua_block { ngx.sleep(s) }`` (non-blocking) before each answer, so a
  request costs ``latency_ms`` more, like :class:`CogServer`'s ``latency_ms``.
- Counts: every request is one line of the access log; :meth:`stats` reads the lines since
  :meth:`reset_stats` and returns :class:`CogServer`'s keys (``requests``,
  ``range_requests``, ``bytes_served``, ``paths``...).

Needs ``nginx`` and, for latency, the Lua module: ``apt-get install nginx
libnginx-mod-http-lua`` (Debian / Ubuntu). :func:`available` says whether they are there.
"""

from __future__ import annotations

import atexit
import collections
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

LUA_MODULES = ("/usr/lib/nginx/modules/ndk_http_module.so",
               "/usr/lib/nginx/modules/ngx_http_lua_module.so")
INSTALL_HINT = "apt-get install nginx libnginx-mod-http-lua"

_CONF = """\
daemon off;
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
{modules}
events {{ worker_connections 8192; }}
http {{
  log_format xs '$request_method $status $body_bytes_sent "$http_range" $uri';
  access_log {dir}/access.log xs;
  sendfile on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  default_type application/octet-stream;
  client_body_temp_path {dir}/tmp;
  proxy_temp_path {dir}/tmp;
  fastcgi_temp_path {dir}/tmp;
  uwsgi_temp_path {dir}/tmp;
  scgi_temp_path {dir}/tmp;
  server {{
    listen 127.0.0.1:{port};
    root {root};
    location / {{ {delay} }}
  }}
}}
"""


def available(latency: bool = False) -> tuple[bool, str]:
    """``(True, "")`` when nginx (and for ``latency`` its Lua module) can be used."""
    if shutil.which("nginx") is None:
        return False, f"nginx is not installed ({INSTALL_HINT})"
    if latency and not all(Path(m).exists() for m in LUA_MODULES):
        return False, f"nginx's Lua module is not installed ({INSTALL_HINT})"
    return True, ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NginxCogServer:
    """nginx serving ``root`` on 127.0.0.1, ``latency_ms`` added per request.

    The same interface as :class:`xsits.testing.servers.CogServer` for what the benchmark
    uses: ``url``, ``start``/``stop`` (or ``with``), ``stats()`` and ``reset_stats()``.
    """

    def __init__(self, root: str | os.PathLike, latency_ms: float = 0, workers: int = 1) -> None:
        self.root = Path(root).resolve()
        self.latency_ms = latency_ms
        self.workers = workers
        self.url = ""
        self._dir: Path | None = None
        self._proc: subprocess.Popen | None = None
        self._offset = 0

    def __enter__(self) -> NginxCogServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> NginxCogServer:
        ok, why = available(self.latency_ms > 0)
        if not ok:
            raise RuntimeError(why)
        self._dir = Path(tempfile.mkdtemp(prefix="xsits-nginx-"))
        (self._dir / "tmp").mkdir()
        port = _free_port()
        delay = (f"access_by_lua_block {{ ngx.sleep({self.latency_ms / 1000:.4f}) }}"
                 if self.latency_ms > 0 else "")
        modules = "\n".join(f"load_module {m};" for m in LUA_MODULES) if delay else ""
        conf = self._dir / "nginx.conf"
        conf.write_text(_CONF.format(workers=self.workers, dir=self._dir, modules=modules,
                                     port=port, root=self.root, delay=delay))
        atexit.register(self.stop)
        self._proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(self._dir)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}/"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + 20
        while True:
            try:
                opener.open(self.url + "__ping", timeout=2)
            except urllib.error.HTTPError:  # 404: nginx answers
                break
            except OSError as err:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    log = (self._dir / "error.log")
                    text = log.read_text()[-800:] if log.exists() else ""
                    self.stop()
                    raise RuntimeError(f"nginx did not start ({err}): {text}") from err
                time.sleep(0.05)
        self.reset_stats()
        return self

    def stop(self) -> None:
        atexit.unregister(self.stop)
        from xsits.testing.launch import stop_process

        proc, self._proc = self._proc, None
        stop_process(proc)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _log(self) -> Path:
        assert self._dir is not None, "the server is not running"
        return self._dir / "access.log"

    def reset_stats(self) -> None:
        """Count from now on."""
        time.sleep(0.05)  # lines of requests answered just before
        self._offset = self._log().stat().st_size if self._log().exists() else 0

    def stats(self) -> dict[str, Any]:
        """Counters since :meth:`reset_stats`, with :class:`CogServer`'s keys."""
        time.sleep(0.05)
        with open(self._log(), "rb") as fh:
            fh.seek(self._offset)
            lines = fh.read().decode(errors="replace").splitlines()
        out: dict[str, Any] = {"requests": 0, "get": 0, "head": 0, "range_requests": 0,
                               "bytes_served": 0, "not_found": 0}
        paths: collections.Counter[str] = collections.Counter()
        for line in lines:
            method, status, nbytes, rest = line.split(" ", 3)
            rng, _, uri = rest.rpartition(" ")
            if uri == "/__ping":
                continue
            out["requests"] += 1
            if method in ("GET", "HEAD"):
                out[method.lower()] += 1
            out["range_requests"] += rng not in ('"-"', '""')
            out["bytes_served"] += int(nbytes)
            out["not_found"] += status == "404"
            paths[uri] += 1
        out["paths"] = dict(paths)
        return out
