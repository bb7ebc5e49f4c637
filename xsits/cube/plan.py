"""Load plans: what every feature's cube reads, worked out once per search group.

Owns: :class:`ItemsPlan` (the items of one search group parsed once by odc-stac, their band
configuration, and one footprint per distinct item grid and output CRS) and
:class:`FeaturePlan` (one feature's dates, grouped by odc-stac's solar-day rule, and which
items feed which of its chunks), plus :func:`build_cube`, which hands a feature plan to
odc-loader's public :func:`odc.loader.chunked_load`. Planning a feature costs a few
milliseconds whatever the number of features: no footprint is reprojected per feature.
Must not: read pixels (:mod:`xsits.io.reader`), search (:mod:`xsits.stac.search`) or choose grids
(:mod:`xsits.cube.grid`).

The plan is odc-stac's own, step by step, with its public pieces: ``parse_items``,
``resolve_load_cfg``, ``resolve_chunk_shape``, ``GeoboxTiles.tiles`` on each item's
``safe_geometry``, solar days snapped to whole hours (``ParsedItem.solar_date_at``), items
ordered by (solar day, time, id). ``tests/test_conformance.py`` proves its cubes equal to
``odc.stac.load``'s.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array as da
import numpy as np
import odc.stac
import pystac
import xarray as xr
from odc.geo import geom
from odc.geo.geobox import GeoBox, GeoboxTiles
from odc.geo.xr import xr_coords
from odc.loader import chunked_load, resolve_chunk_shape, resolve_load_cfg

from xsits.cube.offset import consistent_dates, item_offsets
from xsits.io.fast import grid_key
from xsits.io.reader import CogDriver
from xsits.io.tolerate import READS_ATTR, TolerantDriver
from xsits.stac.collections import date_split

#: Default dask chunks of a cube: up to 2048x2048 pixels, and as many dates of one band as
#: fit in :data:`CHUNK_BYTES` (all dates of a small cube: few tasks).
CHUNKS: dict[str, int] = {"y": 2048, "x": 2048}
#: Target size of one chunk of the default chunking (``uint16`` pixels).
CHUNK_BYTES = 32 * 2**20
#: Chunk of a load without dask (odc-stac's ``DEFAULT_CHUNK_FOR_LOAD``).
DIRECT_CHUNK = 2048


def href(item: pystac.Item, asset: str) -> str:
    """The absolute href of an item's asset.

    Examples
    --------
    >>> import datetime as dt
    >>> it = pystac.Item("a", None, None, dt.datetime(2024, 1, 1), {})
    >>> it.add_asset("B04", pystac.Asset("https://example.com/a/B04.tif"))
    >>> href(it, "B04")
    'https://example.com/a/B04.tif'
    """
    return item.assets[asset].get_absolute_href() or item.assets[asset].href


@dataclass(frozen=True, eq=False)
class ItemsPlan:
    """The items of one search group, parsed once, ready to plan any feature on them.

    Attributes
    ----------
    items
        The STAC items, in the order features index them.
    parsed
        odc-stac's ``ParsedItem`` of each item (one ``parse_items`` call).
    bands
        The bands loaded (odc-stac's names, asset keys).
    load_cfg
        odc-loader's ``RasterLoadParams`` per band (``resolve_load_cfg``).
    meta
        odc-loader's ``RasterGroupMetadata`` of the bands.
    srcs
        Per item, its ``RasterSource`` per band.
    nearest
        Per band, whether it is resampled with ``"nearest"``.
    split_by
        Item properties that split a solar day into several dates (Sentinel-1:
        ``("sat:orbit_state",)``: an ascending and a descending pass are two dates);
        :func:`group_dates` keys dates by ``(solar day, *their values)``.
    """

    items: tuple[pystac.Item, ...]
    parsed: tuple[Any, ...]
    bands: tuple[str, ...]
    load_cfg: Mapping[str, Any]
    meta: Any
    srcs: tuple[Mapping[str, Any], ...]
    nearest: Mapping[str, bool]
    split_by: tuple[str, ...] = ()
    _footprints: dict[tuple, Any] = field(default_factory=dict, repr=False)
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def position(self, item: pystac.Item) -> int:
        """The index of ``item`` in :attr:`items` (by id and collection)."""
        if not self._index:
            self._index.update({(it.collection_id, it.id): i
                                for i, it in enumerate(self.items)})
        return self._index[(item.collection_id, item.id)]

    def footprint(self, i: int, crs: Any) -> geom.Geometry | None:
        """Item ``i``'s footprint in ``crs`` (odc-stac's ``safe_geometry``), once per grid.

        Items of one tile share one grid, hence one footprint: it is reprojected once per
        distinct (item grid, CRS), not once per item and feature.
        """
        mine = (i, str(crs))
        if mine not in self._footprints:
            parsed = self.parsed[i]
            grids = [g for g in parsed.geoboxes() if g.crs is not None]
            key = (grid_key(grids[0]), str(crs)) if grids else mine
            if key not in self._footprints:
                self._footprints[key] = parsed.safe_geometry(crs)
            self._footprints[mine] = self._footprints[key]
        return self._footprints[mine]

    def sources(self, positions: Sequence[int]) -> list[tuple[str, bool]]:
        """``(href, nearest)`` of every file of the items at ``positions``."""
        return [(src.uri, self.nearest[band]) for i in positions
                for band, src in self.srcs[i].items() if src is not None]


def plan_items(items: Sequence[pystac.Item], bands: Sequence[str], *,
               stac_cfg: Mapping[str, Any] | None = None,
               resampling: str | Mapping[str, str] = "nearest",
               split_by: Sequence[str] | None = None) -> ItemsPlan:
    """Parse ``items`` once: the :class:`ItemsPlan` every feature of their group is cut from.

    A floating-point band's missing pixels are NaN (its ``nodata`` attribute NaN), whatever
    its files' nodata value (Sentinel-1 RTC's -32768) or none: ``odc.stac.load(...,
    nodata=nan)``'s load (:func:`nan_fill`). Integer bands keep their nodata value.

    Parameters
    ----------
    items
        The items of one search group (every feature's items are among them).
    bands
        Asset keys to load (``"asset.2"``: band 2 of a multi-band asset).
    stac_cfg
        odc-stac's band configuration (e.g. :func:`xsits.cube.load.band_config`).
    resampling
        For all bands or per band (``{"*": ..., "SCL": "nearest"}``).
    split_by
        Item properties that split a solar day into dates (:attr:`ItemsPlan.split_by`);
        default: the items' collection's rule (:func:`xsits.stac.collections.date_split`).

    Examples
    --------
    >>> import datetime as dt
    >>> it = pystac.Item("a", {"type": "Point", "coordinates": [8.0, 49.0]}, [8, 49, 8, 49],
    ...                  dt.datetime(2024, 1, 1), {})
    >>> it.add_asset("B04", pystac.Asset("/data/B04.tif", roles=["data"]))
    >>> p = plan_items([it], ["B04"], stac_cfg={"assets": {"B04": {"data_type": "uint16"}}})
    >>> p.bands, p.load_cfg["B04"].dtype
    (('B04',), 'uint16')
    """
    parsed = tuple(odc.stac.parse_items(list(items), cfg=dict(stac_cfg or {})))
    if not parsed:
        raise ValueError("no item to plan")
    collection = parsed[0].collection
    to_load = collection.resolve_bands(list(bands))
    names = list(to_load)
    if isinstance(resampling, str):
        resampling = {"*": resampling}
    load_cfg = {b: nan_fill(cfg) for b, cfg in
                resolve_load_cfg(to_load, dict(resampling), fail_on_error=True).items()}
    nearest = {b: load_cfg[b].resampling == "nearest" for b in names}
    if split_by is None:
        split_by = date_split(items[0].collection_id)
    return ItemsPlan(
        items=tuple(items), parsed=parsed, bands=tuple(names), load_cfg=load_cfg,
        meta=collection.meta_for(names), srcs=tuple(p.resolve_bands(names) for p in parsed),
        nearest=nearest, split_by=tuple(split_by))


def nan_fill(cfg: Any) -> Any:
    """A band's load parameters with NaN for missing pixels when the band is floating-point.

    Its nodata value, if any, still marks the missing pixels of its files.

    Examples
    --------
    >>> from odc.loader import RasterLoadParams
    >>> nan_fill(RasterLoadParams(dtype="float32", fill_value=-32768)).fill_value
    nan
    >>> nan_fill(RasterLoadParams(dtype="int16", fill_value=-9999)).fill_value
    -9999
    """
    fill = getattr(cfg, "fill_value", None)
    if not hasattr(cfg, "patch") or cfg.dtype is None or np.dtype(cfg.dtype).kind != "f" or \
            (fill is not None and math.isnan(fill)):
        return cfg
    return cfg.patch(fill_value=math.nan)


def solar_lon(geobox: GeoBox) -> float:
    """The longitude odc-stac groups a cube's solar days at: its grid's centre.

    Examples
    --------
    >>> gb = GeoBox.from_bbox((8.0, 49.0, 8.2, 49.2), "EPSG:4326", resolution=0.1)
    >>> round(solar_lon(gb), 6)
    8.1
    """
    ((lon, _),) = geobox.extent.centroid.to_crs("EPSG:4326").points
    return lon


def solar_day(parsed: Any, lon: float) -> dt.date:
    """odc-stac's solar day of an item at ``lon`` (the offset snapped to whole hours).

    Examples
    --------
    >>> import datetime as dt, pystac
    >>> it = pystac.Item("a", None, None, dt.datetime(2024, 5, 1, 22, 30), {})
    >>> it.add_asset("B04", pystac.Asset("/data/B04.tif"))
    >>> (p,) = odc.stac.parse_items([it])
    >>> solar_day(p, 29.9), solar_day(p, 30.0)
    (datetime.date(2024, 5, 1), datetime.date(2024, 5, 2))
    """
    return parsed.solar_date_at(lon).date()


@dataclass(frozen=True)
class FeaturePlan:
    """One feature's load: its grid, dates and the items feeding each chunk.

    Attributes
    ----------
    geobox
        The output grid.
    groups
        Per date, the items fused into it (positions in the :class:`ItemsPlan`), in
        odc-stac's fusing order (time, then id).
    times
        The date of each group (its first item's time, no time zone).
    bins
        odc-loader's ``tyx_bins``: ``{(date, chunk row, chunk col): [item positions]}``.
    chunk_shape
        ``(dates, rows, cols)`` of a chunk; ``None`` for a cube read by one task.
    """

    geobox: GeoBox
    groups: tuple[tuple[int, ...], ...]
    times: tuple[dt.datetime, ...]
    bins: Mapping[tuple[int, int, int], list[int]]
    chunk_shape: tuple[int, ...] | None

    def gbt(self) -> GeoboxTiles:
        """The chunk tiling of :attr:`geobox`."""
        shape = self.chunk_shape or (1, DIRECT_CHUNK, DIRECT_CHUNK)
        return GeoboxTiles(self.geobox, (shape[1], shape[2]))


def date_key(plan: ItemsPlan, i: int, lon: float) -> tuple:
    """The date of item ``i``: its solar day at ``lon``, then its split values.

    The values of :attr:`ItemsPlan.split_by` as text (``""`` when absent).

    Examples
    --------
    >>> import datetime as dt
    >>> it = pystac.Item("a", None, None, dt.datetime(2024, 5, 1, 5),
    ...                  {"sat:orbit_state": "descending"})
    >>> it.add_asset("vv", pystac.Asset("/data/vv.tif"))
    >>> p = plan_items([it], ["vv"], stac_cfg={"assets": {"vv": {"data_type": "float32"}}},
    ...                split_by=["sat:orbit_state"])
    >>> date_key(p, 0, lon=15.0)
    (datetime.date(2024, 5, 1), 'descending')
    """
    props = plan.items[i].properties
    return (solar_day(plan.parsed[i], lon),
            *("" if props.get(k) is None else str(props[k]) for k in plan.split_by))


def group_dates(plan: ItemsPlan, positions: Sequence[int],
                lon: float) -> tuple[tuple[int, ...], ...]:
    """odc-stac's ``groupby="solar_day"``: items by solar day, each day by (time, id).

    A collection that splits solar days (:attr:`ItemsPlan.split_by`) groups by
    :func:`date_key` (odc-stac's ``groupby`` with that key); the dates of one solar day
    are then ordered by their first item's time.

    Examples
    --------
    >>> import datetime as dt
    >>> def item(i, hour):
    ...     it = pystac.Item(i, None, None, dt.datetime(2024, 5, 1, hour), {})
    ...     it.add_asset("B04", pystac.Asset("/data/B04.tif"))
    ...     return it
    >>> p = plan_items([item("b", 23), item("a", 10)], ["B04"],
    ...                stac_cfg={"assets": {"B04": {"data_type": "uint16"}}})
    >>> group_dates(p, [0, 1], lon=15.0)
    ((1,), (0,))
    """
    keys = {i: date_key(plan, i, lon) for i in positions}
    ordered = sorted(positions, key=lambda i: (keys[i], plan.parsed[i].nominal_datetime,
                                               plan.parsed[i].id))
    groups = [tuple(g) for _, g in itertools.groupby(ordered, key=keys.__getitem__)]
    if plan.split_by:  # a day's dates in time order (an ascending pass after a descending)
        groups.sort(key=lambda g: (keys[g[0]][0], plan.parsed[g[0]].nominal_datetime))
    return tuple(groups)


def consistent_groups(plan: ItemsPlan, groups: tuple[tuple[int, ...], ...]
                      ) -> tuple[tuple[int, ...], ...]:
    """Dates whose items agree on the Sentinel-2 offset (:func:`.offset.consistent_dates`).

    A date fuses its items' pixels, so it takes one offset decision: the items of a minority
    decision are dropped (with a warning naming them).

    Examples
    --------
    >>> import datetime as dt
    >>> it = pystac.Item("a", None, None, dt.datetime(2024, 1, 1), {})
    >>> it.add_asset("B04", pystac.Asset("/data/B04.tif"))
    >>> p = plan_items([it], ["B04"], stac_cfg={"assets": {"B04": {"data_type": "uint16"}}})
    >>> consistent_groups(p, ((0,),))
    ((0,),)
    """
    items = [[plan.items[i] for i in g] for g in groups]
    kept = consistent_dates(items, item_offsets([it for g in items for it in g]))
    return tuple(tuple(plan.position(it) for it in g) for g in kept)


def _small(geobox: GeoBox, n_dates: int) -> bool:
    """Whether a cube is read by one task (every date of every band in one chunk)."""
    return all(n <= CHUNKS[d] for n, d in zip(geobox.shape.yx, "yx", strict=True)) and \
        n_dates * geobox.shape.x * geobox.shape.y * 2 <= CHUNK_BYTES


def plan_feature(plan: ItemsPlan, positions: Sequence[int], geobox: GeoBox, *,
                 chunks: Mapping[str, int] | None = None, lon: float | None = None
                 ) -> FeaturePlan:
    """Plan one feature's cube on the items at ``positions`` of ``plan``.

    Parameters
    ----------
    plan
        Its search group's :class:`ItemsPlan`.
    positions
        The feature's items (positions in ``plan.items``).
    geobox
        The feature's output grid.
    chunks
        Dask chunks (``{"time": .., "y": .., "x": ..}``). Default: one task for a small cube
        (see :data:`CHUNK_BYTES`), else :data:`CHUNKS` and as many dates per chunk as fit.
    lon
        The longitude of its solar days (default: :func:`solar_lon` of ``geobox``).

    Examples
    --------
    >>> import datetime as dt
    >>> gb = GeoBox.from_bbox((600000, 5599000, 601000, 5600000), "EPSG:32632", resolution=10)
    >>> it = pystac.Item("a", gb.geographic_extent.json, None, dt.datetime(2024, 1, 1),
    ...                  {"proj:epsg": 32632})
    >>> it.add_asset("B04", pystac.Asset("/data/B04.tif", roles=["data"]))
    >>> p = plan_items([it], ["B04"], stac_cfg={"assets": {"B04": {"data_type": "uint16"}}})
    >>> fp = plan_feature(p, [0], gb[10:20, 10:20])
    >>> fp.groups, dict(fp.bins), fp.chunk_shape
    (((0,),), {(0, 0, 0): [0]}, None)
    """
    groups = group_dates(plan, positions, solar_lon(geobox) if lon is None else lon)
    times = tuple(plan.parsed[g[0]].nominal_datetime.replace(tzinfo=None) for g in groups)
    chunk_shape: tuple[int, ...] | None = None
    if chunks is not None or not _small(geobox, len(groups)):
        if chunks is None:
            ny, nx = (min(n, CHUNKS[d]) for n, d in zip(geobox.shape.yx, "yx", strict=True))
            chunks = {**CHUNKS, "time": max(1, min(len(groups), CHUNK_BYTES // (2 * ny * nx)))}
        chunk_shape = resolve_chunk_shape(len(groups), geobox, dict(chunks), cfg=plan.load_cfg,
                                          extra_dims=plan.meta.extra_dims_full())
    fp = FeaturePlan(geobox, groups, times, {}, chunk_shape)
    gbt = fp.gbt()
    crs = geobox.crs
    tiles: dict[int, list[tuple[int, int]]] = {}
    of_footprint: dict[int, list[tuple[int, int]]] = {}  # items of one grid share theirs
    for t, group in enumerate(groups):
        cells: dict[tuple[int, int], list[int]] = {}
        for i in group:
            if i not in tiles:
                footprint = plan.footprint(i, crs)
                if footprint is None:
                    raise ValueError(f"item {plan.items[i].id!r} has no footprint")
                if id(footprint) not in of_footprint:
                    of_footprint[id(footprint)] = list(gbt.tiles(footprint))
                tiles[i] = of_footprint[id(footprint)]
            for yx in tiles[i]:
                cells.setdefault(yx, []).append(i)
        fp.bins.update({(t, *yx): ii for yx, ii in cells.items()})
    return fp


def build_cube(plan: ItemsPlan, fp: FeaturePlan,
               per_date: Mapping[str, Any] | None = None) -> xr.Dataset:
    """The lazy cube of a feature plan: odc-loader's ``chunked_load`` with xsits' reader.

    A small cube (``fp.chunk_shape is None``) is one dask task that loads it without dask
    when computed; any other is odc-loader's dask graph. ``per_date`` coordinates
    (``{name: ("time", values)}``) are added. The reads go through
    :class:`xsits.io.tolerate.TolerantDriver` (a broken file costs its item's date; the record's
    key is ``attrs["xsits_reads"]``).

    Examples
    --------
    >>> import datetime as dt, tempfile, rasterio
    >>> from rasterio.transform import from_origin
    >>> path = tempfile.mktemp(suffix=".tif")
    >>> with rasterio.open(path, "w", driver="COG", width=64, height=64, count=1,
    ...                    dtype="uint16", crs="EPSG:32632", nodata=0,
    ...                    transform=from_origin(600000, 5600000, 10, 10)) as f:
    ...     f.write(np.full((1, 64, 64), 7, "uint16"))
    >>> gb = GeoBox.from_bbox((600000, 5599360, 600640, 5600000), "EPSG:32632", resolution=10)
    >>> it = pystac.Item("a", gb.geographic_extent.json, None, dt.datetime(2024, 1, 1),
    ...                  {"proj:epsg": 32632})
    >>> it.add_asset("B04", pystac.Asset(path, roles=["data"]))
    >>> p = plan_items([it], ["B04"],
    ...                stac_cfg={"assets": {"B04": {"data_type": "uint16", "nodata": 0}}})
    >>> cube = build_cube(p, plan_feature(p, [0], gb[:2, :3]))
    >>> cube.B04.shape, int(cube.B04.sum())
    ((1, 2, 3), 42)
    """
    positions = sorted({i for g in fp.groups for i in g})
    names = {src.uri: plan.items[i].id for i in positions for src in plan.srcs[i].values()
             if src is not None}
    token = dask.base.tokenize(sorted(names.items()), grid_key(fp.geobox), plan.bands,
                               [str(plan.load_cfg[b]) for b in plan.bands])
    driver = TolerantDriver(CogDriver(plan.sources(positions)), names, token)
    args = (plan.load_cfg, plan.meta, plan.srcs, dict(fp.bins), fp.gbt(), list(fp.times),
            driver.capture_env(), driver)
    attrs = {READS_ATTR: driver.token}  # its failed reads: xsits.io.tolerate.failed_reads(ds)
    if fp.chunk_shape is not None or any(len(plan.load_cfg[b].dims) > 2 for b in plan.bands):
        shape = fp.chunk_shape or (1, DIRECT_CHUNK, DIRECT_CHUNK)
        chunks = dict(zip(("time", "y", "x"), shape[:3], strict=True))
        return chunked_load(*args, chunks=chunks).assign_coords(per_date or {}).assign_attrs(
            attrs)
    # the arguments as one opaque value: dask would otherwise walk every source of the plan
    task = dask.delayed(_load_now, pure=True)(
        dask.delayed(args, traverse=False, name=f"xsits-plan-{token}"),
        dask_key_name=f"xsits-load-{token}")
    shape = (len(fp.times), *fp.geobox.shape.yx)
    coords = dict(xr_coords(fp.geobox))
    crs_coord = list(coords)[-1]
    coords["time"] = ("time", np.array(fp.times, dtype="datetime64[ns]"))
    data = {}
    for name in plan.bands:
        arr = da.from_delayed(task[name], shape, dtype=plan.load_cfg[name].dtype,
                              name=f"{name}-{token}")
        data[name] = xr.Variable(("time", "y", "x"), arr, attrs=band_attrs(plan, name),
                                 encoding={"grid_mapping": crs_coord})
    return xr.Dataset(data, coords={**coords, **(per_date or {})}, attrs=attrs)


def band_attrs(plan: ItemsPlan, band: str) -> dict[str, Any]:
    """A band's attributes in a cube (odc-loader's: its metadata and ``nodata``).

    Examples
    --------
    >>> import datetime as dt
    >>> it = pystac.Item("a", None, None, dt.datetime(2024, 1, 1), {})
    >>> it.add_asset("B04", pystac.Asset("/data/B04.tif"))
    >>> p = plan_items([it], ["B04"],
    ...                stac_cfg={"assets": {"B04": {"data_type": "uint16", "nodata": 0}}})
    >>> band_attrs(p, "B04")["nodata"]
    0
    """
    cfg = plan.load_cfg[band]
    attrs = {**cfg.meta.attrs} if cfg.meta is not None else {}
    if cfg.fill_value is not None:
        attrs["nodata"] = cfg.fill_value
    return attrs


def _load_now(args: tuple) -> dict[str, np.ndarray]:
    """The small cube's task: ``chunked_load`` without dask."""
    ds = chunked_load(*args, chunks=None)
    return {str(name): var.values for name, var in ds.data_vars.items()}


__all__ = ["ItemsPlan", "FeaturePlan", "plan_items", "plan_feature", "build_cube",
           "group_dates", "date_key", "nan_fill", "solar_day", "solar_lon", "href",
           "band_attrs", "consistent_groups"]
