"""Find the STAC items of many features with one search per group of nearby features.

Features are grouped spatially (UTM zone, then ``group_size_deg`` cells); each group is
searched once with the union of its features' footprints (pystac-client, paged), or filtered
in-process for a local ItemCollection / catalog (:mod:`xsits.stac.local`). Both paths apply
the same CQL2 (:meth:`xsits.stac.query.StacQuery.cql2`: ``query``, ``max_cloud`` and
``filter`` as one expression, in the provider's dialect). Items are then assigned to the
features they actually intersect with a shapely STRtree. ``aoi → grid → search → load``.

Owns: the searches (:func:`search`, :func:`iter_search`; the pystac-client ``Client`` of an
API, whose requests go through :mod:`xsits.stac.api`'s retries), :class:`SearchResult`,
assigning items to features and explaining why a feature has none.
Must not: check queries (:mod:`xsits.stac.query`), know how providers name bands
(:mod:`xsits.stac.providers`) or read pixels.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass
from typing import Any

import cql2
import geopandas as gpd
import numpy as np
import pandas as pd
import pystac
import shapely
from pystac_client import Client, ConformanceClasses
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
from xsits.stac import local, providers
from xsits.stac.api import REQUEST_TIMEOUT, RetryingStacApiIO
from xsits.stac.collections import has_cloud_cover
from xsits.stac.providers import PRESETS
from xsits.stac.query import StacQuery

log = logging.getLogger(__name__)

#: Group searches run at once (each waits on the network).
SEARCH_THREADS = 8


class NoItems(str):
    """Why a feature has no item: nothing matched it, an outcome rather than a failure.

    A reason of this type in ``missing`` (:attr:`SearchResult.missing`, ``Cubes.missing``)
    makes the feature ``empty`` in :func:`xsits.compute_all`'s report; any other reason (a
    failed search, items without the bands, a cube that cannot be built) makes it ``failed``.
    It is a ``str``: equal to, and shown as, its text.

    Examples
    --------
    >>> why = NoItems("no sentinel-2-l2a item between 2024-01-01 and 2024-01-05 matches here")
    >>> isinstance(why, str), why == str(why)
    (True, True)
    """

    __slots__ = ()


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
        ``{feature_id: reason}`` for features without items (a :class:`NoItems`) or whose
        group search failed (a plain ``str``).
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


#: Side, in degrees, of the cells that group features for one search (within a UTM zone).
GROUP_SIZE_DEG = 2.0


def group_features(footprints: gpd.GeoSeries,
                   group_size_deg: float = GROUP_SIZE_DEG) -> list[list[str]]:
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
    if dialect is None and q.is_local:
        path = q.locate()
        if os.path.exists(path):
            dialect = local.catalog_dialect(path, q.collection)
    return providers.normalise_cql2(expr, dialect)  # type: ignore[return-value]


def _search_local(q: StacQuery, area, *, filtered: bool = True) -> list[pystac.Item]:
    """Filter a local ItemCollection / catalog like a STAC API would (the same CQL2)."""
    path = q.locate()
    expr = provider_cql2(q) if filtered else None
    match = cql2.Expr(expr).matches if expr is not None else None
    t0, t1 = pd.Timestamp(q.start, tz="UTC"), pd.Timestamp(q.end, tz="UTC") + pd.Timedelta("1D")
    out = []
    for d in local.catalog_items(path):
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
    group_size_deg: float = GROUP_SIZE_DEG,
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
    group_size_deg: float = GROUP_SIZE_DEG,
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


#: The reason of a feature no item matched (a :class:`NoItems`; :func:`_explain` refines it).
_NO_MATCH = "no {collection} item between {start} and {end} matches the query here"


def _no_match(q: StacQuery) -> str:
    """Why no item matched a feature, with the fixes that apply to the query's collection.

    "Too cloudy" and ``max_cloud`` only for a collection whose items say how cloudy they are
    (:func:`xsits.stac.collections.has_cloud_cover`: not Sentinel-1).

    Examples
    --------
    >>> s1 = StacQuery(collection="sentinel-1-rtc", start="2024-01-01", end="2024-01-31")
    >>> _no_match(s1).split(" here ")
    ['no sentinel-1-rtc item between 2024-01-01 and 2024-01-31 matches the query', \
'(outside every tile of those dates); widen the dates or check the place']
    >>> _no_match(StacQuery()).split(" here ")[1]
    '(outside every tile, or all too cloudy); widen the dates or raise max_cloud'
    """
    text = _NO_MATCH.format(collection=q.collection, start=q.start, end=q.end)
    if has_cloud_cover(q.collection):
        return f"{text} (outside every tile, or all too cloudy); widen the dates or raise " \
               "max_cloud"
    return f"{text} (outside every tile of those dates); widen the dates or check the place"


def _explain(q: StacQuery, footprints: gpd.GeoSeries, missing: dict[str, str],
             search_area) -> None:
    """Say why a filtered search found nothing for a feature: the filter, or no item at all.

    For the features of a group that got no item while a filter was given, the group's area
    is searched again without it: no item at all means the feature lies outside every tile
    of the dates; items there mean the filter dropped them all, and the reason lists the
    values the filtered properties take on those items (the provider's own spelling).
    """
    expr = provider_cql2(q)
    todo = [fid for fid, why in missing.items() if isinstance(why, NoItems)]
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
            missing[fid] = NoItems(
                f"no {q.collection} item covers this feature between {q.start} and {q.end} "
                "(outside every tile of those dates); check the place, the dates and the "
                "collection")
            continue
        seen = []
        for prop in props:
            values = sorted({json.dumps(it.properties.get(prop)) for it in hits})
            seen.append(f"{prop} is {', '.join(values[:6])}{' ...' if len(values) > 6 else ''}")
        missing[fid] = NoItems(
            f"{len(hits)} {q.collection} items cover this feature between {q.start} and "
            f"{q.end}, but none matches the query {shorten(json.dumps(expr), 160)}; on them "
            f"{'; '.join(seen)}; widen the query"
            f"{' (or max_cloud)' if has_cloud_cover(q.collection) else ''}")


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
            missing[fid] = NoItems(_no_match(q))
