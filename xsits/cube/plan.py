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
from xsits.io import fast, fetch, tiff
from xsits.io.fast import grid_key
from xsits.io.reader import CogDriver
from xsits.io.tolerate import READS_ATTR, TolerantDriver

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
    """

    items: tuple[pystac.Item, ...]
    parsed: tuple[Any, ...]
    bands: tuple[str, ...]
    load_cfg: Mapping[str, Any]
    meta: Any
    srcs: tuple[Mapping[str, Any], ...]
    nearest: Mapping[str, bool]
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
               resampling: str | Mapping[str, str] = "nearest") -> ItemsPlan:
    """Parse ``items`` once: the :class:`ItemsPlan` every feature of their group is cut from.

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
    load_cfg = resolve_load_cfg(to_load, dict(resampling), fail_on_error=True)
    nearest = {b: load_cfg[b].resampling == "nearest" for b in names}
    return ItemsPlan(
        items=tuple(items), parsed=parsed, bands=tuple(names), load_cfg=load_cfg,
        meta=collection.meta_for(names), srcs=tuple(p.resolve_bands(names) for p in parsed),
        nearest=nearest)


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


def group_dates(plan: ItemsPlan, positions: Sequence[int],
                lon: float) -> tuple[tuple[int, ...], ...]:
    """odc-stac's ``groupby="solar_day"``: items by solar day, each day by (time, id).

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
    def key(i: int) -> dt.date:
        return solar_day(plan.parsed[i], lon)

    ordered = sorted(positions, key=lambda i: (key(i), plan.parsed[i].nominal_datetime,
                                               plan.parsed[i].id))
    return tuple(tuple(g) for _, g in itertools.groupby(ordered, key=key))


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


#: Block side assumed for files whose header is not read (real Sentinel-2 COGs: 1024).
BLOCK_GUESS = 1024
#: Compressed bytes per pixel byte assumed for files whose header is not read.
COMPRESSION_GUESS = 0.5


@dataclass(frozen=True)
class Cost:
    """What a load will read, before it reads: the cost of a plan (:func:`cost`).

    Attributes
    ----------
    features, items, files
        Features planned, distinct items they read, distinct files (item x band).
    blocks
        Distinct blocks (tiles) of those files that the features' grids touch.
    requests
        HTTP requests: one per file for its header, plus one per block past the header's
        bytes (with headers not read: plus one per block).
    bytes
        Bytes of those requests (exact with headers read, else guessed with
        :data:`BLOCK_GUESS` and :data:`COMPRESSION_GUESS`).
    exact
        Whether the headers were read (else block layouts and sizes are guesses).
    """

    features: int = 0
    items: int = 0
    files: int = 0
    blocks: int = 0
    requests: int = 0
    bytes: int = 0
    exact: bool = True

    def __add__(self, other: Cost) -> Cost:
        return Cost(*(getattr(self, f) + getattr(other, f) for f in
                      ("features", "items", "files", "blocks", "requests", "bytes")),
                    exact=self.exact and other.exact)

    def __str__(self) -> str:
        how = "from the files' headers" if self.exact else "estimated from the item grids"
        return (f"{self.features} features, {self.items} items, {self.files} files, "
                f"{self.blocks} blocks: {self.requests} requests, "
                f"{self.bytes / 2**20:.1f} MiB ({how})")


def _pixel_boxes(geoboxes: Sequence[GeoBox], grid: GeoBox) -> np.ndarray:
    """Each geobox's bounding box in ``grid``'s pixels: ``(n, 4)`` row0, row1, col0, col1."""
    out = np.empty((len(geoboxes), 4))
    for crs in {str(g.crs) for g in geoboxes}:
        at = [k for k, g in enumerate(geoboxes) if str(g.crs) == crs]
        corners = np.array([[(b.left, b.bottom), (b.left, b.top), (b.right, b.bottom),
                             (b.right, b.top)] for b in
                            (geoboxes[k].extent.boundingbox for k in at)])  # (n, 4, 2)
        to = geoboxes[at[0]].crs.transformer_to_crs(grid.crs)
        x, y = to(corners[..., 0], corners[..., 1])
        inv = ~grid.affine
        px = inv.a * np.asarray(x) + inv.b * np.asarray(y) + inv.c
        py = inv.d * np.asarray(x) + inv.e * np.asarray(y) + inv.f
        out[at] = np.stack([py.min(1), py.max(1), px.min(1), px.max(1)], axis=1)
    return out


def cost(plan: ItemsPlan, positions: Mapping[str, Sequence[int]],
         geoboxes: Mapping[str, GeoBox], *, read_headers: bool = True) -> Cost:
    """The requests and bytes that loading these features will take (no pixel is read).

    Parameters
    ----------
    plan
        The search group's :class:`ItemsPlan`.
    positions, geoboxes
        Per feature, its items' positions and its grid.
    read_headers
        Read each file's header (one request each, which the load then reuses) for exact
        block layouts and sizes; else guess them from the item grids.

    Examples
    --------
    >>> import datetime as dt
    >>> gb = GeoBox.from_bbox((600000, 5590000, 610000, 5600000), "EPSG:32632",
    ...                       resolution=10)
    >>> it = pystac.Item("a", gb.geographic_extent.json, None, dt.datetime(2024, 1, 1),
    ...                  {"proj:epsg": 32632, "proj:shape": [1000, 1000],
    ...                   "proj:transform": list(gb.affine)[:6]}, stac_extensions=[
    ...     "https://stac-extensions.github.io/projection/v1.1.0/schema.json"])
    >>> it.add_asset("B04", pystac.Asset("/data/B04.tif", roles=["data"]))
    >>> p = plan_items([it], ["B04"], stac_cfg={"assets": {"B04": {"data_type": "uint16"}}})
    >>> c = cost(p, {"f": [0]}, {"f": gb[10:20, 10:20]}, read_headers=False)
    >>> c.files, c.blocks, c.requests
    (1, 1, 2)
    """
    fids = list(positions)
    files: dict[tuple[int, str], list[int]] = {}  # (item, band) -> features
    for k, fid in enumerate(fids):
        for i in positions[fid]:
            for band, src in plan.srcs[i].items():
                if src is not None:
                    files.setdefault((i, band), []).append(k)
    heads: dict[tuple[int, str], Any] = {}
    if read_headers:
        uris = [plan.srcs[i][b].uri for i, b in files]
        heads = dict(zip(files, tiff.headers(uris), strict=True))
    boxes_of: dict[tuple, np.ndarray] = {}
    blocks = requests = nbytes = 0
    exact = read_headers
    for (i, band), ks in files.items():
        src, head = plan.srcs[i][band], heads.get((i, band))
        grid = src.geobox
        level = None
        if isinstance(head, tiff.Header) and head.levels:
            grid = head.levels[0].geobox
            out_res = min(abs(geoboxes[fids[ks[0]]].resolution.x), 1e300)
            shrink = max(1, int(out_res / abs(grid.resolution.x) + 1e-3)) \
                if str(grid.crs) == str(geoboxes[fids[ks[0]]].crs) else 1
            ovr = fast.pick_overview(shrink, head.factors)
            level = head.levels[0 if ovr is None else ovr + 1]
            grid = level.geobox
        elif grid is None:
            exact = False
            continue  # no grid known: nothing to count
        else:
            exact = False
        key = (grid_key(grid), tuple(ks))
        if key not in boxes_of:
            boxes_of[key] = _pixel_boxes([geoboxes[fids[k]] for k in ks], grid)
        pix = boxes_of[key]
        bh, bw = level.block if level is not None else (BLOCK_GUESS, BLOCK_GUESS)
        h, w = grid.shape.yx
        r0 = np.clip(np.floor(pix[:, 0]), 0, h - 1) // bh
        r1 = np.clip(np.ceil(pix[:, 1]) - 1, 0, h - 1) // bh
        c0 = np.clip(np.floor(pix[:, 2]), 0, w - 1) // bw
        c1 = np.clip(np.ceil(pix[:, 3]) - 1, 0, w - 1) // bw
        inside = (pix[:, 1] > 0) & (pix[:, 0] < h) & (pix[:, 3] > 0) & (pix[:, 2] < w)
        touched = {(r, c) for a, b, c_, d in zip(r0[inside], r1[inside], c0[inside],
                                                 c1[inside], strict=True)
                   for r in range(int(a), int(b) + 1) for c in range(int(c_), int(d) + 1)}
        blocks += len(touched)
        requests += 1  # the header
        if level is not None:
            first = fetch.head_bytes(src.uri)
            nbytes += min(first, fetch.size(src.uri) or first)
            down, across = level.grid
            plane = (src.band - 1) * down * across if head.planar else 0
            for r, c in touched:
                k = plane + r * across + c
                start, count = int(level.offsets[k]), int(level.counts[k])
                if start + count > first:
                    requests += 1
                    nbytes += count
        else:
            nbytes += fetch.HEAD_BYTES
            requests += len(touched)
            nbytes += int(len(touched) * bh * bw * np.dtype(plan.load_cfg[band].dtype or
                                                             "uint16").itemsize
                          * COMPRESSION_GUESS)
    return Cost(len(fids), len({i for i, _ in files}), len(files), blocks, requests, nbytes,
                exact)


def _load_now(args: tuple) -> dict[str, np.ndarray]:
    """The small cube's task: ``chunked_load`` without dask."""
    ds = chunked_load(*args, chunks=None)
    return {str(name): var.values for name, var in ds.data_vars.items()}


__all__ = ["ItemsPlan", "FeaturePlan", "plan_items", "plan_feature", "build_cube",
           "group_dates", "solar_day", "solar_lon", "href", "band_attrs", "Cost", "cost",
           "consistent_groups"]
