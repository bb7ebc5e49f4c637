"""Small helpers shared by the server launcher modules run as child processes."""

from __future__ import annotations

import os
import socket
import threading
import time


def bind_free_socket(host: str = "127.0.0.1", backlog: int = 512) -> socket.socket:
    """Bind a listening TCP socket on a free port of ``host``.

    Examples
    --------
    >>> s = bind_free_socket()
    >>> s.getsockname()[1] > 0
    True
    >>> s.close()
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit TCP_NODELAY (Linux): servers writing headers and body
    # separately (uvicorn, http.server) otherwise stall ~40 ms per keep-alive request
    # on Nagle + delayed ACK
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, 0))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def write_port_file(path: str, port: int) -> None:
    """Atomically write ``port`` to ``path`` (temp name then ``os.replace``)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(str(port))
    os.replace(tmp, path)


def watch_parent(parent_pid: int, interval: float = 1.0) -> None:
    """Exit this process when ``parent_pid`` is gone (no orphan servers after a crash)."""
    if parent_pid <= 0:
        return

    def _watch() -> None:
        while True:
            time.sleep(interval)
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:
                pass

    threading.Thread(target=_watch, name="watch-parent", daemon=True).start()
