"""One lazy, dask-backed cube per feature: ``odc.stac.load`` with xsits' reader driver.

Owns: :func:`open_cubes` (``aoi -> grid -> search -> load``: each feature's pixel grid from
:mod:`xsits.grid`, its items from :mod:`xsits.stac`, one lazy cube each) and
:func:`load_cube` (one ``odc.stac.load(..., groupby="solar_day", driver=CogDriver(...))``).
Bands keep the file's dtype and nodata (read from the first file's header when the items have
no ``raster:bands``). Nothing is read until ``.compute()`` but those headers.
Must not: read pixels (:mod:`xsits.reader`), reproject, group or fuse dates (odc-stac).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import odc.stac
import pystac
import xarray as xr
from odc.geo.geobox import GeoBox

from xsits import providers, signing
from xsits._common import relaxed_gc, single_threaded_blas
from xsits.aoi import read_aoi
from xsits.clip import clip as clip_cube
from xsits.clip import with_geometry
from xsits.errors import LoadError
from xsits.fetch import gdal_s3_env
from xsits.grid import (
    GridSpec,
    feature_centre,
    feature_geoboxes,
    footprints_4326,
    validate_resampling,
)
from xsits.offset import consistent_dates, item_offsets
from xsits.reader import CogDriver
from xsits.stac import SearchResult, StacQuery, iter_search, merge_results
from xsits.tiff import headers
from xsits.tolerate import READS_ATTR, TolerantDriver

#: Per-date coordinates: ``{coordinate: (the value of one item's properties, default)}``,
#: read in every provider's dialect (:mod:`xsits.providers`). A date's value is its items'
#: one value when they agree, else (items of several tiles fused) strings are joined with
#: ``"+"`` in sorted order, ``cloud_cover`` is the largest and booleans are True only when
#: every item's is. ``offset_removed`` (:mod:`xsits.offset`) is added beside them.
TIME_PROPERTIES: dict[str, tuple[Callable[[Mapping[str, Any]], Any], Any]] = {
    "cloud_cover": (providers.item_cloud_cover, np.nan),
    "platform": (providers.item_platform, ""),
    "processing_baseline": (providers.item_baseline, ""),
    "mgrs_tile": (providers.item_mgrs_tile, ""),
    "boa_offset_applied": (providers.item_offset_flag, False),
}

#: GDAL settings for the reads GDAL does (many small HTTP range reads). Retries are
#: xsits.retry's, around each read.
GDAL_HTTP_DEFAULTS: dict[str, Any] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_INGESTED_BYTES_AT_OPEN": 32768,
    "VSI_CACHE": True,
    "VSI_CACHE_SIZE": 64_000_000,
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff",
    "GDAL_HTTP_VERSION": 2,
}

#: Default dask chunks of a cube: up to 2048x2048 pixels, and as many dates of one band as
#: fit in :data:`CHUNK_BYTES` (all dates of a small cube: few tasks).
CHUNKS: dict[str, int] = {"y": 2048, "x": 2048}
#: Target size of one chunk of the default chunking (``uint16`` pixels).
CHUNK_BYTES = 32 * 2**20


class Cubes(dict):
    """``{feature_id: xr.Dataset}`` plus why the other features have no cube.

    Attributes
    ----------
    missing
        ``{feature_id: reason}`` for features without a cube (no item, failed search...).
    search
        The :class:`~xsits.stac.SearchResult` the cubes were built from.

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

    The S3 settings are :func:`xsits.fetch.gdal_s3_env` (the option ``s3`` and the AWS
    environment), so GDAL reads ``s3://`` hrefs as the fast reader does.

    Examples
    --------
    >>> configure_gdal(GDAL_HTTP_TIMEOUT=60)
    """
    odc.stac.configure_rio(**{**GDAL_HTTP_DEFAULTS, **gdal_s3_env(), **overrides},
                           client=client)


def solar_groups(items: Sequence[pystac.Item], lon: float) -> list[list[pystac.Item]]:
    """Group items by solar day at longitude ``lon``, in date order.

    The dates of ``odc.stac.load(groupby="solar_day")``'s cube: its per-date coordinates
    (:data:`TIME_PROPERTIES`) come from every item of each group.

    Examples
    --------
    >>> import datetime as dt, pystac
    >>> def item(i, hour):
    ...     return pystac.Item(i, None, None, dt.datetime(2024, 5, 1, hour), {})
    >>> [[it.id for it in g] for g in solar_groups([item("b", 23), item("a", 10)], lon=15)]
    [['a'], ['b']]
    """
    shift = dt.timedelta(hours=lon / 15)

    def key(it: pystac.Item) -> dt.date:
        return (it.datetime + shift).date()

    ordered = sorted(items, key=lambda it: (key(it), it.datetime, it.id))
    return [list(g) for _, g in itertools.groupby(ordered, key=key)]


def _time_coords(groups: list[list[pystac.Item]]) -> dict[str, tuple[str, np.ndarray]]:
    """Per-date coordinates from every item of each solar-day group (:data:`TIME_PROPERTIES`).

    Plus ``offset_removed``: True where the date's reflectance DN carry no +1000 offset (never
    had it, or the provider removed it), per item by :func:`xsits.offset.item_offsets`; the
    items of one date agree (:func:`_offset_consistent`).
    """
    coords = {}
    for name, (read, default) in TIME_PROPERTIES.items():
        per_date = [[read(it.properties) for it in g] for g in groups]
        if isinstance(default, bool):
            arr = np.array([all(bool(v) for v in vs) for vs in per_date], dtype=bool)
        elif isinstance(default, float):
            arr = np.array([np.nan if all(np.isnan(vs)) else np.nanmax(vs) for vs in per_date],
                           dtype="float64")
        else:
            arr = np.array(["+".join(sorted({str(v) for v in vs})) for vs in per_date],
                           dtype=str)
        coords[name] = ("time", arr)
    offsets = item_offsets([it for g in groups for it in g])
    coords["offset_removed"] = ("time", np.array([not any(offsets[it.id] for it in g)
                                                  for g in groups], dtype=bool))
    return coords


def _offset_consistent(items: Sequence[pystac.Item], groups: list[list[pystac.Item]]
                       ) -> tuple[list[pystac.Item], list[list[pystac.Item]]]:
    """Drop the items whose offset decision differs from the rest of their date.

    See :func:`xsits.offset.consistent_dates`; the other items keep their order.
    """
    kept = consistent_dates(groups, item_offsets(list(items)))
    ids = {it.id for g in kept for it in g}
    return [it for it in items if it.id in ids], kept


def _tolerant_driver(items: Sequence[pystac.Item], bands: Sequence[str],
                     sources: Sequence[tuple[str, bool]], geobox: GeoBox) -> TolerantDriver:
    """The reader driver of a load: a broken file costs its item's date (:mod:`xsits.tolerate`).

    Its record's key is the load's own (the same files on the same grid: the same key).
    """
    import dask.base

    names = {_href(it, b.split(".")[0]): it.id for it in items for b in bands
             if b.split(".")[0] in it.assets}
    token = dask.base.tokenize(sorted(names.items()), geobox, list(bands))
    return TolerantDriver(CogDriver(sources), names, token)


def _href(item: pystac.Item, asset: str) -> str:
    return item.assets[asset].get_absolute_href() or item.assets[asset].href


def band_config(items: Sequence[pystac.Item], bands: Sequence[str]) -> dict[str, Any]:
    """odc-stac's ``stac_cfg`` giving each band the dtype and nodata of its file's header.

    Items without ``raster:bands`` (Planetary Computer, Earth Search) say nothing of a band's
    dtype and odc-stac would load it as float32; the header of the band's first file says
    (GDAL reads it when xsits' reader cannot). Bands with ``raster:bands`` keep theirs.

    Examples
    --------
    >>> band_config([], ["B04"])
    {}
    """
    assets: dict[str, dict[str, Any]] = {}
    todo = {}
    for band in bands:
        asset = band.split(".")[0]
        it = next((it for it in items if asset in it.assets), None)
        if it is None or it.assets[asset].extra_fields.get("raster:bands"):
            continue
        todo[asset] = signing.sign(_href(it, asset))  # a token now if it needs one
    if not todo:
        return {}
    for (asset, href), head in zip(todo.items(), headers(list(todo.values())), strict=True):
        if isinstance(head, BaseException):
            raise LoadError(str(head)) from head
        if head.dtype == "?":  # a file tifffile does not read: ask GDAL
            import rasterio

            with rasterio.Env(**GDAL_HTTP_DEFAULTS), rasterio.open(href) as f:
                dtype, nodata = f.dtypes[0], f.nodata
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
        Output pixel grid (from :func:`xsits.grid.feature_geobox`).
    bands
        Asset keys to load (``"asset.2"``: band 2 of a multi-band asset); each becomes a data
        variable.
    chunks
        Dask chunks. Default :data:`CHUNKS`: one band, up to 2048x2048 pixels and
        :data:`CHUNK_BYTES` per chunk (every date of a small cube in one chunk).
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
        Dims ``(time, y, x)``, lazy, with per-date coordinates (see :data:`TIME_PROPERTIES`).

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
    ((lon, _),) = geobox.extent.centroid.to_crs("EPSG:4326").points
    groups = solar_groups(items, lon)
    items, groups = _offset_consistent(items, groups)
    if isinstance(resampling, str):
        resampling = {"*": resampling, "SCL": "nearest", "scl": "nearest"}
    small = chunks is None and all(n <= CHUNKS[d] for n, d in
                                   zip(geobox.shape.yx, "yx", strict=True)) and \
        len(groups) * geobox.shape.x * geobox.shape.y * 2 <= CHUNK_BYTES
    if chunks is None:
        ny, nx = (min(n, CHUNKS[d]) for n, d in zip(geobox.shape.yx, "yx", strict=True))
        per_chunk = max(1, min(len(groups), CHUNK_BYTES // (2 * ny * nx)))  # dates per chunk
        chunks = {**CHUNKS, "time": per_chunk}
    sources = [(_href(it, b.split(".")[0]),
                resampling.get(b, resampling["*"]) == "nearest")
               for it in items for b in bands if b.split(".")[0] in it.assets]
    try:
        cfg = band_config(items, bands) if stac_cfg is None else stac_cfg
        driver = _tolerant_driver(items, bands, sources, geobox)
        kwargs = dict(bands=list(bands), geobox=geobox, groupby="solar_day",
                      resampling=dict(resampling), fail_on_error=True, stac_cfg=dict(cfg),
                      driver=driver)
        if small:
            ds = _deferred(items, groups, kwargs)
        else:
            ds = odc.stac.load(items, chunks=dict(chunks), **kwargs)
    except LoadError:
        raise
    except Exception as err:
        raise LoadError(f"cannot build the cube: {err}") from err
    if ds.sizes["time"] != len(groups):  # pragma: no cover - guards against odc-stac changes
        raise LoadError("odc-stac grouped the items differently than expected")
    ds = ds.assign_coords(_time_coords(groups))
    ds.attrs.update(attrs or {})
    ds.attrs[READS_ATTR] = driver.token  # its failed reads: xsits.tolerate.failed_reads(ds)
    return ds


def _deferred(items: Sequence[pystac.Item], groups: list[list[pystac.Item]],
               kwargs: dict[str, Any]) -> xr.Dataset:
    """A small cube as one dask task that runs ``odc.stac.load`` itself when computed.

    The same pixels, dtypes and attributes as odc-stac's lazy graph (its template is
    odc-stac's own cube of the first date), for one task per feature instead of one per date
    and band, and odc-stac's planning done by the task (on a dask worker) instead of up front.
    """
    import dask
    import dask.array as da

    template = odc.stac.load(groups[0], chunks={}, **kwargs)
    times = [g[0].datetime.replace(tzinfo=None) for g in groups]
    token = dask.base.tokenize(*(it.id for it in items), kwargs["geobox"], list(kwargs))
    task = dask.delayed(_load_now, pure=True, traverse=False)(
        list(items), kwargs, np.array(times, dtype="datetime64[ns]"),
        dask_key_name=f"xsits-load-{token}")
    shape = (len(groups), *kwargs["geobox"].shape.yx)
    data = {}
    for name, var in template.data_vars.items():
        arr = da.from_delayed(task[name], shape, dtype=var.dtype, name=f"{name}-{token}")
        data[name] = xr.DataArray(arr, dims=var.dims, attrs=var.attrs)
        data[name].encoding = dict(var.encoding)
    coords = {k: v for k, v in template.coords.items() if "time" not in v.dims}
    coords["time"] = xr.DataArray(np.array(times, dtype="datetime64[ns]"), dims=("time",))
    return xr.Dataset(data, coords=coords, attrs=template.attrs)


def _load_now(items: list[pystac.Item], kwargs: dict[str, Any],
              times: np.ndarray) -> dict[str, np.ndarray]:
    """The deferred cube's task: ``odc.stac.load(..., chunks=None)`` (no dask), checked."""
    ds = odc.stac.load(items, chunks=None, **kwargs)
    if not np.array_equal(ds["time"].values.astype("datetime64[ns]"), times):
        raise LoadError("odc-stac dated the cube differently than planned")  # pragma: no cover
    return {name: var.values for name, var in ds.data_vars.items()}


def open_cubes(
    aoi: gpd.GeoDataFrame | str,
    *,
    stac: str = "planetary-computer",
    collection: str = "sentinel-2-l2a",
    bands: Sequence[str] = ("B03", "B04", "B08", "SCL"),
    start: str = "2024-01-01",
    end: str = "2024-12-31",
    query: Mapping[str, Any] | None = None,
    filter: Mapping[str, Any] | str | None = None,
    max_cloud: float | None = None,
    resolution: float = 10.0,
    crs: str | int = "utm",
    mode: str = "image",
    buffer: float = 0.0,
    size: tuple[int, int] | int = (10, 10),
    chunks: Mapping[str, int] | None = None,
    resampling: str | Mapping[str, str] = "nearest",
    id_column: str | None = None,
    search_result: SearchResult | None = None,
    clip: bool = False,
    all_touched: bool = False,
    client=None,
    on_group: Callable[[Cubes], Any] | None = None,
) -> Cubes:
    """Lazy dask-backed cubes ``{feature_id: xr.Dataset}``, one per feature, from one call.

    Parameters
    ----------
    aoi
        GeoDataFrame from :func:`xsits.read_aoi`, or a path handed to it.
    stac, collection, bands, start, end, query, filter, max_cloud
        The search: see :class:`xsits.StacQuery` (``stac`` is a preset, an API URL or a local
        ItemCollection / catalog path).
    resolution, crs, mode, buffer, size
        The grid: see :class:`xsits.GridSpec` (``size`` may be one int for a square patch).
    chunks, resampling
        Passed on to :func:`load_cube`.
    clip, all_touched
        For polygon features: set the pixels outside the polygon to NaN (float bands) or to
        the band's nodata (integer bands), see :func:`xsits.clip.clip`; ``all_touched`` keeps
        every pixel the polygon touches. Polygon cubes always carry their polygon
        (``attrs["geometry"]``, for :class:`xsits.steps.clip`).
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
    if isinstance(size, int):
        size = (size, size)
    q = StacQuery(stac=stac, collection=collection, start=start, end=end, bands=tuple(bands),
                  query=query, filter=filter, max_cloud=max_cloud)
    if search_result is not None:
        q = search_result.query
    grid = GridSpec(crs=crs, resolution=resolution, mode=mode, buffer=buffer, size=tuple(size))
    resampling = validate_resampling(resampling, bands=q.bands)
    geoboxes = feature_geoboxes(aoi, grid)
    configure_gdal()
    base = {
        "collection": q.collection,
        "stac": q.endpoint,
        "query": q.describe(),
        "mode": grid.mode,
        "resolution": float(grid.resolution),
        "start": q.start,
        "end": q.end,
    }
    geoms = dict(zip(aoi["feature_id"], aoi.geometry, strict=True))
    # each group's cubes are built as soon as its search returns, while others still search
    parts = [search_result] if search_result is not None else iter_search(
        aoi, q, footprints=footprints_4326(geoboxes), client=client)
    built: dict[str, xr.Dataset] = {}
    band_cfgs: dict[tuple, dict[str, Any]] = {}
    missing: dict[str, str] = {}
    done: list[SearchResult] = []
    with relaxed_gc(), single_threaded_blas():  # see their docstrings
        for part in parts:
            done.append(part)
            missing.update(part.missing)
            group = Cubes(missing=dict(part.missing), search=part)
            for fid, items in part.items.items():
                if fid not in geoms:
                    continue
                gbox = geoboxes[fid]
                cx, cy = feature_centre(geoms[fid], aoi.crs, gbox.crs)
                attrs = {**base, "feature_id": fid, "crs": str(gbox.crs), "center_x": cx,
                         "center_y": cy}
                if grid.mode == "patch":
                    attrs["patch_size"] = f"{grid.size[0]}x{grid.size[1]}"
                try:
                    assets = list(q.assets.values())
                    key = (items[0].collection_id, tuple(assets))
                    if key not in band_cfgs:  # one header per band and collection
                        band_cfgs[key] = band_config(items, assets)
                    cube = load_cube(items, gbox, bands=assets, chunks=chunks,
                                     resampling=resampling, attrs=attrs,
                                     stac_cfg=band_cfgs[key])
                except LoadError as err:
                    missing[fid] = group.missing[fid] = f"feature {fid!r}: {err}"
                    continue
                if geoms[fid].geom_type in ("Polygon", "MultiPolygon"):
                    cube = with_geometry(cube, geoms[fid], crs=aoi.crs)
                    if clip:
                        cube = clip_cube(cube, all_touched=all_touched)
                built[fid] = group[fid] = cube.rename({a: b for b, a in q.assets.items()
                                                       if a != b})
            if on_group is not None:
                on_group(group)
    result = search_result if search_result is not None else merge_results(done, q)
    cubes = Cubes(missing={}, search=result)
    for fid in geoms:  # the AOI's order
        if fid in built:
            cubes[fid] = built[fid]
        else:
            cubes.missing[fid] = missing.get(fid, "no item found")
    return cubes
