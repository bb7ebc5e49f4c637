"""One lazy, dask-backed cube per feature, planned once per search group.

Owns: :func:`open_cubes` (one :class:`~xsits.cube.spec.CubeSpec`, ``aoi -> grid -> search
-> plan -> load``: each feature's pixel
grid from :mod:`xsits.cube.grid`, its items from :mod:`xsits.stac.search`, one
:class:`~xsits.cube.plan.ItemsPlan` per search group from :mod:`xsits.cube.plan`, one lazy cube per
feature cut from it) and :func:`load_cube` (the same for one list of items). Bands keep the
file's dtype and nodata (read from the first file's header when the items have no
``raster:bands``). Nothing is read until ``.compute()`` but those headers.
Must not: read pixels (:mod:`xsits.io.reader`), reproject, or group and fuse dates otherwise
than odc-stac does (:mod:`xsits.cube.plan`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import odc.stac
import pystac
import rasterio
import xarray as xr
from odc.geo.geobox import GeoBox

from xsits._common import relaxed_gc, single_threaded_blas
from xsits.cube.aoi import read_aoi
from xsits.cube.clip import clip as clip_cube
from xsits.cube.clip import with_geometry
from xsits.cube.cost import Cost, cost
from xsits.cube.dates import time_coords
from xsits.cube.grid import (
    GridSpec,
    feature_centre,
    feature_geoboxes,
    footprints_4326,
    validate_resampling,
)
from xsits.cube.plan import (
    ItemsPlan,
    build_cube,
    consistent_groups,
    href,
    plan_feature,
    plan_items,
)
from xsits.cube.spec import CubeSpec
from xsits.errors import LoadError, UnreadableGroupError
from xsits.io import earthdata, signing
from xsits.io.fetch import gdal_s3_env
from xsits.io.tiff import headers
from xsits.stac import collections
from xsits.stac.query import StacQuery
from xsits.stac.search import NoItems, SearchResult, iter_search, merge_results

#: GDAL settings for the reads GDAL does (many small HTTP range reads). Retries are
#: xsits.io.retry's, around each read.
GDAL_HTTP_DEFAULTS: dict[str, Any] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_INGESTED_BYTES_AT_OPEN": 32768,
    "VSI_CACHE": True, "VSI_CACHE_SIZE": 64_000_000,
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff",
    "GDAL_HTTP_VERSION": 2,
}


class Cubes(dict):
    """``{feature_id: xr.Dataset}`` plus why the other features have no cube.

    Attributes
    ----------
    missing
        ``{feature_id: reason}`` for features without a cube (no item, failed search...).
    search
        The :class:`~xsits.stac.search.SearchResult` the cubes were built from.

    Examples
    --------
    >>> c = Cubes({}, missing={"9": "no item"})
    >>> len(c), c.missing
    (0, {'9': 'no item'})
    """

    def __init__(self, cubes=(), *, missing=None, search=None) -> None:
        super().__init__(cubes)
        self.missing: dict[str, str] = dict(missing or {})
        self.search: SearchResult | None = search


def configure_gdal(client=None, **overrides: Any) -> None:
    """Apply :data:`GDAL_HTTP_DEFAULTS`, the S3 settings and ``overrides`` here and on workers.

    The S3 settings are :func:`xsits.io.fetch.gdal_s3_env` (the option ``s3`` and the AWS
    environment), so GDAL reads ``s3://`` hrefs as the fast reader does.

    Examples
    --------
    >>> configure_gdal(GDAL_HTTP_TIMEOUT=60)
    """
    odc.stac.configure_rio(**{**GDAL_HTTP_DEFAULTS, **gdal_s3_env(), **overrides},
                           client=client)


def band_config(items: Sequence[pystac.Item], bands: Sequence[str]) -> dict[str, Any]:
    """odc-stac's ``stac_cfg`` giving each band the dtype and nodata of its file's header.

    Items without ``raster:bands`` (Planetary Computer, Earth Search) say nothing of a band's
    dtype and odc-stac would load it as float32; the header of the band's first file says
    (GDAL reads it when xsits' reader cannot; a file that cannot be read gives way to the next
    item's: one broken file must not cost its whole search group). Bands with
    ``raster:bands`` keep theirs.

    Examples
    --------
    >>> band_config([], ["B04"])
    {}
    """
    assets: dict[str, dict[str, Any]] = {}
    todo: dict[str, list[pystac.Item]] = {}  # per asset: the items that have it
    for band in bands:
        asset = band.split(".")[0]
        have = [it for it in items if asset in it.assets]
        if not have or have[0].assets[asset].extra_fields.get("raster:bands"):
            continue
        todo[asset] = have
    if not todo:
        return {}
    # every band's first file at once (signed now if it needs a token)
    firsts = headers([signing.sign(href(have[0], a)) for a, have in todo.items()])
    for (asset, have), head in zip(todo.items(), firsts, strict=True):
        uri = head.uri if not isinstance(head, BaseException) else ""
        why = {have[0].id: str(head)} if isinstance(head, BaseException) else {}
        for it in have[1:] if why else ():
            uri = signing.sign(href(it, asset))  # one broken file does not decide: the next
            (head,) = headers([uri])
            if not isinstance(head, BaseException):
                break
            why[it.id] = str(head)
        if isinstance(head, BaseException):
            raise UnreadableGroupError(str(head), why) from head
        if head.dtype == "?":  # a file tifffile does not read: ask GDAL
            def gdal_header(uri: str = uri) -> tuple[str, Any]:
                with rasterio.Env(**GDAL_HTTP_DEFAULTS), rasterio.open(uri) as f:
                    return f.dtypes[0], f.nodata

            dtype, nodata = earthdata.with_gdal_token(uri, gdal_header)
        else:
            dtype, nodata = head.dtype, head.nodata
        if nodata is not None and np.dtype(dtype).kind in "iu" and float(nodata).is_integer():
            nodata = int(nodata)
        assets[f"{asset}.*"] = {"data_type": dtype, "nodata": nodata}
    if any(it.collection_id is None for it in items):
        return {"assets": assets}  # odc-stac's configuration of items without a collection
    return {"*": {"assets": assets}}


def load_cube(
    items: Sequence[pystac.Item],
    geobox: GeoBox,
    *,
    bands: Sequence[str],
    chunks: Mapping[str, int] | None = None,
    resampling: str | Mapping[str, str] = "nearest",
    attrs: Mapping[str, Any] | None = None,
    stac_cfg: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Lazily load ``items`` onto ``geobox`` as one cube (``groupby="solar_day"``).

    Parameters
    ----------
    items
        STAC items covering the geobox (from :func:`xsits.search`).
    geobox
        Output pixel grid (from :func:`xsits.cube.grid.feature_geobox`).
    bands
        Asset keys to load (``"asset.2"``: band 2 of a multi-band asset); each becomes a data
        variable.
    chunks
        Dask chunks. Default :data:`xsits.cube.plan.CHUNKS`: one band, up to 2048x2048 pixels and
        :data:`xsits.cube.plan.CHUNK_BYTES` per chunk (every date of a small cube in one task).
    resampling
        Resampling when the output grid is not the native one, for all bands or per band.
        Default ``"nearest"`` (``SCL`` is always nearest).
    attrs
        Provenance attributes to set.
    stac_cfg
        odc-stac's band configuration; default :func:`band_config` (the files' dtypes).

    Returns
    -------
    xarray.Dataset
        Dims ``(time, y, x)``, lazy, with per-date coordinates
        (:func:`xsits.cube.dates.time_coords`).

    Examples
    --------
    >>> import datetime as dt, tempfile, numpy as np, pystac, rasterio
    >>> from rasterio.transform import from_origin
    >>> path = tempfile.mktemp(suffix=".tif")
    >>> with rasterio.open(path, "w", driver="COG", width=64, height=64, count=1,
    ...                    dtype="uint16", crs="EPSG:32632", nodata=0,
    ...                    transform=from_origin(600000, 5600000, 10, 10)) as f:
    ...     f.write(np.full((1, 64, 64), 7, "uint16"))
    >>> box = GeoBox.from_bbox((600100, 5599700, 600300, 5599900), "EPSG:32632",
    ...                        resolution=20)
    >>> item = pystac.Item("a", box.geographic_extent.json, None, dt.datetime(2024, 1, 1),
    ...                    {"proj:epsg": 32632})
    >>> item.add_asset("B04", pystac.Asset(path, roles=["data"]))
    >>> cube = load_cube([item], box, bands=["B04"])
    >>> cube.B04.dtype.name, cube.B04.attrs["nodata"], int(cube.B04.max())
    ('uint16', 0, 7)
    """
    try:
        cfg = band_config(items, bands) if stac_cfg is None else stac_cfg
        plan = plan_items(items, bands, stac_cfg=cfg, resampling=_resampling(resampling))
        return cube_of(plan, range(len(plan.items)), geobox, chunks=chunks, attrs=attrs)
    except LoadError:
        raise
    except Exception as err:
        raise LoadError(f"cannot build the cube: {err}") from err


def _resampling(resampling: str | Mapping[str, str]) -> Mapping[str, str]:
    """Per band resampling (``SCL`` always nearest)."""
    if isinstance(resampling, str):
        return {"*": resampling, "SCL": "nearest", "scl": "nearest"}
    return resampling


def cube_of(plan: ItemsPlan, positions: Sequence[int], geobox: GeoBox, *,
            chunks: Mapping[str, int] | None = None, attrs: Mapping[str, Any] | None = None
            ) -> xr.Dataset:
    """The lazy cube of the items at ``positions`` of ``plan`` on ``geobox``.

    :func:`xsits.cube.plan.plan_feature` and :func:`xsits.cube.plan.build_cube`, with the per-date
    coordinates (:func:`xsits.cube.dates.time_coords`), ``attrs`` and bands' ``raster:bands``
    scale / offset.

    Examples
    --------
    >>> import datetime as dt, pystac
    >>> gb = GeoBox.from_bbox((600000, 5599000, 601000, 5600000), "EPSG:32632", resolution=10)
    >>> it = pystac.Item("a", gb.geographic_extent.json, None, dt.datetime(2024, 1, 1),
    ...                  {"proj:epsg": 32632, "platform": "sentinel-2a"})
    >>> it.add_asset("B04", pystac.Asset("/data/B04.tif", roles=["data"]))
    >>> p = plan_items([it], ["B04"], stac_cfg={"assets": {"B04": {"data_type": "uint16"}}})
    >>> cube_of(p, [0], gb[:2, :2]).platform.values.tolist()
    ['Sentinel-2A']
    """
    fp = plan_feature(plan, positions, geobox, chunks=chunks)
    kept = consistent_groups(plan, fp.groups)
    if kept != fp.groups:  # a date's items disagreed on the offset: plan without the minority
        fp = plan_feature(plan, [i for g in kept for i in g], geobox, chunks=chunks)
    ds = build_cube(plan, fp, time_coords([[plan.items[i] for i in g] for g in fp.groups]))
    for name in ds.data_vars:
        ds[name].attrs.update(collections.asset_scale(plan.items, str(name)))
    ds.attrs.update(attrs or {})
    return ds


def base_attrs(q: StacQuery, grid: GridSpec) -> dict[str, Any]:
    """The provenance attributes every cube of a query and grid carries.

    Examples
    --------
    >>> sorted(base_attrs(StacQuery(), GridSpec()))
    ['collection', 'end', 'mode', 'query', 'resolution', 'stac', 'start']
    """
    return {"collection": q.collection, "stac": q.endpoint, "query": q.describe(),
            "mode": grid.mode, "resolution": float(grid.resolution), "start": q.start,
            "end": q.end}


def feature_attrs(base: Mapping[str, Any], fid: str, geometry: Any, crs: Any, gbox: GeoBox,
                  grid: GridSpec) -> dict[str, Any]:
    """One feature's cube attributes: ``base`` and its id, CRS, centre and patch size."""
    cx, cy = feature_centre(geometry, crs, gbox.crs)
    attrs = {**base, "feature_id": fid, "crs": str(gbox.crs), "center_x": cx, "center_y": cy}
    if grid.mode == "patch":
        attrs["patch_size"] = f"{grid.size[0]}x{grid.size[1]}"
    return attrs


def renames(q: StacQuery) -> dict[str, str]:
    """``{asset key: band name}`` for the bands a provider names its own way.

    Examples
    --------
    >>> renames(StacQuery(stac="earth-search", bands=("B04",)))
    {'red': 'B04'}
    """
    return {a: b for b, a in q.assets.items() if a != b}


@dataclass(frozen=True)
class GroupPlan:
    """One search group, planned: its items parsed once and each feature's share of them.

    Attributes
    ----------
    search
        The group's :class:`~xsits.stac.search.SearchResult`.
    items
        Its :class:`~xsits.cube.plan.ItemsPlan` (None when it found no item).
    positions
        ``{feature_id: [item positions]}``: each feature's items in ``items``.
    missing
        ``{feature_id: reason}`` for the group's features without a cube.
    geoboxes
        ``{feature_id: GeoBox}``: each feature's output grid.
    renames
        ``{asset key: band name}`` (:func:`renames`).
    """

    search: SearchResult
    items: ItemsPlan | None
    positions: dict[str, list[int]]
    missing: dict[str, str]
    geoboxes: dict[str, GeoBox]
    renames: dict[str, str]


def iter_plans(aoi: gpd.GeoDataFrame, q: StacQuery, geoboxes: Mapping[str, GeoBox], *,
               resampling: Mapping[str, str] | str = "nearest",
               search_result: SearchResult | None = None, client=None
               ) -> Iterator[GroupPlan]:
    """Search group by group and plan each group once, as soon as its search returns.

    Examples
    --------
    >>> import xsits
    >>> from xsits.demo import demo_aoi, demo_catalog_path
    >>> from xsits.cube.grid import GridSpec, feature_geoboxes
    >>> aoi = demo_aoi()
    >>> q = xsits.StacQuery(stac=str(demo_catalog_path()), start="2024-04-01",
    ...                     end="2024-04-30", bands=("B04",))
    >>> boxes = feature_geoboxes(aoi, GridSpec(mode="patch", size=(1, 1)))
    >>> plans = list(iter_plans(aoi, q, boxes))
    >>> sum(len(p.positions) for p in plans)
    6
    """
    parts = [search_result] if search_result is not None else iter_search(
        aoi, q, footprints=footprints_4326(dict(geoboxes)), client=client)
    assets = list(q.assets.values())
    band_cfgs: dict[tuple, dict[str, Any]] = {}
    for part in parts:
        mine = {f: its for f, its in part.items.items() if f in geoboxes}
        missing = dict(part.missing)
        try:
            plan = _plan_part(mine, assets, resampling, band_cfgs)
        except LoadError as err:  # each feature told of its own item's failure if known
            plan, by_item = None, err.by_item if isinstance(err, UnreadableGroupError) else {}
            missing.update({fid: f"feature {fid!r}: " + next(
                (by_item[it.id] for it in its if it.id in by_item), str(err))
                for fid, its in mine.items()})
        positions = {} if plan is None else \
            {fid: [plan.position(it) for it in its] for fid, its in mine.items()}
        yield GroupPlan(part, plan, positions, missing,
                        {fid: geoboxes[fid] for fid in positions}, renames(q))


def _plan_part(items_of: Mapping[str, Sequence[pystac.Item]], assets: Sequence[str],
               resampling: Mapping[str, str], band_cfgs: dict[tuple, dict[str, Any]]
               ) -> ItemsPlan | None:
    """One :class:`~xsits.cube.plan.ItemsPlan` for a search group's items (each parsed once)."""
    unique = {(it.collection_id, it.id): it for its in items_of.values() for it in its}
    if not unique:
        return None
    items = list(unique.values())
    key = (items[0].collection_id, tuple(assets))
    try:
        if key not in band_cfgs:  # one header per band and collection
            band_cfgs[key] = band_config(items, assets)
        return plan_items(items, assets, stac_cfg=band_cfgs[key],
                          resampling=_resampling(resampling))
    except LoadError:
        raise
    except Exception as err:
        raise LoadError(f"cannot build the cube: {err}") from err


def open_cubes(
    aoi: gpd.GeoDataFrame | str,
    *,
    spec: CubeSpec | None = None,
    id_column: str | None = None,
    search_result: SearchResult | None = None,
    client=None,
    on_group: Callable[[Cubes], Any] | None = None,
    on_plan: Callable[[GroupPlan], bool] | None = None,
    **spec_kwargs: Any,
) -> Cubes:
    """Lazy dask-backed cubes ``{feature_id: xr.Dataset}``, one per feature, from one call.

    Parameters
    ----------
    aoi
        GeoDataFrame from :func:`xsits.read_aoi`, or a path handed to it.
    spec
        The search, grid and load as one :class:`~xsits.cube.spec.CubeSpec` (default: the
        defaults), changed by ``spec_kwargs``.
    **spec_kwargs
        Fields of the spec by name (:data:`xsits.cube.spec.SPEC_ARGS`): the search
        ``stac, collection, bands, start, end, query, filter, max_cloud, limit`` (see
        :class:`xsits.StacQuery`: ``stac`` is a preset, an API URL or a local
        ItemCollection / catalog path); the grid ``crs, resolution, mode, buffer, size``
        (see :class:`xsits.GridSpec`: ``size`` may be one int for a square patch); the load
        ``chunks, resampling, clip, all_touched`` (see :class:`~xsits.cube.spec.LoadSpec`:
        ``clip`` sets the pixels outside a polygon feature to NaN or nodata). Polygon cubes
        always carry their polygon (``attrs["geometry"]``, for :class:`xsits.ops.steps.clip`).
    id_column
        When ``aoi`` is a path: the id column for :func:`xsits.read_aoi`.
    search_result
        Reuse an earlier :func:`xsits.search` result (e.g. Intake's ``discover()``).
    client
        A pystac-client ``Client`` to reuse.
    on_group
        Called with the :class:`Cubes` of each group of nearby features as soon as its search
        returns and its cubes are built, while later groups still search: a consumer in
        another thread can start computing them (:func:`xsits.compute_all` does).
    on_plan
        Called with each group's :class:`GroupPlan` before its cubes are built; when it
        returns True the caller has taken the group and no cube of it is built
        (:func:`xsits.sample` reads points without cubes this way).

    Returns
    -------
    Cubes
        A dict of lazy Datasets; ``.missing`` says why a feature has no cube.

    Examples
    --------
    The offline demo world (:mod:`xsits.demo`) as the STAC catalog; any API root or preset
    (``stac="planetary-computer"``) works the same way.

    >>> import xsits
    >>> from xsits.demo import demo_aoi, demo_catalog_path
    >>> cubes = xsits.open_cubes(demo_aoi(), stac=str(demo_catalog_path()),
    ...                          start="2024-04-01", end="2024-05-31", max_cloud=30,
    ...                          resolution=20, crs="EPSG:3035", mode="patch", size=(10, 10))
    >>> sorted(cubes), cubes["7"].B04.dims, cubes["7"].B04.shape
    (['1', '10', '3', '4', '5', '7'], ('time', 'y', 'x'), (9, 10, 10))
    >>> cubes["7"].attrs["crs"], cubes["7"].B04.dtype.name
    ('EPSG:3035', 'uint16')
    """
    if not isinstance(aoi, gpd.GeoDataFrame) or "feature_id" not in aoi.columns:
        aoi = read_aoi(aoi, id_column=id_column)  # a raw GeoDataFrame gets its ids here too
    spec = CubeSpec.from_kwargs(spec, **spec_kwargs)
    q = spec.query if search_result is None else search_result.query
    grid, load = spec.grid, spec.load
    resampling = validate_resampling(load.resampling, bands=q.bands)
    geoboxes = feature_geoboxes(aoi, grid)
    configure_gdal()
    base = base_attrs(q, grid)
    geoms = dict(zip(aoi["feature_id"], aoi.geometry, strict=True))
    built: dict[str, xr.Dataset] = {}
    missing: dict[str, str] = {}
    taken: set[str] = set()  # features of the groups on_plan took
    done: list[SearchResult] = []
    with relaxed_gc(), single_threaded_blas():  # see their docstrings
        # each group's cubes are built as soon as its search returns, while others still search
        for gp in iter_plans(aoi, q, geoboxes, resampling=resampling,
                             search_result=search_result, client=client):
            done.append(gp.search)
            missing.update(gp.missing)
            if on_plan is not None and on_plan(gp):
                taken.update(gp.positions)
                continue
            group = Cubes(missing=dict(gp.missing), search=gp.search)
            for fid, positions in gp.positions.items():
                gbox = geoboxes[fid]
                try:
                    cube = cube_of(gp.items, positions, gbox, chunks=load.chunks,
                                   attrs=feature_attrs(base, fid, geoms[fid], aoi.crs, gbox,
                                                       grid))
                except Exception as err:
                    why = err if isinstance(err, LoadError) else f"cannot build the cube: {err}"
                    missing[fid] = group.missing[fid] = f"feature {fid!r}: {why}"
                    continue
                if geoms[fid].geom_type in ("Polygon", "MultiPolygon"):
                    cube = with_geometry(cube, geoms[fid], crs=aoi.crs)
                    if load.clip:
                        cube = clip_cube(cube, all_touched=load.all_touched)
                built[fid] = group[fid] = cube.rename(renames(q))
            if on_group is not None:
                on_group(group)
    result = search_result if search_result is not None else merge_results(done, q)
    cubes = Cubes(missing={}, search=result)
    for fid in geoms:  # the AOI's order
        if fid in built:
            cubes[fid] = built[fid]
        elif fid not in taken:
            cubes.missing[fid] = missing.get(fid, NoItems("no item found"))
    return cubes


def dry_run(aoi: gpd.GeoDataFrame | str, *, read_headers: bool = True,
            **open_kwargs: Any) -> Cost:
    """What :func:`open_cubes` with these arguments would read, without reading a pixel.

    The searches run and each search group is planned (:func:`xsits.cube.cost.cost`): features,
    items, files, blocks, requests and bytes.

    Parameters
    ----------
    aoi
        As for :func:`open_cubes`.
    read_headers
        Read each file's header for exact block layouts and sizes (one request per file,
        which a load then reuses); else estimate them from the item grids.
    **open_kwargs
        :func:`open_cubes`' arguments (``stac``, ``bands``, ``mode``, ``size``...).

    Returns
    -------
    xsits.cube.cost.Cost
        The totals (``print`` it for one line).

    Examples
    --------
    >>> from xsits.demo import demo_aoi, demo_catalog_path
    >>> c = dry_run(demo_aoi(), stac=str(demo_catalog_path()), start="2024-04-01",
    ...             end="2024-04-30", bands=["B04"], mode="patch", size=(5, 5))
    >>> c.features, c.files == c.items, c.requests >= c.files
    (6, True, True)
    """
    total = [Cost(exact=read_headers)]

    def take(gp: GroupPlan) -> bool:
        if gp.items is not None and gp.positions:
            total[0] += cost(gp.items, gp.positions, gp.geoboxes, read_headers=read_headers)
        return True

    open_cubes(aoi, on_plan=take, **open_kwargs)
    return total[0]
