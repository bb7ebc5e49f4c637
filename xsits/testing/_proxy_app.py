"""Launcher: an aiohttp reverse proxy injecting HTTP errors and latency.

Run as ``python xsits/testing/_proxy_app.py --target URL --port-file FILE``.
Absolute links to the target in JSON bodies (and ``Location`` headers) are
rewritten to the proxy, so paging ``next`` links come back through it.  Counters
are served, uncounted, at ``/__stats`` and cleared by ``/__stats/reset``.  Used
by :class:`xsits.testing.servers.FaultProxy`.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

if __package__:
    from ._child import bind_free_socket, watch_parent, write_port_file
    from ._cog_app import Faults
else:  # run as a script: do not import the (heavy) xsits package
    from _child import bind_free_socket, watch_parent, write_port_file  # type: ignore
    from _cog_app import Faults  # type: ignore

STATS_PATH = "/__stats"
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
    "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding",
    "content-encoding",
}


def make_app(
    target: str,
    *,
    statuses: tuple[int, ...],
    faults: Faults,
    latency_s: float,
    self_url: list[str],
    fault_paths: tuple[str, ...] = (),
) -> web.Application:
    """Build the proxy application (``self_url[0]`` is filled once the port is known).

    With ``fault_paths``, only requests whose path starts with one of them may fail.
    """
    target = target.rstrip("/")
    counts: Counter[str] = Counter()
    by_status: Counter[str] = Counter()
    paths: Counter[str] = Counter()
    state: dict[str, Any] = {}

    async def on_startup(app: web.Application) -> None:
        state["session"] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=512),
            timeout=aiohttp.ClientTimeout(total=120),
        )

    async def on_cleanup(app: web.Application) -> None:
        await state["session"].close()

    def stats() -> dict[str, Any]:
        return {
            "requests": counts["requests"],
            "faults": counts["faults"],
            "by_status": dict(by_status),
            "paths": dict(paths),
        }

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.path == STATS_PATH:
            return web.json_response(stats())
        if request.path == STATS_PATH + "/reset":
            counts.clear()
            by_status.clear()
            paths.clear()
            return web.json_response(stats())
        counts["requests"] += 1
        paths[request.path] += 1
        if latency_s:
            await asyncio.sleep(latency_s)
        eligible = not fault_paths or request.path.startswith(fault_paths)
        kind = faults.next(tuple(str(s) for s in statuses)) if eligible else None
        if kind is not None:
            counts["faults"] += 1
            by_status[kind] += 1
            body = {"code": "InjectedFault", "description": f"xsits FaultProxy injected {kind}"}
            return web.json_response(body, status=int(kind))
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP
        )
        headers["Accept-Encoding"] = "identity"  # bodies are rewritten; skip (de)compression
        data = await request.read()
        session: aiohttp.ClientSession = state["session"]
        try:
            async with session.request(
                request.method,
                URL(target + request.raw_path, encoded=True),
                headers=headers,
                data=data or None,
                allow_redirects=False,
            ) as upstream:
                body_bytes = await upstream.read()
                status = upstream.status
                up_headers = upstream.headers
        except (TimeoutError, aiohttp.ClientError) as exc:
            by_status["502"] += 1
            return web.json_response({"code": "BadGateway", "description": str(exc)}, status=502)
        out = CIMultiDict(
            (k, v) for k, v in up_headers.items() if k.lower() not in HOP_BY_HOP
        )
        me = self_url[0]
        if "json" in up_headers.get("Content-Type", ""):
            body_bytes = body_bytes.replace(target.encode(), me.encode())
        if "Location" in out:
            out["Location"] = out["Location"].replace(target, me)
        by_status[str(status)] += 1
        return web.Response(status=status, body=body_bytes, headers=out)

    app = web.Application(client_max_size=1024**3)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def main(argv: list[str] | None = None) -> None:
    """Start the proxy on a free 127.0.0.1 port and write the port to ``--port-file``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--statuses", default="500,429")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-consecutive-faults", type=int, default=0)
    parser.add_argument("--fault-paths", default="")
    parser.add_argument("--parent-pid", type=int, default=0)
    args = parser.parse_args(argv)

    watch_parent(args.parent_pid)
    statuses = tuple(int(s) for s in args.statuses.split(",") if s.strip())
    sock = bind_free_socket()
    port = sock.getsockname()[1]
    self_url = [f"http://127.0.0.1:{port}"]
    app = make_app(
        args.target,
        statuses=statuses,
        faults=Faults(args.error_rate, args.seed, args.max_consecutive_faults),
        latency_s=args.latency_ms / 1000.0,
        self_url=self_url,
        fault_paths=tuple(p for p in args.fault_paths.split(",") if p),
    )

    async def run() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.SockSite(runner, sock)
        await site.start()
        write_port_file(args.port_file, port)
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
