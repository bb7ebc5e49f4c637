"""What to search: :class:`StacQuery`, checked when it is made, before any request.

Owns: :class:`StacQuery` (the catalog, collection, dates, bands and item filters of a search;
every value checked with a :class:`~xsits.errors.QueryError` naming it), its endpoint, the
provider's band naming and asset keys, and its item filters as one CQL2 expression
(:mod:`xsits.stac.filters`).
Must not: search, make requests (:mod:`xsits.stac.search`) or hold provider tables
(:mod:`xsits.stac.providers`).

Examples
--------
>>> StacQuery(stac="earth-search", bands=("B04", "SCL")).assets
{'B04': 'red', 'SCL': 'scl'}
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

from xsits.errors import QueryError
from xsits.stac import collections, local, providers
from xsits.stac.filters import and_, check_query, parse_filter, query_to_cql2
from xsits.stac.providers import PRESETS

__all__ = ["MAX_LIMIT", "StacQuery"]

#: Largest page size of a search (stac-fastapi's limit).
MAX_LIMIT = 10_000


def _date(name: str, value: Any) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        stamp = None
    if stamp is None or pd.isna(stamp):
        raise QueryError(f"{name}={value!r} is not a date; use 'YYYY-MM-DD', e.g. "
                         f"{name}='2024-01-01'")
    return stamp


@dataclass(frozen=True)
class StacQuery:
    """What to search: where (``stac``), which collection, dates, bands and item filters.

    Every field is checked when the query is made (no request is sent): a bad value raises
    :class:`~xsits.errors.QueryError` naming it.

    Parameters
    ----------
    stac
        A preset (``"planetary-computer"``, ``"earth-search"``), ``"demo"`` (the embedded
        offline demo world), a STAC API URL, or the path of a local ItemCollection
        (``.json``/``.geojson``) or static catalog (``catalog.json``).
    collection
        Collection id. Default ``"sentinel-2-l2a"``.
    start, end
        Inclusive date range (``"YYYY-MM-DD"``). ``end`` includes that whole day.
    bands
        Bands to load, as band ids (``"B04"``, ``"SCL"``) or Earth Search names (``"red"``,
        ``"scl"``), whichever the provider uses (:attr:`assets`). Default (None): the
        collection's default bands in the registry (:mod:`xsits.stac.collections`:
        Sentinel-2 L2A ``("B03", "B04", "B08", "SCL")``, Landsat ``("green", "red",
        "nir08", "qa_pixel")``...); a collection not in the registry needs them.
    query
        STAC Query extension dict, e.g. ``{"eo:cloud_cover": {"lt": 10}}``; operators
        ``eq, neq, lt, lte, gt, gte, in, startsWith, endsWith, contains``
        (:mod:`xsits.stac.filters`), the same for API and local catalogs.
    filter
        CQL2 filter (JSON dict or CQL2 text), parsed by ``cql2`` now.
    max_cloud
        Shortcut for ``query={"eo:cloud_cover": {"lt": max_cloud}}`` (merged with ``query``);
        refused for a collection whose items have no cloud cover (Sentinel-1 RTC,
        :func:`xsits.stac.collections.has_cloud_cover`).
    limit
        Page size of API searches, 1..10000. Default 1000 (fewer requests).

    Examples
    --------
    >>> q = StacQuery(stac="earth-search", start="2024-01-01", end="2024-02-01", max_cloud=10)
    >>> q.endpoint, q.api_query()
    ('https://earth-search.aws.element84.com/v1', {'eo:cloud_cover': {'lt': 10}})
    >>> q.assets
    {'B03': 'green', 'B04': 'red', 'B08': 'nir', 'SCL': 'scl'}
    >>> StacQuery(collection="landsat-c2-l2").bands
    ('green', 'red', 'nir08', 'qa_pixel')
    >>> StacQuery(start="2024-02-01", end="2024-01-01")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    xsits.errors.QueryError: end='2024-01-01' is before start='2024-02-01'; swap them
    """

    stac: str = "planetary-computer"
    collection: str = "sentinel-2-l2a"
    start: str = "2024-01-01"
    end: str = "2024-12-31"
    bands: tuple[str, ...] | None = None
    query: Mapping[str, Any] | None = field(default=None, hash=False)
    filter: Mapping[str, Any] | str | None = field(default=None, hash=False)
    max_cloud: float | None = None
    limit: int = 1000

    def __post_init__(self) -> None:
        self._check_stac()
        if not isinstance(self.collection, str) or not self.collection.strip():
            raise QueryError(f"collection={self.collection!r} must be a collection id, e.g. "
                             "collection='sentinel-2-l2a'")
        bands = self.bands.split(",") if isinstance(self.bands, str) else self.bands
        if bands is None:
            entry = collections.lookup(self.collection)
            if entry is None:
                raise QueryError(f"collection={self.collection!r} is not in the registry "
                                 "(xsits.stac.collections), so it has no default bands; give "
                                 "them, e.g. bands=['red', 'nir']")
            bands = entry.default_bands
        try:
            bands = tuple(b.strip() for b in bands)
        except (TypeError, AttributeError):
            raise QueryError(f"bands={self.bands!r} must be a list of band names, e.g. "
                             "bands=['B04', 'SCL']") from None
        if not bands or not all(bands):
            raise QueryError(f"bands={list(bands)!r} has no band or an empty name; ask for at "
                             "least one band, e.g. bands=['B04']")
        why = providers.check_bands(bands, self.collection)
        if why:
            raise QueryError(f"bands={list(bands)!r}: {why}")
        object.__setattr__(self, "bands", bands)
        start, end = _date("start", self.start), _date("end", self.end)
        if end < start:
            raise QueryError(f"end={self.end!r} is before start={self.start!r}; swap them")
        object.__setattr__(self, "start", str(start.date()))
        object.__setattr__(self, "end", str(end.date()))
        object.__setattr__(self, "query", check_query(self.query))
        parse_filter(self.filter)
        if self.max_cloud is not None:
            try:
                cloud = float(self.max_cloud)
            except (TypeError, ValueError):
                cloud = float("nan")
            if isinstance(self.max_cloud, bool) or not 0 <= cloud <= 100:
                raise QueryError(f"max_cloud={self.max_cloud!r} must be a percentage in "
                                 "0..100, e.g. max_cloud=10")
            if isinstance(self.max_cloud, str):
                object.__setattr__(self, "max_cloud", cloud)
            if not collections.has_cloud_cover(self.collection):
                raise QueryError(f"max_cloud={self.max_cloud!r}: {self.collection} items "
                                 "have no eo:cloud_cover (radar sees through clouds), so it "
                                 "would drop them all; leave max_cloud out")
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or \
                not 1 <= self.limit <= MAX_LIMIT:
            raise QueryError(f"limit={self.limit!r} must be an int in 1..{MAX_LIMIT}")

    def _check_stac(self) -> None:
        stac = self.stac
        if not isinstance(stac, str) or not stac.strip():
            raise QueryError(f"stac={stac!r} must be a preset ({', '.join(PRESETS)}), 'demo', "
                             "a STAC API URL or a local ItemCollection path")
        if re.match(r"^https?://", stac, re.IGNORECASE):
            parts = urlsplit(stac)
            try:
                parts.port  # noqa: B018 - raises on a bad port
            except ValueError:
                parts = None
            if parts is None or not parts.hostname:
                raise QueryError(f"stac={stac!r} is not a valid URL; give one such as "
                                 "'https://earth-search.aws.element84.com/v1'")
        elif self.is_local and not providers.is_demo(stac) and not os.path.exists(self.endpoint):
            raise QueryError(
                f"stac={stac!r} is not a preset ({', '.join(PRESETS)}), not 'demo', not an "
                "http(s) URL and not an existing local file; fix the value"
            )

    @property
    def is_local(self) -> bool:
        """True when ``stac`` is a local file (or the demo world) searched in-process."""
        return self.stac not in PRESETS and not re.match(r"^https?://", self.stac, re.I)

    @property
    def endpoint(self) -> str:
        """The API URL (or local path) without any query string, user info or token.

        A catalog made on first use (``stac="demo"``, :func:`xsits.stac.providers.register_catalog`)
        is named, not made: reading this property never generates it (:meth:`locate` does).
        """
        name = self.stac.strip().lower()
        if name in providers.CATALOGS:
            return name
        return self.locate()

    def locate(self) -> str:
        """Where the items are: :attr:`endpoint`, with a catalog made on first use made now.

        ``stac="demo"`` is the demo world's ItemCollection, generated here on first use.
        """
        url = providers.resolve_stac(self.stac)
        if self.is_local:
            return str(Path(url).expanduser().resolve())
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))

    @property
    def datetime(self) -> str:
        """The STAC datetime interval covering whole days ``start..end``."""
        return f"{self.start}T00:00:00Z/{self.end}T23:59:59.999Z"

    @property
    def naming(self) -> providers.Naming | None:
        """How the provider names the bands (:func:`xsits.stac.providers.naming`).

        By preset, API root or collection; a local catalog by its items' asset keys. Only
        Sentinel-2 L2A collections have one: other collections' bands are never renamed.
        """
        scheme = providers.naming(self.stac, self.collection)
        if scheme is None and self.is_local and self.collection in providers.L2A_COLLECTIONS:
            path = self.endpoint
            if os.path.exists(path):
                scheme = local.catalog_naming(path, self.collection)
        return scheme

    @property
    def assets(self) -> dict[str, str]:
        """``{band: asset key}``: band names as asked, asset keys as the provider names them."""
        scheme = self.naming
        return {band: providers.asset_key(band, scheme) for band in self.bands}

    def api_query(self) -> dict[str, Any] | None:
        """The query-extension dict: ``query`` merged with ``max_cloud``."""
        q = {k: dict(v) for k, v in (self.query or {}).items()}
        if self.max_cloud is not None:
            q.setdefault("eo:cloud_cover", {})["lt"] = self.max_cloud
        return q or None

    def cql2(self) -> dict[str, Any] | None:
        """Every item filter as one CQL2 JSON expression: ``query``, ``max_cloud``, ``filter``.

        Examples
        --------
        >>> StacQuery(max_cloud=10, filter="platform = 'Sentinel-2A'").cql2()["op"]
        'and'
        """
        return and_(query_to_cql2(self.api_query()), parse_filter(self.filter))

    def describe(self) -> str:
        """JSON text of the item filters, for provenance attributes and manifests."""
        return json.dumps(
            {"query": self.api_query(), "filter": self.filter, "datetime": self.datetime},
            sort_keys=True,
            default=str,
        )
