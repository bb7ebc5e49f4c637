"""The one retry policy of every network call (STAC API, COG reads, Intake).

Owns: which failures are worth another try (HTTP 408 / 429 / 5xx, timeouts, dropped
connections, truncated bodies) and the wait between tries. A client fault (HTTP 400, 401,
403, 404, 422...) is never retried: it fails at once with the server's own message.
Throttling (HTTP 429 and 503) is waited out: ``Retry-After`` (seconds or an HTTP date) when
the failure carries it, else a jittered exponential backoff, tried again and again within a
time budget per call (``RetryPolicy.budget``, ``set_options(retry_budget=...)``, default
60 s) rather than a number of tries; and while a host throttles, fewer requests go to it
(:class:`HostGate`: no request starts before its ``Retry-After``, and the requests in flight
to it are halved at each throttled answer, then grow back one by one).
Must not: know about STAC, COGs or cubes; callers say what they were doing in ``what`` (and
the host they ask in ``host``).

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

import datetime as dt
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import TypeVar

from xsits.errors import ClientFaultError, TransientError
from xsits.options import RetryPolicy, get_options

T = TypeVar("T")
log = logging.getLogger(__name__)

#: HTTP statuses worth another try: the server is busy or failing, not the request wrong.
RETRY_STATUSES: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504})
#: HTTP statuses of a throttling host: waited out within the time budget.
THROTTLE_STATUSES: frozenset[int] = frozenset({429, 503})
#: Longest wait for one ``Retry-After`` or throttling backoff, seconds.
MAX_THROTTLE_WAIT = 30.0


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


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date.

    Examples
    --------
    >>> parse_retry_after("7"), parse_retry_after(None), parse_retry_after("soon")
    (7.0, None, None)
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0)
    10.0
    """
    if value is None:
        return None
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)

    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_after_of(err: BaseException) -> float | None:
    """The wait a failure carries: its ``retry_after``, or its response's ``Retry-After``.

    Examples
    --------
    >>> retry_after_of(TransientError("HTTP 429", retry_after=3.0))
    3.0
    """
    value = getattr(err, "retry_after", None)
    if isinstance(value, int | float):
        return float(value)
    headers = getattr(getattr(err, "response", None), "headers", None)
    if headers is not None:
        try:
            return parse_retry_after(headers.get("Retry-After"))
        except AttributeError:
            return None
    return None


def is_throttled(err: BaseException) -> bool:
    """Whether ``err`` is a throttling answer (HTTP 429 / 503).

    Examples
    --------
    >>> is_throttled(TransientError("HTTP 429 Too Many Requests")), is_throttled(TimeoutError())
    (True, False)
    """
    return status_of(err) in THROTTLE_STATUSES


class HostGate:
    """Fewer requests to a host while it throttles; none before its ``Retry-After``.

    Each host starts unbounded. A throttled answer closes the host until its wait is over
    and halves the requests allowed in flight (at least 1); each answer that is not throttled
    lets one more through, until the host is unbounded again (:data:`MAX_THROTTLE_WAIT`...).

    Examples
    --------
    >>> gate = HostGate()
    >>> gate.enter("h"); gate.leave("h", throttled_for=None); gate.limit("h") is None
    True
    >>> gate.enter("h"); gate.enter("h"); gate.leave("h", throttled_for=0.0)
    >>> gate.limit("h")
    1
    """

    #: Above this many requests in flight a recovering host is unbounded again.
    UNBOUNDED = 64

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._hosts: dict[str, list] = {}  # host -> [in flight, limit or None, closed until]

    def _host(self, host: str) -> list:
        return self._hosts.setdefault(host, [0, None, 0.0])

    def limit(self, host: str) -> int | None:
        """Requests allowed in flight to ``host`` now (None: unbounded)."""
        with self._cond:
            lim = self._host(host)[1]
        return None if lim is None else int(lim)

    def wait_left(self, host: str) -> float:
        """Seconds before ``host`` opens again (0 when open)."""
        with self._cond:
            return max(0.0, self._host(host)[2] - time.monotonic())

    def enter(self, host: str, deadline: float = math.inf) -> None:
        """Wait for the host to be open and below its limit, then count one request in."""
        with self._cond:
            h = self._host(host)
            while True:
                now = time.monotonic()
                wait = h[2] - now
                full = h[1] is not None and h[0] >= h[1]
                if wait <= 0 and not full:
                    break
                if now >= deadline:
                    break  # the caller's budget is spent: let it try once more
                self._cond.wait(timeout=min(max(wait, 0.05), deadline - now, 1.0))
            h[0] += 1

    def leave(self, host: str, throttled_for: float | None) -> None:
        """Count one request out; ``throttled_for``: seconds the host asked to wait."""
        with self._cond:
            h = self._host(host)
            h[0] = max(0, h[0] - 1)
            if throttled_for is not None:
                h[1] = max(1, (h[1] if h[1] is not None else h[0] + 1) // 2)
                h[2] = max(h[2], time.monotonic() + throttled_for)
            elif h[1] is not None:
                h[1] += 1
                if h[1] > self.UNBOUNDED:
                    h[1] = None
            self._cond.notify_all()


#: The gate of every host this process asks (shared by all calls).
GATE = HostGate()


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
    host: str | None = None,
) -> T:
    """Call ``fn()`` until it succeeds, retrying transient failures with backoff.

    Ordinary transient failures get ``policy.attempts`` tries with a jittered exponential
    backoff; throttling answers (HTTP 429 / 503, :func:`is_throttled`) are waited out
    (their ``Retry-After`` when known, else the jittered backoff, at most
    :data:`MAX_THROTTLE_WAIT`) as long as the call's time budget (``policy.budget``) lasts.

    Parameters
    ----------
    fn
        The network call, without arguments.
    what
        What the call does, for the log (e.g. ``"reading B04 of S2A_..."``).
    policy
        Tries, backoff and budget. Default: the options' (:func:`xsits.get_options`) or
        :class:`RetryPolicy`'s defaults.
    transient
        Which failures to retry. Default :func:`is_transient`.
    before_retry
        Called with the failure before each retry (e.g. to forget cached bytes).
    host
        The host asked: its requests wait at the process's :data:`GATE` while it throttles.

    Returns
    -------
    object
        What ``fn`` returned.

    Raises
    ------
    Exception
        The last failure, once the tries or the budget are used up, or a non-transient one
        at once.

    Examples
    --------
    >>> call(lambda: 42, what="answering")
    42
    """
    policy = policy or default_policy()
    delays = policy.delays()
    start = time.monotonic()
    deadline = start + policy.budget
    tries = throttles = 0
    while True:
        if host is not None:
            GATE.enter(host, deadline)
        try:
            result = fn()
        except Exception as err:  # noqa: BLE001 - classified, then re-raised
            retryable = transient(err)
            throttled = retryable and is_throttled(err)
            wait = None
            if throttled:
                wait = retry_after_of(err)
                if wait is None:
                    wait = policy.backoff * 2 ** min(throttles, 16) * random.uniform(0.5, 1.5)
                wait = min(wait, MAX_THROTTLE_WAIT)
                throttles += 1
            if host is not None:
                GATE.leave(host, wait)
            if not retryable:
                raise
            if not throttled:
                if tries >= len(delays):
                    raise
                wait = delays[tries] * random.uniform(0.75, 1.25)
                tries += 1
            if time.monotonic() + wait > deadline:
                raise
            log.info("%s failed (%s); retrying in %.2f s", what, err, wait)
            if before_retry is not None:
                before_retry(err)
            time.sleep(wait)
        else:
            if host is not None:
                GATE.leave(host, None)
            return result


def default_policy() -> RetryPolicy:
    """The retry policy in force (``xsits.set_options(retries=...)``, else the defaults).

    Examples
    --------
    >>> default_policy().attempts >= 1
    True
    """
    return get_options().retry
