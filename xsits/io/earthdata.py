"""NASA Earthdata: the bearer token sent to LP DAAC's data hosts when their files are read.

NASA's HLS items (CMR-STAC ``LPCLOUD``, ``stac="nasa-lpcloud"``) point to files on
``https://data.lpdaac.earthdatacloud.nasa.gov/lp-prod-protected/...``, readable with an
Earthdata Login bearer token (generate one at https://urs.earthdata.nasa.gov, "Generate
Token"; it lives 60 days). Set it in the environment as ``EARTHDATA_TOKEN``: every read of a
file on those hosts, by xsits' own reader (:mod:`xsits.io.fetch`) or by GDAL
(:mod:`xsits.io.reader`), sends ``Authorization: Bearer <token>``; no other host ever gets
it. LP DAAC answers with a redirect to a signed URL on another host (S3 / CloudFront): the
token is not sent there (reqwest, under obstore, and GDAL >= 3.10 with
``CPL_VSIL_CURL_AUTHORIZATION_HEADER_ALLOWED_IF_REDIRECT=IF_SAME_HOST`` drop the header on a
redirect to another host; S3 refuses a request that carries both).

Owns: which hrefs get the token (:func:`is_earthdata`: hosts of the option
``earthdata_hosts``, default :data:`xsits.options.EARTHDATA_HOSTS`), the token
(:func:`token`, ``$EARTHDATA_TOKEN``, read when a file is opened), the headers of xsits' own
requests (:func:`headers`) and GDAL's settings for its reads (:func:`gdal_env`), entered
only where they stay one thread's own (:func:`with_gdal_token`).
Must not: put the token in any message, log or attribute (hrefs carry no token; errors name
the variable, never its value).

Examples
--------
>>> is_earthdata("https://data.lpdaac.earthdatacloud.nasa.gov/lp-prod-protected/a/B04.tif")
True
>>> is_earthdata("https://sentinel2l2a01.blob.core.windows.net/c/B04.tif")
False
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import rasterio

from xsits._common import ContextThreadPool
from xsits.options import get_options

__all__ = ["TOKEN_ENV", "gdal_env", "headers", "is_earthdata", "token", "with_gdal_token"]

T = TypeVar("T")

#: The environment variable holding the Earthdata Login bearer token.
TOKEN_ENV = "EARTHDATA_TOKEN"


def token() -> str | None:
    """The Earthdata bearer token (``$EARTHDATA_TOKEN``), or None when unset."""
    value = os.environ.get(TOKEN_ENV, "").strip()
    return value or None


def is_earthdata(href: str) -> bool:
    """Whether ``href`` is on a host that gets the token (option ``earthdata_hosts``).

    A host is given as ``name`` (any port) or ``name:port``.

    Examples
    --------
    >>> import xsits
    >>> with xsits.set_options(earthdata_hosts=("127.0.0.1:8001",)):
    ...     is_earthdata("http://127.0.0.1:8001/lp-prod-protected/a.tif")
    True
    >>> is_earthdata("s3://lp-prod-protected/a.tif")
    False
    """
    parts = urlsplit(href)
    if parts.scheme not in ("http", "https"):
        return False
    hosts = {h.lower() for h in get_options().earthdata_hosts}
    return parts.netloc.lower() in hosts or (parts.hostname or "").lower() in hosts


def headers(href: str) -> dict[str, str]:
    """The headers of a request of ``href``: the bearer token on Earthdata hosts, else none.

    Examples
    --------
    >>> headers("https://example.com/a.tif")
    {}
    """
    value = token() if is_earthdata(href) else None
    return {"Authorization": f"Bearer {value}"} if value else {}


def gdal_env(href: str) -> dict[str, str]:
    """GDAL settings of a read of ``href``: the token's header on Earthdata hosts, else none.

    The header goes with this file's requests only (:func:`xsits.io.reader` enters them
    around its GDAL reads of such files), and not with redirects to other hosts.

    Examples
    --------
    >>> gdal_env("https://example.com/a.tif")
    {}
    """
    value = token() if is_earthdata(href) else None
    if not value:
        return {}
    return {"GDAL_HTTP_HEADERS": f"Authorization: Bearer {value}",
            "CPL_VSIL_CURL_AUTHORIZATION_HEADER_ALLOWED_IF_REDIRECT": "IF_SAME_HOST"}


def with_gdal_token(href: str, read: Callable[[], T]) -> T:
    """``read()`` (a GDAL read of ``href``) with :func:`gdal_env`'s settings, for this read only.

    rasterio keeps the GDAL settings of a ``rasterio.Env`` entered on a worker thread that
    thread's own, but sets those of the main thread for the whole process, where any other
    thread's GDAL read would send the token to its own host. On the main thread, a read that
    needs the token therefore runs on a thread of its own; without a token it runs here.

    Examples
    --------
    >>> with_gdal_token("https://example.com/a.tif", lambda: "read")
    'read'
    """
    env = gdal_env(href)
    if not env:
        return read()

    def run() -> T:
        with rasterio.Env(**env):
            return read()

    if threading.current_thread() is not threading.main_thread():
        return run()
    with ContextThreadPool(1, thread_name_prefix="xsits-earthdata") as pool:
        return pool.submit(run).result()
