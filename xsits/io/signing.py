"""Sign hrefs when they are read: Planetary Computer SAS tokens, refreshed before they expire.

Planetary Computer's SAS tokens live about an hour or less. Signed once, when the search ran,
every read after the expiry fails with HTTP 403. Here an href is (re-)signed each time a file
is opened for reading, with a token of this process that is refreshed before it expires; a
read answered 403 is signed with a new token and tried once more (:mod:`xsits.io.tolerate`'s
driver does both); a local or cached ItemCollection of Planetary Computer items is signed
the same way.

Owns: which hrefs need a SAS token (:func:`blob_container`: Azure Blob Storage
``https://{account}.blob.core.windows.net/{container}/...``, and path-style endpoints such as
the Azurite emulator's ``http://host/{account}/{container}/...`` on the hosts of the option
``pc_blob_hosts``); the tokens of this process per ``(account, container)``, asked of the SAS
endpoint (option ``pc_sas_url``, default ``$PC_SDK_SAS_URL`` or Planetary Computer's; the
subscription key ``$PC_SDK_SUBSCRIPTION_KEY`` is sent when set) and refreshed once less than a
quarter of their life (at most :data:`REFRESH_MARGIN` seconds) is left; :func:`sign`.
Must not: read pixels, or put a token in any message or log (hrefs are redacted).

Examples
--------
>>> blob_container("https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/a/B04.tif")
('sentinel2l2a01', 'sentinel2-l2')
>>> sign("https://example.com/a.tif")  # not Azure Blob Storage: unchanged
'https://example.com/a.tif'
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from urllib.parse import urlsplit

import requests

from xsits._common import Lru
from xsits.errors import LoadError, TransientError
from xsits.io import retry
from xsits.options import get_options

#: Planetary Computer's SAS token endpoint (``{endpoint}/{account}/{container}``).
PC_SAS_URL = "https://planetarycomputer.microsoft.com/api/sas/v1/token"
#: Azure Blob Storage's host suffix.
BLOB_DOMAIN = ".blob.core.windows.net"
#: Public accounts that are never signed (Planetary Computer's thumbnails).
PUBLIC_ACCOUNTS = frozenset({"ai4edatasetspublicassets"})
#: A token is refreshed once less than this many seconds (or a quarter of its life) is left.
REFRESH_MARGIN = 60.0

#: Containers whose tokens are kept per process (the least recently used are forgotten).
KEEP_TOKENS = 1024
#: This process's SAS tokens: (endpoint, account, container) -> (token, expiry as epoch
#: seconds, fetched at) (:func:`clear`).
TOKENS: Lru[tuple[str, float, float]] = Lru(keep=KEEP_TOKENS)


def blob_container(href: str) -> tuple[str, str] | None:
    """``(account, container)`` of an Azure Blob Storage href that needs a token, else None.

    Examples
    --------
    >>> blob_container("https://x.blob.core.windows.net/c/d/e.tif"), blob_container("/a.tif")
    (('x', 'c'), None)
    >>> import xsits
    >>> with xsits.set_options(pc_blob_hosts=("127.0.0.1:10000",)):
    ...     blob_container("http://127.0.0.1:10000/devstoreaccount1/c/e.tif")
    ('devstoreaccount1', 'c')
    """
    parts = urlsplit(href)
    if parts.scheme not in ("http", "https"):
        return None
    path = [p for p in parts.path.split("/") if p]
    host = (parts.hostname or "").lower()
    if host.endswith(BLOB_DOMAIN) and len(path) >= 2:
        account = host[: -len(BLOB_DOMAIN)]
        if account in PUBLIC_ACCOUNTS:
            return None
        return account, path[0]
    if parts.netloc in get_options().pc_blob_hosts and len(path) >= 3:
        return path[0], path[1]
    return None


def sas_endpoint() -> str:
    """The SAS token endpoint: option ``pc_sas_url``, ``$PC_SDK_SAS_URL``, else PC's.

    Examples
    --------
    >>> sas_endpoint() == (os.environ.get("PC_SDK_SAS_URL") or PC_SAS_URL)
    True
    """
    return (get_options().pc_sas_url or os.environ.get("PC_SDK_SAS_URL") or PC_SAS_URL
            ).rstrip("/")


def _fetch_token(endpoint: str, account: str, container: str) -> tuple[str, float]:
    url = f"{endpoint}/{account}/{container}"
    key = os.environ.get("PC_SDK_SUBSCRIPTION_KEY")
    headers = {"Ocp-Apim-Subscription-Key": key} if key else {}

    def once() -> requests.Response:
        resp = requests.get(url, headers=headers, timeout=30)
        if resp.status_code in retry.RETRY_STATUSES:
            raise TransientError(
                f"SAS token endpoint {endpoint} answered HTTP {resp.status_code}",
                retry_after=retry.parse_retry_after(resp.headers.get("Retry-After")))
        return resp

    resp = retry.call(once, what=f"asking {endpoint} for a SAS token",
                      host=urlsplit(url).netloc)
    if resp.status_code != 200:
        raise LoadError(f"the SAS token endpoint {endpoint} refused a token for "
                        f"{account}/{container} (HTTP {resp.status_code}); check "
                        "PC_SDK_SUBSCRIPTION_KEY or the option pc_sas_url")
    doc = json.loads(resp.text)
    expiry = dt.datetime.fromisoformat(str(doc["msft:expiry"]).replace("Z", "+00:00"))
    if expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=dt.UTC)
    return str(doc["token"]), expiry.timestamp()


def token(account: str, container: str, *, fresh: bool = False) -> str:
    """A SAS token of ``account/container``: this process's, refreshed before it expires.

    ``fresh=True`` asks for a new one (after a 403: the token was revoked or the clocks
    disagree).
    """
    endpoint = sas_endpoint()
    key = (endpoint, account, container)
    now = time.time()
    held = TOKENS.get(key)
    if held is not None and not fresh:
        value, expiry, fetched = held
        if expiry - now > min(REFRESH_MARGIN, (expiry - fetched) / 4):
            return value
    value, expiry = _fetch_token(endpoint, account, container)
    TOKENS.put(key, (value, expiry, now))
    return value


def needs_signing(href: str) -> bool:
    """Whether ``href`` is signed when read (:func:`blob_container`).

    Examples
    --------
    >>> needs_signing("https://a.blob.core.windows.net/c/x.tif"), needs_signing("s3://b/x")
    (True, False)
    """
    return blob_container(href) is not None


def unsigned(href: str) -> str:
    """``href`` without its query string (its token), as the reads are named.

    Examples
    --------
    >>> unsigned("https://a.blob.core.windows.net/c/x.tif?se=1&sig=abc")
    'https://a.blob.core.windows.net/c/x.tif'
    """
    return href.split("?", 1)[0]


def sign(href: str, *, fresh: bool = False) -> str:
    """``href`` with a valid SAS token of this process (any older one replaced).

    Hrefs that need no token (:func:`blob_container`) come back unchanged.
    """
    where = blob_container(href)
    if where is None:
        return href
    return f"{href.split('?', 1)[0]}?{token(*where, fresh=fresh)}"


def clear() -> None:
    """Forget this process's tokens.

    Examples
    --------
    >>> clear()
    """
    TOKENS.clear()
