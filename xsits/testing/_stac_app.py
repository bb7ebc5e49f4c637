"""Launcher: stac-fastapi-pgstac behind a request-counting ASGI middleware.

Run as ``python xsits/testing/_stac_app.py --port-file FILE``; the database is
read from the ``PGHOST``/``PGPORT``/``PGUSER``/``PGPASSWORD``/``PGDATABASE``
environment variables (stac-fastapi-pgstac 7.x ``PostgresSettings``).  The
server binds a free port on 127.0.0.1 and writes it to ``FILE``.

Request counts by path are served, uncounted, at ``/__stats`` (GET) and cleared
by ``/__stats/reset``.  Used by :class:`xsits.testing.pgstac.PgstacServer`.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Any

if __package__:
    from ._child import bind_free_socket, watch_parent, write_port_file
else:  # run as a script: do not import the (heavy) xsits package
    from _child import bind_free_socket, watch_parent, write_port_file  # type: ignore

STATS_PATH = "/__stats"


class CountingMiddleware:
    """Pure ASGI middleware counting HTTP requests by path.

    Parameters
    ----------
    app : ASGI application
        The wrapped application.

    Examples
    --------
    >>> async def app(scope, receive, send): ...
    >>> CountingMiddleware(app).counts
    Counter()
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.counts: Counter[str] = Counter()

    async def _json(self, send: Any, payload: dict) -> None:
        body = json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Count the request (unless it asks for the counts) and pass it on."""
        if scope["type"] == "http":
            path = scope["path"]
            if path == STATS_PATH:
                return await self._json(send, dict(self.counts))
            if path == STATS_PATH + "/reset":
                self.counts.clear()
                return await self._json(send, {})
            self.counts[path] += 1
        await self.app(scope, receive, send)


def main(argv: list[str] | None = None) -> None:
    """Start uvicorn on a free 127.0.0.1 port and write the port to ``--port-file``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--parent-pid", type=int, default=0)
    args = parser.parse_args(argv)

    # the test extra, imported in the server's own process only
    import uvicorn
    from stac_fastapi.pgstac.app import create_app

    watch_parent(args.parent_pid)
    app = CountingMiddleware(create_app())
    sock = bind_free_socket()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    write_port_file(args.port_file, sock.getsockname()[1])
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
