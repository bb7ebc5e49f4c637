"""The one retry policy of every network call (STAC API, COG reads, Intake).

Owns: which failures are worth another try (HTTP 408 / 429 / 5xx, timeouts, dropped
connections, truncated bodies) and the backoff between tries. A client fault (HTTP 400, 401,
403, 404, 422...) is never retried: it fails at once with the server's own message.
Must not: know about STAC, COGs or cubes; callers say what they were doing in ``what``.

Examples
--------
>>> calls = []
>>> def flaky():
...     calls.append(1)
...     if len(calls) < 3:
...         raise TransientError("HTTP 503 from http://127.0.0.1/x.tif")
...     return "ok"
>>> call(flaky, what="reading x.tif", policy=RetryPolicy(backoff=0))
'ok'
>>> len(calls)
3
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from xsits.errors import XsitsError

T = TypeVar("T")
log = logging.getLogger(__name__)

#: HTTP statuses worth another try: the server is busy or failing, not the request wrong.
RETRY_STATUSES: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504})


class TransientError(XsitsError, OSError):
    """A failure worth retrying (busy server, timeout, dropped connection, short body)."""


class ClientFaultError(XsitsError, OSError):
    """The server refused the request itself (HTTP 4xx other than 408 / 425 / 429).

    Attributes
    ----------
    status
        The HTTP status code.
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RetryPolicy:
    """How many times a network call is tried, and how long to wait between tries.

    Parameters
    ----------
    attempts
        Tries in all (1: no retry). Default 5.
    backoff
        Seconds before the second try; doubled before each next one. Default 0.2.
    max_delay
        Longest wait between two tries, in seconds. Default 5.

    Examples
    --------
    >>> RetryPolicy(attempts=3, backoff=0.5).delays()
    [0.5, 1.0]
    """

    attempts: int = 5
    backoff: float = 0.2
    max_delay: float = 5.0

    def delays(self) -> list[float]:
        """The waits before the 2nd, 3rd... tries."""
        return [min(self.max_delay, self.backoff * 2**k) for k in range(self.attempts - 1)]


_STATUS_TEXT = re.compile(
    r"\b(?:HTTP(?: response| error)?(?: code)?|status(?: code)?)[ :=]*([1-5]\d\d)\b", re.I)


def status_of(err: BaseException) -> int | None:
    """The HTTP status an exception carries, if any (requests, pystac-client, obstore, ours).

    Examples
    --------
    >>> status_of(ClientFaultError("HTTP 404", 404))
    404
    >>> status_of(ValueError("no status")) is None
    True
    """
    for attr in ("status", "status_code"):
        value = getattr(err, attr, None)
        if isinstance(value, int):
            return value
    response = getattr(err, "response", None)
    value = getattr(response, "status_code", None)
    if isinstance(value, int):
        return value
    match = _STATUS_TEXT.search(str(err))
    return int(match.group(1)) if match else None


def is_transient(err: BaseException) -> bool:
    """Whether ``err`` is worth another try under :data:`RETRY_STATUSES`.

    Examples
    --------
    >>> is_transient(TransientError("HTTP 503")), is_transient(ClientFaultError("x", 404))
    (True, False)
    >>> is_transient(TimeoutError("read timed out"))
    True
    """
    if isinstance(err, ClientFaultError):
        return False
    if isinstance(err, TransientError):
        return True
    status = status_of(err)
    if status is not None:
        return status in RETRY_STATUSES
    return isinstance(err, (TimeoutError, ConnectionError)) or type(err).__name__ in {
        "ConnectionError", "Timeout", "ReadTimeout", "ConnectTimeout", "ChunkedEncodingError",
        "IncompleteRead", "ProtocolError", "RemoteDisconnected"}


def call(
    fn: Callable[[], T],
    *,
    what: str,
    policy: RetryPolicy | None = None,
    transient: Callable[[BaseException], bool] = is_transient,
    before_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """Call ``fn()`` until it succeeds, retrying transient failures with backoff.

    Parameters
    ----------
    fn
        The network call, without arguments.
    what
        What the call does, for the log (e.g. ``"reading B04 of S2A_..."``).
    policy
        Tries and backoff. Default: the options' (:func:`xsits.get_options`) or
        :class:`RetryPolicy`'s defaults.
    transient
        Which failures to retry. Default :func:`is_transient`.
    before_retry
        Called with the failure before each retry (e.g. to forget cached bytes).

    Returns
    -------
    object
        What ``fn`` returned.

    Raises
    ------
    Exception
        The last failure, once the tries are used up, or a non-transient one at once.

    Examples
    --------
    >>> call(lambda: 42, what="answering")
    42
    """
    policy = policy or default_policy()
    delays = policy.delays()
    for attempt in range(policy.attempts):
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - classified, then re-raised
            if attempt >= len(delays) or not transient(err):
                raise
            log.info("%s failed (attempt %d of %d: %s); retrying in %.2f s", what,
                     attempt + 1, policy.attempts, err, delays[attempt])
            if before_retry is not None:
                before_retry(err)
            time.sleep(delays[attempt])
    raise AssertionError("unreachable")  # pragma: no cover


def default_policy() -> RetryPolicy:
    """The retry policy in force (``xsits.set_options(retries=...)``, else the defaults).

    Examples
    --------
    >>> default_policy().attempts >= 1
    True
    """
    try:
        from xsits.options import get_options
    except ImportError:  # pragma: no cover - the options module is optional here
        return RetryPolicy()
    return get_options().retry
