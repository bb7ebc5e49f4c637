"""Find the STAC items of many features with one search per group of nearby features.

Features are grouped spatially (UTM zone, then ``group_size_deg`` cells); each group is
searched once with the union of its features' footprints (pystac-client, paged), or filtered
in-process for a local ItemCollection / catalog. Both paths apply the same CQL2
(:mod:`xsits.stac.query`: ``query``, ``max_cloud`` and ``filter`` as one expression). Items are
then assigned to the features they actually intersect with a shapely STRtree.
``aoi → grid → search → load``.

Owns: :class:`StacQuery` (what to search, checked when it is made, before any request), the
HTTP of STAC API requests (every request through :func:`xsits.io.retry.call`: 429 / 5xx /
timeouts retried with backoff, 400 / 401 / 403 / 404 / 422 raised at once as
:class:`~xsits.errors.StacRequestError` with the server's message), and assigning items.
Must not: know how providers name bands (:mod:`xsits.stac.providers`) or read pixels.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import geopandas as gpd
import numpy as np
import pandas as pd
import pystac
import shapely
from shapely import STRtree
from shapely.geometry import shape
from shapely.ops import unary_union

from xsits._common import ContextThreadPool, one_line, shorten
from xsits.errors import (
    MissingDependencyError,
    NoItemsError,
    QueryError,
    SearchError,
    StacRequestError,
)
from xsits.io import retry
from xsits.stac import providers
from xsits.stac.api import REQUEST_TIMEOUT, RetryingStacApiIO
from xsits.stac.providers import PRESETS
from xsits.stac.query import and_, check_query, parse_filter, query_to_cql2

log = logging.getLogger(__name__)

#: Group searches run at once (each waits on the network).
SEARCH_THREADS = 8
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
        ``"scl"``), whichever the provider uses (:attr:`assets`). Default
        ``("B03", "B04", "B08", "SCL")`` as in the seed workflow.
    query
        STAC Query extension dict, e.g. ``{"eo:cloud_cover": {"lt": 10}}``; operators
        ``eq, neq, lt, lte, gt, gte, in, startsWith, endsWith, contains``
        (:mod:`xsits.stac.query`), the same for API and local catalogs.
    filter
        CQL2 filter (JSON dict or CQL2 text), parsed by ``cql2`` now.
    max_cloud
        Shortcut for ``query={"eo:cloud_cover": {"lt": max_cloud}}`` (merged with ``query``).
    limit
        Page size of API searches, 1..10000. Default 1000 (fewer requests).

    Examples
    --------
    >>> q = StacQuery(stac="earth-search", start="2024-01-01", end="2024-02-01", max_cloud=10)
    >>> q.endpoint, q.api_query()
    ('https://earth-search.aws.element84.com/v1', {'eo:cloud_cover': {'lt': 10}})
    >>> q.assets
    {'B03': 'green', 'B04': 'red', 'B08': 'nir', 'SCL': 'scl'}
    >>> StacQuery(start="2024-02-01", end="2024-01-01")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    xsits.errors.QueryError: end='2024-01-01' is before start='2024-02-01'; swap them
    """

    stac: str = "planetary-computer"
    collection: str = "sentinel-2-l2a"
    start: str = "2024-01-01"
    end: str = "2024-12-31"
    bands: tuple[str, ...] = ("B03", "B04", "B08", "SCL")
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
                scheme = _local_naming(path, os.path.getmtime(path), self.collection)
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


@dataclass
class SearchResult:
    """Items found per feature.

    Attributes
    ----------
    query
        The :class:`StacQuery` searched.
    items
        ``{feature_id: [pystac.Item, ...]}`` sorted by datetime; features with none are absent.
        From an API with the fields extension, items carry only the bands' assets and no
        links (:data:`ITEM_FIELDS`).
    missing
        ``{feature_id: reason}`` for features without items (or a failed group search).
    n_searches
        Number of searches made (one per group of nearby features).

    Examples
    --------
    >>> r = SearchResult(StacQuery(), items={}, missing={"7": "no item"}, n_searches=1)
    >>> r.missing
    {'7': 'no item'}
    """

    query: StacQuery
    items: dict[str, list[pystac.Item]]
    missing: dict[str, str]
    n_searches: int = 0

    def summary(self) -> pd.DataFrame:
        """One row per feature: number of items (dates before grouping) or why there are none."""
        rows = [{"feature_id": f, "n_items": len(v), "reason": ""} for f, v in self.items.items()]
        rows += [{"feature_id": f, "n_items": 0, "reason": r} for f, r in self.missing.items()]
        return pd.DataFrame(rows, columns=["feature_id", "n_items", "reason"])


#: Footprints of a search group above which its search area is their convex hull.
HULL_ABOVE = 256


def search_shape(footprints: Sequence[Any]) -> Any:
    """The area a search group's search asks for: its footprints' union, or their hull.

    A union of thousands of small footprints costs seconds and gives the API a huge shape;
    above :data:`HULL_ABOVE` footprints their convex hull is searched (items it finds that
    meet no footprint are given to no feature).

    Examples
    --------
    >>> from shapely.geometry import box
    >>> search_shape([box(0, 0, 1, 1), box(2, 0, 3, 1)]).geom_type
    'MultiPolygon'
    """
    if len(footprints) > HULL_ABOVE:
        return shapely.convex_hull(shapely.GeometryCollection(list(footprints)))
    return unary_union(list(footprints))


def group_features(footprints: gpd.GeoSeries, group_size_deg: float = 2.0) -> list[list[str]]:
    """Group feature ids of nearby footprints: same UTM zone and same ``group_size_deg`` cell.

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely.geometry import Point
    >>> fp = gpd.GeoSeries({"a": Point(8.4, 49.8), "b": Point(8.5, 49.9), "c": Point(23.8, 40.1)},
    ...                    crs=4326)
    >>> group_features(fp)
    [['a', 'b'], ['c']]
    """
    centre = footprints.to_crs("EPSG:4326").representative_point()
    zone = np.floor((centre.x + 180) / 6).astype(int)
    cell_x = np.floor(centre.x / group_size_deg).astype(int)
    cell_y = np.floor(centre.y / group_size_deg).astype(int)
    key = pd.Series(list(zip(zone, cell_x, cell_y, strict=True)), index=footprints.index)
    return [list(ids) for _, ids in key.groupby(key, sort=True).groups.items()]


@functools.lru_cache(maxsize=8)
def _local_items(path: str, mtime: float) -> tuple[dict, ...]:
    """Item dicts of a local ItemCollection or static catalog (cached while unchanged)."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise QueryError(
            f"stac='{p}' is not a readable JSON file ({one_line(err)}); fix the path"
        ) from err
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind == "FeatureCollection":
        return tuple(doc.get("features") or ())
    if kind in ("Catalog", "Collection"):
        cat = pystac.read_file(str(p))
        return tuple(item.to_dict() for item in cat.get_items(recursive=True))
    raise QueryError(f"stac='{p}' is neither a STAC ItemCollection nor a catalog (its type "
                     f"is {kind!r}); give an ItemCollection, a catalog.json or an API URL")


@functools.lru_cache(maxsize=8)
def _local_naming(path: str, mtime: float, collection: str) -> providers.Naming | None:
    """The band naming of a local catalog: that of its first item of ``collection``."""
    for d in _local_items(path, mtime):
        if d.get("collection", collection) == collection:
            return providers.naming_of_assets(list(d.get("assets") or ()))
    return None


@functools.lru_cache(maxsize=8)
def _local_dialect(path: str, mtime: float, collection: str) -> providers.Dialect | None:
    """The item dialect of a local catalog: that of its first item of ``collection``."""
    if collection not in providers.L2A_COLLECTIONS:
        return None
    for d in _local_items(path, mtime):
        if d.get("collection", collection) == collection:
            return providers.item_dialect(d.get("properties") or {}, collection)
    return None


def provider_cql2(q: StacQuery) -> dict[str, Any] | None:
    """The query's CQL2 (:meth:`StacQuery.cql2`) in its provider's property names and values.

    ``platform = 'Sentinel-2A'`` finds the same scenes on Planetary Computer and on Earth
    Search (``sentinel-2a``), ``s2:mgrs_tile`` becomes Earth Search's ``grid:code``...
    (:func:`xsits.stac.providers.normalise_cql2`); a local catalog is read in its items' dialect.

    Examples
    --------
    >>> provider_cql2(StacQuery(stac="earth-search", filter="platform = 'Sentinel-2B'"))
    {'op': '=', 'args': [{'property': 'platform'}, 'sentinel-2b']}
    """
    expr = q.cql2()
    if expr is None:
        return None
    dialect = providers.provider_dialect(q.stac, q.collection)
    if dialect is None and q.is_local and os.path.exists(q.endpoint):
        dialect = _local_dialect(q.endpoint, os.path.getmtime(q.endpoint), q.collection)
    return providers.normalise_cql2(expr, dialect)  # type: ignore[return-value]


def _search_local(q: StacQuery, area, *, filtered: bool = True) -> list[pystac.Item]:
    """Filter a local ItemCollection / catalog like a STAC API would (the same CQL2)."""
    import cql2

    path = q.endpoint
    expr = provider_cql2(q) if filtered else None
    match = cql2.Expr(expr).matches if expr is not None else None
    t0, t1 = pd.Timestamp(q.start, tz="UTC"), pd.Timestamp(q.end, tz="UTC") + pd.Timedelta("1D")
    out = []
    for d in _local_items(path, os.path.getmtime(path)):
        if d.get("collection", q.collection) != q.collection:
            continue
        t = pd.Timestamp(d["properties"]["datetime"])
        if not (t0 <= t < t1) or not shape(d["geometry"]).intersects(area):
            continue
        if match is None or match(d):
            out.append(pystac.Item.from_dict(d, preserve_dict=True))
    return out


def _pc_modifier(stac: str):
    if stac != "planetary-computer" and "planetarycomputer" not in stac:
        return None
    try:
        import planetary_computer
    except ImportError as err:
        raise MissingDependencyError(
            "signing Planetary Computer hrefs needs the extra: pip install 'xsits[pc]'"
        ) from err
    return planetary_computer.sign_inplace


def open_client(q: StacQuery, *, modifier=None):
    """A pystac-client ``Client`` whose requests are retried (:mod:`xsits.stac.api`).

    Planetary Computer hrefs are signed (``xsits[pc]``).

    Raises
    ------
    xsits.errors.StacRequestError
        The API refused the landing page request (HTTP 4xx), with its message.
    xsits.errors.SearchError
        The API cannot be reached (after the retries of ``xsits.get_options().retry``).

    Examples
    --------
    Not run here (it needs a STAC API); ``tests/test_search_load.py`` opens the local one.

    >>> client = open_client(StacQuery(stac="http://127.0.0.1:1"))  # doctest: +SKIP
    """
    from pystac_client import Client

    io = RetryingStacApiIO(timeout=REQUEST_TIMEOUT)
    try:
        return Client.open(PRESETS.get(q.stac, q.stac), stac_io=io,
                           modifier=modifier or _pc_modifier(q.stac))
    except StacRequestError:
        raise
    except Exception as err:
        tries = retry.default_policy().attempts
        raise SearchError(f"STAC API {q.endpoint} cannot be opened after {tries} tries: "
                          f"{one_line(err)}; check the URL and the network") from err


#: Item fields asked of APIs with the fields extension (plus the bands' assets): what
#: loading, the per-date coordinates and provenance use. The API then neither hydrates nor
#: sends the other assets and the links (on pgstac: ~70 % less CPU in the API).
ITEM_FIELDS = ("id", "type", "stac_version", "stac_extensions", "geometry", "bbox",
               "collection", "properties")


def _fields(q: StacQuery, client) -> dict[str, list[str]] | None:
    """The ``fields`` of a search when the API conforms to the fields extension."""
    from pystac_client import ConformanceClasses

    if not client.conforms_to(ConformanceClasses.FIELDS):
        return None
    assets = dict.fromkeys(a.split(".")[0] for a in q.assets.values())  # "visual.2": "visual"
    return {"include": [*ITEM_FIELDS, *(f"assets.{a}" for a in assets)],
            "exclude": ["links"]}


def _filters(q: StacQuery, client) -> dict[str, Any]:
    """``filter`` (CQL2 JSON of every item filter) or, without the filter extension, ``query``.

    The same CQL2 a local catalog evaluates: APIs implement the Query extension's string
    and ``in`` operators unevenly (stac-fastapi-pgstac only its comparisons).
    """
    from pystac_client import ConformanceClasses

    expr = provider_cql2(q)
    if expr is None:
        return {}
    if client.conforms_to(ConformanceClasses.FILTER):
        return {"filter": expr, "filter_lang": "cql2-json"}
    if q.filter is None and client.conforms_to(ConformanceClasses.QUERY):
        return {"query": q.api_query()}
    raise QueryError(f"the STAC API {q.endpoint} supports neither CQL2 filters nor the Query "
                     f"extension; drop filter= / query= / max_cloud= "
                     f"(asked: {shorten(json.dumps(expr), 120)})")


def _search_api(q: StacQuery, client, area, *, filtered: bool = True) -> list[pystac.Item]:
    search = client.search(
        collections=[q.collection],
        intersects=area.__geo_interface__,
        datetime=q.datetime,
        limit=q.limit,
        fields=_fields(q, client),
        **(_filters(q, client) if filtered else {}),
    )
    # as search.items(), but not migrated to the newest STAC version: migrating deep-copies
    # every item (~0.3 ms each); odc-stac and xsits read either version's fields
    return [pystac.Item.from_dict(d, root=client, preserve_dict=False, migrate=False)
            for d in search.items_as_dicts()]


def search(
    aoi: gpd.GeoDataFrame,
    stac_query: StacQuery | None = None,
    *,
    footprints: gpd.GeoSeries | None = None,
    group_size_deg: float = 2.0,
    client=None,
    **query_kwargs: Any,
) -> SearchResult:
    """Search STAC once per group of nearby features and assign items to each feature.

    Parameters
    ----------
    aoi
        Features with a ``feature_id`` column (see :func:`xsits.read_aoi`).
    stac_query
        A :class:`StacQuery`; or give its fields as keyword arguments (``stac=``, ``start=``,
        ``query=``...).
    footprints
        Area to cover per feature (lon/lat GeoSeries indexed by feature id). Default: the AOI
        geometries. :func:`xsits.open_cubes` passes each cube's pixel-grid outline.
    group_size_deg
        Size of the grouping cell in degrees (within a UTM zone). Default 2.
    client
        An open pystac-client ``Client`` to reuse (else :func:`open_client`).

    Returns
    -------
    SearchResult
        Items per feature; features with no item (or whose group search failed) in ``missing``.

    Raises
    ------
    xsits.errors.NoItemsError
        No feature of the AOI has any item (every one outside the tiles, dates or query).
    xsits.errors.StacRequestError
        The API refused the search (HTTP 4xx), with its message.
    xsits.errors.QueryError, xsits.errors.SearchError
        A bad query (before any request), or an API that cannot be reached.

    Examples
    --------
    Not run here: it searches Planetary Computer (``tests/test_search_load.py`` searches the
    local API).

    >>> import xsits
    >>> aoi = xsits.read_aoi("notebooks/data/rand_pts.geojson", id_column="pt_id")  # doctest: +SKIP
    >>> res = search(aoi, stac="planetary-computer", start="2024-01-01", end="2024-02-01",
    ...              max_cloud=10)  # doctest: +SKIP
    >>> res.summary()  # doctest: +SKIP
    """
    query = _query(stac_query, query_kwargs)
    merged = merge_results(list(iter_search(aoi, query, footprints=footprints,
                                            group_size_deg=group_size_deg, client=client)),
                           query)
    rank = {str(f): i for i, f in enumerate(aoi["feature_id"])}  # not the completion order

    def in_aoi_order(d: dict[str, Any]) -> dict[str, Any]:
        return dict(sorted(d.items(), key=lambda kv: rank.get(kv[0], len(rank))))

    merged.items, merged.missing = in_aoi_order(merged.items), in_aoi_order(merged.missing)
    if not merged.items and merged.missing:
        _raise_nothing_found(merged.missing, footprints if footprints is not None else
                             gpd.GeoSeries(aoi.geometry.values, index=aoi["feature_id"],
                                           crs=aoi.crs))
    return merged


def _raise_nothing_found(missing: Mapping[str, str], shapes: gpd.GeoSeries) -> None:
    """Raise for a search where no feature has an item: the first feature and why."""
    fid, why = next(iter(missing.items()))
    where = ""
    if fid in shapes.index:
        point = shapes.to_crs("EPSG:4326").loc[[fid]].representative_point().iloc[0]
        where = f" (lon {point.x:.4f}, lat {point.y:.4f})"
    more = f" (and {len(missing) - 1} more features)" if len(missing) > 1 else ""
    cls = SearchError if why.startswith("the STAC search failed") else NoItemsError
    raise cls(f"no feature of the AOI has an item: feature {fid!r}{where}{more}: {why}")


def _query(stac_query: StacQuery | None, query_kwargs: Mapping[str, Any]) -> StacQuery:
    if stac_query is None:
        return StacQuery(**query_kwargs)
    if query_kwargs:
        raise QueryError(
            f"give either stac_query= or its fields, not both: {sorted(query_kwargs)}"
        )
    return stac_query


def merge_results(parts: Sequence[SearchResult], query: StacQuery) -> SearchResult:
    """One :class:`SearchResult` from the per-group results of :func:`iter_search`.

    Examples
    --------
    >>> a = SearchResult(StacQuery(), items={}, missing={"1": "none"}, n_searches=1)
    >>> merge_results([a, a], StacQuery()).n_searches
    2
    """
    items: dict[str, list[pystac.Item]] = {}
    missing: dict[str, str] = {}
    for part in parts:
        items.update(part.items)
        missing.update(part.missing)
    return SearchResult(query=query, items=items, missing=missing,
                        n_searches=sum(p.n_searches for p in parts))


def iter_search(
    aoi: gpd.GeoDataFrame,
    stac_query: StacQuery | None = None,
    *,
    footprints: gpd.GeoSeries | None = None,
    group_size_deg: float = 2.0,
    client=None,
    **query_kwargs: Any,
) -> Iterator[SearchResult]:
    """:func:`search`, yielding each group's result as soon as its search returns.

    The group searches run :data:`SEARCH_THREADS` at a time; a caller can build the cubes of
    the first groups while the others are still searching (:func:`xsits.open_cubes` does).

    Examples
    --------
    Not run here: it searches Earth Search, with ``aoi`` from :func:`xsits.read_aoi`.

    >>> for part in iter_search(aoi, stac="earth-search", start="2024-01-01",
    ...                         end="2024-02-01"):  # doctest: +SKIP
    ...     print(part.n_searches, sorted(part.items))
    """
    query = _query(stac_query, query_kwargs)
    if footprints is None:
        footprints = gpd.GeoSeries(
            aoi.geometry.to_crs("EPSG:4326").values, index=aoi["feature_id"], crs="EPSG:4326"
        )
    groups = group_features(footprints, group_size_deg)
    provider_cql2(query)  # a filter the provider cannot take fails here, before any request
    if not query.is_local and client is None and groups:
        client = open_client(query)

    def search_area(area, filtered: bool = True) -> list[pystac.Item]:
        if query.is_local:
            return _search_local(query, area, filtered=filtered)
        return _search_api(query, client, area, filtered=filtered)

    def run(ids: list[str]) -> list[pystac.Item] | BaseException:
        area = search_shape(footprints.loc[ids].values)
        try:
            return search_area(area)
        except (QueryError, MissingDependencyError, StacRequestError):
            raise  # the query itself is wrong: every group would fail alike
        except Exception as err:  # one failed group must not sink the others
            return err

    # the group searches wait on the network: run a few at once (latency, not CPU)
    with ContextThreadPool(max(1, min(SEARCH_THREADS, len(groups)))) as pool:
        futures = {pool.submit(run, ids): ids for ids in groups}
        try:
            for fut in as_completed(futures):
                ids, found = futures[fut], fut.result()
                items: dict[str, list[pystac.Item]] = {}
                missing: dict[str, str] = {}
                if isinstance(found, BaseException):
                    for fid in ids:
                        missing[fid] = f"the STAC search failed after retries: {one_line(found)}"
                else:
                    _assign(found, footprints.loc[ids], query, items, missing)
                    _explain(query, footprints, missing, search_area)
                for its in items.values():
                    its.sort(key=lambda it: (it.datetime, it.id))
                yield SearchResult(query=query, items=items, missing=missing, n_searches=1)
        finally:
            for fut in futures:
                fut.cancel()


#: ``cubes.missing`` reasons of features no item matched, that :func:`_explain` can refine.
_NO_MATCH = "no {collection} item between {start} and {end} matches the query here"


def _explain(q: StacQuery, footprints: gpd.GeoSeries, missing: dict[str, str],
             search_area) -> None:
    """Say why a filtered search found nothing for a feature: the filter, or no item at all.

    For the features of a group that got no item while a filter was given, the group's area
    is searched again without it: no item at all means the feature lies outside every tile
    of the dates; items there mean the filter dropped them all, and the reason lists the
    values the filtered properties take on those items (the provider's own spelling).
    """
    expr = provider_cql2(q)
    prefix = _NO_MATCH.format(collection=q.collection, start=q.start, end=q.end)
    todo = [fid for fid, why in missing.items() if why.startswith(prefix)]
    if expr is None or not todo:
        return
    try:
        found = search_area(search_shape(footprints.loc[todo].values), filtered=False)
    except Exception as err:  # noqa: BLE001 - the first reason stays
        log.info("cannot explain the empty search: %s", err)
        return
    tree = STRtree([shape(it.geometry) for it in found])
    props = providers.cql2_properties(expr)
    for fid in todo:
        hits = [found[i] for i in tree.query(footprints.loc[fid], predicate="intersects")]
        if not hits:
            missing[fid] = (f"no {q.collection} item covers this feature between {q.start} "
                            f"and {q.end} (outside every tile of those dates); check the "
                            "place, the dates and the collection")
            continue
        seen = []
        for prop in props:
            values = sorted({json.dumps(it.properties.get(prop)) for it in hits})
            seen.append(f"{prop} is {', '.join(values[:6])}{' ...' if len(values) > 6 else ''}")
        missing[fid] = (f"{len(hits)} {q.collection} items cover this feature between {q.start} "
                        f"and {q.end}, but none matches the query "
                        f"{shorten(json.dumps(expr), 160)}; on them {'; '.join(seen)}; widen "
                        "the query (or max_cloud)")


def _assign(found: Sequence[pystac.Item], shapes: gpd.GeoSeries, q: StacQuery,
            items: dict, missing: dict) -> None:
    """Give each item to the features it intersects (STRtree), keep only items with the bands."""
    usable = [it for it in found if all(a.split(".")[0] in it.assets for a in q.assets.values())]
    tree = STRtree([shape(it.geometry) for it in usable])
    hits: dict[str, list[pystac.Item]] = {fid: [] for fid in shapes.index}
    if usable:
        feat_idx, item_idx = tree.query(list(shapes.values), predicate="intersects")
        ids = shapes.index.to_numpy()
        for f, i in zip(feat_idx.tolist(), item_idx.tolist(), strict=True):
            hits[ids[f]].append(usable[i])
    for fid, its in hits.items():
        if its:
            items[fid] = its
        elif found and not usable:
            have = sorted({k for it in found for k in it.assets})
            missing[fid] = (
                f"the items found lack assets {list(q.assets.values())} (they have "
                f"{shorten(', '.join(have), 200)}); ask for bands by those names"
            )
        else:
            missing[fid] = (
                _NO_MATCH.format(collection=q.collection, start=q.start, end=q.end)
                + " (outside every tile, or all too cloudy); widen the dates or raise max_cloud"
            )
