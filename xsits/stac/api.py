"""The HTTP of STAC API requests: one retry policy, client faults with the server's message.

Owns: :class:`RetryingStacApiIO`, pystac-client's ``StacApiIO`` with every request through
:func:`xsits.io.retry.call` (HTTP 429 / 5xx, timeouts and dropped connections retried with the
backoff of ``xsits.get_options().retry``; any other 4xx raised at once as
:class:`~xsits.errors.StacRequestError`), and turning an error answer into one redacted line.
Must not: build searches or know about queries, presets or items (:mod:`xsits.stac.search` does).

Examples
--------
>>> server_message('{"detail": [{"loc": ["body", "limit"], "msg": "too large"}]}')
'limit: too large'
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO

from xsits._common import one_line, redact, shorten
from xsits.errors import SearchError, StacRequestError, TransientError
from xsits.io import retry

#: Seconds an API request may take before it counts as timed out (and is retried).
REQUEST_TIMEOUT = 60


def server_message(text: str) -> str:
    """The explanation in an error answer: FastAPI's ``detail``, ``description``, ``message``.

    Examples
    --------
    >>> server_message('{"code": "NotFound", "description": "no collection x"}')
    'no collection x'
    >>> server_message("Bad Gateway")
    'Bad Gateway'
    """
    try:
        doc = json.loads(text)
    except ValueError:
        return " ".join(text.split()) or "(no message)"
    if not isinstance(doc, dict):
        return " ".join(str(doc).split())
    detail = doc.get("detail", doc.get("description", doc.get("message", doc.get("code"))))
    if isinstance(detail, list):  # FastAPI / pydantic validation errors
        parts = []
        for d in detail:
            if isinstance(d, dict):
                loc = ".".join(str(x) for x in (d.get("loc") or ())[1:])
                parts.append(f"{loc}: {d.get('msg')}" if loc else str(d.get("msg")))
            else:
                parts.append(str(d))
        return "; ".join(parts)
    return " ".join(str(detail if detail is not None else doc).split())


def _request_error(err: APIError, href: str) -> Exception:
    """pystac-client's ``APIError`` as what :mod:`xsits.io.retry` and the user need to know."""
    where = redact(href)
    status = getattr(err, "status_code", None)
    if status is None:  # no answer: pystac-client wrapped requests' own error
        cause = err.__context__ or err
        reason = re.search(r"\[Errno -?\d+\][^'\")]*|Read timed out|timed out", str(cause))
        text = f"no answer from {where}: {reason.group(0) if reason else one_line(cause)}"
        return TransientError(text) if retry.is_transient(cause) else SearchError(text)
    message = shorten(redact(server_message(str(err))), 400)
    if status in retry.RETRY_STATUSES:
        return TransientError(f"STAC API {where} answered HTTP {status}: {message}",
                                    retry_after=retry.retry_after_of(err))
    return StacRequestError(f"STAC API {where} refused the request (HTTP {status}): {message}",
                            status)


class RetryingStacApiIO(StacApiIO):
    """pystac-client's HTTP, every request through :func:`xsits.io.retry.call`.

    HTTP 429 / 5xx, timeouts and dropped connections are retried with the backoff of
    ``xsits.get_options().retry``; any other 4xx raises
    :class:`~xsits.errors.StacRequestError` at once with the server's own message.

    Examples
    --------
    >>> import xsits
    >>> io = RetryingStacApiIO(timeout=5)
    >>> with xsits.set_options(retries=1):  # one try: nothing listens on port 1
    ...     io.request("http://127.0.0.1:1/")
    Traceback (most recent call last):
    xsits.errors.TransientError: no answer from http://127.0.0.1:1/: ...
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_retries=None, **kwargs)

    def request(self, href: str, method: str | None = None,
                headers: dict[str, str] | None = None,
                parameters: dict[str, Any] | None = None) -> str:
        """One request, retried when the failure is transient (see the class)."""

        def once() -> str:
            try:
                return StacApiIO.request(self, href, method, headers, parameters)
            except APIError as err:
                raise _request_error(err, href) from err

        return retry.call(once, what=f"STAC request {redact(href)}",
                          transient=lambda e: isinstance(e, TransientError),
                          host=urlsplit(href).netloc or None)
