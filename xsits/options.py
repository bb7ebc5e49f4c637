"""Global knobs of xsits, set with :func:`set_options` (also a context manager).

Owns: the :class:`Options` in force: the process's (:func:`set_options`, :func:`adopt_options`)
and, over it, a context's own (:func:`options_scope`: a :class:`contextvars.ContextVar`, so
one run's options, e.g. ``compute_all(retries=...)``, hold in its own work, the pool threads
it hands work to included (:class:`xsits._common.ContextThreadPool`), and in no other thread).
Every other module reads them through :func:`get_options` when a call starts.
Must not: hold per-load state (that lives in the object each load creates and passes down).

================ ======= ===============================================================
option           default meaning
================ ======= ===============================================================
retries          5       tries of every network call (STAC, COG, Intake), 1 = no retry
retry_delay      0.2     seconds before the 2nd try, doubled for each next one
retry_budget     60      seconds one call may spend waiting out a throttling host (HTTP 429 /
                         503: ``Retry-After``, else a jittered backoff), see :mod:`xsits.io.retry`
max_requests     64      COG range requests in flight at once per load
cache_bytes      256 MiB fetched COG bytes kept in memory for reuse by later reads
cache_dir        None    where the demo world and other generated files go (None:
                         ``$XSITS_CACHE_DIR``, else the platform's user cache directory)
progress         True    progress bars on long work (searches, batches)
fast_reader      True    serve the COG layouts proven equal to GDAL with xsits' reader
whole_files      True    fetch a host's files whole once its first files were all small
offset_guard     flagged which items' pixels check their +1000 offset metadata
                         (:mod:`xsits.cube.offset`): ``"flagged"`` (Earth Search's, whose flags
                         are known to lie), ``"all"``, ``"off"``
pc_sas_url       None    the SAS token endpoint hrefs on Azure Blob Storage are signed with
                         when read (None: ``$PC_SDK_SAS_URL``, else Planetary Computer's)
pc_blob_hosts    ()      hosts serving Azure Blob Storage path-style (``http://host/{account}/
                         {container}/...``, e.g. the Azurite emulator), signed the same way
earthdata_hosts  LP DAAC NASA LP DAAC's data hosts (:data:`EARTHDATA_HOSTS`): their files get
                         the Earthdata bearer token ``$EARTHDATA_TOKEN``
                         (:mod:`xsits.io.earthdata`; a host is ``name`` or ``name:port``)
s3               None    S3 settings of ``s3://`` hrefs (obstore and GDAL alike): a dict of
                         ``endpoint_url``, ``region``, ``requester_pays``, ``anonymous``,
                         ``aws_access_key_id``... over the standard AWS environment
on_missing_item  nodata  a broken file (HTTP 404, truncated, undecodable) costs its item's
                         date (nodata, recorded, :mod:`xsits.io.tolerate`); ``"raise"`` fails
                         the feature at once
================ ======= ===============================================================

Examples
--------
>>> import xsits
>>> with xsits.set_options(retries=2, progress=False):
...     xsits.get_options().retry.attempts, xsits.get_options().progress
(2, False)
>>> xsits.get_options().retry.attempts
5
"""

from __future__ import annotations

import contextvars
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from xsits.errors import OptionError

#: The keys of the ``s3`` option (read by :mod:`xsits.io.fetch`).
S3_KEYS = ("endpoint_url", "region", "requester_pays", "anonymous", "aws_access_key_id",
           "aws_secret_access_key", "aws_session_token")


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
    budget
        Seconds one call may spend waiting out a throttling host (HTTP 429 / 503), however
        many tries that takes. Default 60.

    Examples
    --------
    >>> RetryPolicy(attempts=3, backoff=0.5).delays()
    [0.5, 1.0]
    """

    attempts: int = 5
    backoff: float = 0.2
    max_delay: float = 5.0
    budget: float = 60.0

    def delays(self) -> list[float]:
        """The waits before the 2nd, 3rd... tries."""
        return [min(self.max_delay, self.backoff * 2**k) for k in range(self.attempts - 1)]


#: NASA LP DAAC's data hosts (HLS hrefs of CMR-STAC ``LPCLOUD``: ``lp-prod-protected/...``
#: and ``lp-prod-public/...`` paths), where the Earthdata bearer token is sent.
EARTHDATA_HOSTS: tuple[str, ...] = ("data.lpdaac.earthdatacloud.nasa.gov",
                                    "lpdaac.earthdata.nasa.gov")


@dataclass(frozen=True)
class Options:
    """The options in force; see the module's table. Read with :func:`get_options`.

    Examples
    --------
    >>> import xsits
    >>> with xsits.set_options(max_requests=8):
    ...     xsits.get_options().max_requests
    8
    """

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_requests: int = 64
    cache_bytes: int = 256 * 2**20
    cache_dir: str | None = None
    progress: bool = True
    fast_reader: bool = True
    whole_files: bool = True
    offset_guard: str = "flagged"
    on_missing_item: str = "nodata"
    pc_sas_url: str | None = None
    pc_blob_hosts: tuple[str, ...] = ()
    earthdata_hosts: tuple[str, ...] = EARTHDATA_HOSTS
    s3: dict | None = None

    def cache_path(self) -> Path:
        """The cache directory: ``cache_dir``, ``$XSITS_CACHE_DIR`` or the user cache."""
        if self.cache_dir:
            return Path(self.cache_dir)
        if os.environ.get("XSITS_CACHE_DIR"):
            return Path(os.environ["XSITS_CACHE_DIR"])

        return Path(platformdirs.user_cache_dir("xsits"))


# The process's options, and a context's own over them (see the module docstring).
_CURRENT = [Options()]
_SCOPED: contextvars.ContextVar[Options | None] = contextvars.ContextVar("xsits_options",
                                                                          default=None)

_POSITIVE_INTS = ("retries", "max_requests", "cache_bytes")
#: Values of the ``offset_guard`` option.
OFFSET_GUARDS = ("flagged", "all", "off")
#: Values of the ``on_missing_item`` option.
ON_MISSING_ITEM = ("nodata", "raise")


def get_options() -> Options:
    """The options in force.

    Examples
    --------
    >>> get_options().fast_reader
    True
    """
    scoped = _SCOPED.get()
    return _CURRENT[0] if scoped is None else scoped


class set_options:  # noqa: N801 - used like a function, as xarray.set_options
    """Set global options, for good or, as a context manager, for a block.

    Inside an :func:`options_scope` (e.g. a step run by :func:`xsits.compute_all`), they
    change that scope's options only.

    Parameters
    ----------
    **kwargs
        Options of the module's table: ``retries``, ``retry_delay``, ``retry_budget``,
        ``max_requests``,
        ``cache_bytes``, ``cache_dir``, ``progress``, ``fast_reader``, ``whole_files``,
        ``offset_guard``, ``on_missing_item``, ``pc_sas_url``, ``pc_blob_hosts``,
        ``earthdata_hosts``, ``s3``.

    Raises
    ------
    OptionError
        An unknown option or a bad value.

    Examples
    --------
    >>> with set_options(fast_reader=False):
    ...     get_options().fast_reader
    False
    >>> set_options(nope=1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    xsits.errors.OptionError: unknown option 'nope'; known: cache_bytes, cache_dir, ...
    """

    def __init__(self, **kwargs: Any) -> None:
        scoped = _SCOPED.get()
        self._token: contextvars.Token | None = None
        if scoped is not None:
            self._token = _SCOPED.set(_updated(scoped, kwargs))
        else:
            self._before = _CURRENT[0]
            _CURRENT[0] = _updated(self._before, kwargs)

    def __enter__(self) -> Options:
        return get_options()

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _SCOPED.reset(self._token)
        else:
            _CURRENT[0] = self._before


class options_scope:  # noqa: N801 - used like a function, as set_options
    """Options for this context only: the block's own work, not the process's other threads.

    A :class:`contextvars.ContextVar`: threads started with :func:`xsits._common.context_thread`
    and tasks of a :class:`xsits._common.ContextThreadPool` (every pool of xsits) run in a copy
    of their submitter's context, so they see the scope; any other thread sees the process's
    options. :func:`xsits.compute_all` runs in one (``retries``, ``retry_delay``).

    Parameters
    ----------
    options
        The options to start from (default: those in force here).
    **kwargs
        Options to change, as for :func:`set_options`.

    Examples
    --------
    >>> import threading
    >>> seen = []
    >>> with options_scope(retries=2):
    ...     t = threading.Thread(target=lambda: seen.append(get_options().retry.attempts))
    ...     t.start(); t.join()
    ...     get_options().retry.attempts, seen
    (2, [5])
    >>> get_options().retry.attempts
    5
    """

    def __init__(self, options: Options | None = None, **kwargs: Any) -> None:
        self._options = _updated(options if options is not None else get_options(), kwargs)
        self._tokens: list[contextvars.Token] = []

    def __enter__(self) -> Options:
        self._tokens.append(_SCOPED.set(self._options))
        return self._options

    def __exit__(self, *exc: object) -> None:
        _SCOPED.reset(self._tokens.pop())


def adopt_options(options: Options) -> None:
    """Make ``options`` the options in force in this process, for good.

    For worker processes (dask ``"processes"``, ``dask.distributed``): they start with the
    defaults, and a task brings the options in force where it was created.

    Examples
    --------
    >>> with set_options(retries=3):
    ...     theirs = get_options()
    >>> adopt_options(theirs); get_options().retry.attempts
    3
    >>> adopt_options(Options()); get_options().retry.attempts
    5
    """
    _CURRENT[0] = options


def _updated(options: Options, kwargs: dict[str, Any]) -> Options:
    known = {f.name for f in dataclasses.fields(Options)} - {"retry"} | {"retries",
                                                                       "retry_delay",
                                                                       "retry_budget"}
    for name, value in kwargs.items():
        if name not in known:
            raise OptionError(f"unknown option {name!r}; known: {', '.join(sorted(known))}")
        if name in _POSITIVE_INTS and (not isinstance(value, int) or isinstance(value, bool)
                                       or value < 1):
            raise OptionError(f"option {name}={value!r} must be a positive int, e.g. {name}=4")
        if name == "retry_delay" and (not isinstance(value, (int, float)) or value < 0):
            raise OptionError(f"option retry_delay={value!r} must be seconds >= 0, e.g. 0.5")
        if name == "retry_budget" and (isinstance(value, bool) or not isinstance(
                value, (int, float)) or value <= 0):
            raise OptionError(f"option retry_budget={value!r} must be seconds > 0, e.g. 120")
        if name in ("progress", "fast_reader", "whole_files") and not isinstance(value, bool):
            raise OptionError(f"option {name}={value!r} must be True or False")
        if name == "offset_guard" and value not in OFFSET_GUARDS:
            raise OptionError(f"option offset_guard={value!r} must be one of "
                              f"{', '.join(OFFSET_GUARDS)}, e.g. offset_guard='all'")
        if name == "pc_sas_url" and value is not None and not (
                isinstance(value, str) and value.startswith(("http://", "https://"))):
            raise OptionError(f"option pc_sas_url={value!r} must be an http(s) URL or None, "
                              "e.g. pc_sas_url='https://planetarycomputer.microsoft.com/api/"
                              "sas/v1/token'")
        if name in ("pc_blob_hosts", "earthdata_hosts") and (isinstance(value, str) or not all(
                isinstance(h, str) for h in value)):
            raise OptionError(f"option {name}={value!r} must be a tuple of host:port "
                              f"names, e.g. {name}=('127.0.0.1:10000',)")
        if name == "s3" and value is not None:
            bad = [k for k in value] if not isinstance(value, dict) else \
                [k for k in value if k not in S3_KEYS]
            if not isinstance(value, dict) or bad:
                raise OptionError(f"option s3 must be a dict of {', '.join(S3_KEYS)}; "
                                  f"{bad or value!r} is not, e.g. s3={{'requester_pays': True}}")
        if name == "on_missing_item" and value not in ON_MISSING_ITEM:
            raise OptionError(f"option on_missing_item={value!r} must be one of "
                              f"{', '.join(ON_MISSING_ITEM)}, e.g. on_missing_item='raise'")
    retry = options.retry
    if "retries" in kwargs or "retry_delay" in kwargs or "retry_budget" in kwargs:
        retry = dataclasses.replace(retry, attempts=kwargs.get("retries", retry.attempts),
                                    backoff=float(kwargs.get("retry_delay", retry.backoff)),
                                    budget=float(kwargs.get("retry_budget", retry.budget)))
    rest = {k: v for k, v in kwargs.items() if k not in ("retries", "retry_delay",
                                                         "retry_budget")}
    for name in ("pc_blob_hosts", "earthdata_hosts"):
        if name in rest:
            rest[name] = tuple(rest[name])
    return dataclasses.replace(options, retry=retry, **rest)
