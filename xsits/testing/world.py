"""A deterministic synthetic Sentinel-2 L2A "world" on disk: Cloud-Optimized GeoTIFFs + STAC items.

:func:`make_world` writes, for each scene :mod:`xsits.testing.scenes` plans, one COG per
band (pixels from :mod:`xsits.testing.pixels`) plus a Planetary-Computer-shaped STAC item,
and returns a :class:`World`.  Nothing here touches the network; the collection document
ships as package data.  Same spec -> byte-identical items and COGs; a finished world of the
same spec is reused.

Owns: the item JSON of a scene (properties, assets, links as Planetary Computer has them),
COG writing (atomic), the world's manifest and reuse, :class:`World` (items with rebased
hrefs, the truth arrays).
Must not: plan windows or dates (:mod:`xsits.testing.scenes`) or make pixel values
(:mod:`xsits.testing.pixels`).

Examples
--------
>>> import tempfile
>>> from xsits.testing.scenes import WorldSpec
>>> spec = WorldSpec(points=((11.35, 48.05),), start="2024-06-01", end="2024-06-10")
>>> world = make_world(tempfile.mkdtemp(), spec)
>>> [m["id"][:26] for m in world.items_meta]
['S2A_MSIL2A_20240601T094436', 'S2B_MSIL2A_20240606T094436']
>>> world.item_dicts("http://127.0.0.1:8123/")[0]["properties"]["s2:mgrs_tile"]
'32UPU'
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import pathlib
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Any

import numpy as np
import rasterio
from affine import Affine

from xsits.out.atomic import atomic_path
from xsits.testing.pixels import Landscape, scene_arrays
from xsits.testing.scenes import (
    BANDS_10M,
    GENERATOR_VERSION,
    Scene,
    Window,
    WorldSpec,
    footprint,
    plan_scenes,
    plan_windows,
)

__all__ = ["World", "make_world"]

_COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
_PLACEHOLDER = "https://stac.invalid/api/stac/v1"
_STAC_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.0.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
]
_MANIFEST = "world.json"
_ITEMS = "items.json"


def _collection_template() -> dict[str, Any]:
    text = resources.files("xsits.testing").joinpath("data/sentinel-2-l2a.collection.json")
    return json.loads(text.read_text())


def _band_res(band: str) -> int:
    return 10 if band in BANDS_10M else 20


def _rel_path(sc: Scene, band: str) -> str:
    w = sc.window
    t = w.tile
    return (
        f"{t[:2]}/{t[2]}/{t[3:]}/{sc.solar_date:%Y/%m/%d}/{sc.item_id}/"
        f"T{t}_{sc.when:%Y%m%dT%H%M%S}_{band}_{_band_res(band)}m.tif"
    )


def _item(sc: Scene, stats: dict[str, Any], spec: WorldSpec, ia: dict[str, Any]) -> dict:
    w = sc.window
    geom, bbox = footprint(w)
    sat = sc.platform
    bl = sc.baseline
    doy = sc.solar_date.timetuple().tm_yday
    abs_orbit = int((sc.solar_date - dt.date(2015, 6, 23)).days * 14.3) % 1000000
    ps = "2APS" if sat == "S2A" else "2BPS"
    gen = f"{sc.generated:%Y%m%dT%H%M%S}"
    acq = f"{sc.when:%Y%m%dT%H%M%S}"
    props: dict[str, Any] = {
        "datetime": f"{sc.when:%Y-%m-%dT%H:%M:%S}.024Z",
        "platform": f"Sentinel-2{sat[-1]}",
        "constellation": "Sentinel 2",
        "instruments": ["msi"],
        "eo:cloud_cover": stats["eo:cloud_cover"],
        "proj:epsg": w.epsg,
        "proj:code": f"EPSG:{w.epsg}",
        "sat:orbit_state": "descending",
        "sat:relative_orbit": sc.orbit,
        "s2:mgrs_tile": w.tile,
        "s2:product_type": "S2MSI2A",
        "s2:processing_baseline": bl,
        "s2:product_uri": (
            f"{sat}_MSIL2A_{acq}_N{bl.replace('.', '')}_R{sc.orbit:03d}_T{w.tile}_{gen}.SAFE"
        ),
        "s2:granule_id": f"{sat}_OPER_MSI_L2A_TL_{ps}_{gen}_A{abs_orbit:06d}_T{w.tile}_N{bl}",
        "s2:datastrip_id": f"{sat}_OPER_MSI_L2A_DS_{ps}_{gen}_S{acq}_N{bl}",
        "s2:datatake_id": f"G{sat}_{acq}_{abs_orbit:06d}_N{bl}",
        "s2:datatake_type": "INS-NOBS",
        "s2:generation_time": f"{sc.generated:%Y-%m-%dT%H:%M:%S}.000000Z",
        "s2:degraded_msi_data_percentage": 0.0,
        "s2:reflectance_conversion_factor": round(
            1.0 / (1 - 0.01673 * math.cos(0.0172 * (doy - 4))) ** 2, 12
        ),
    }
    for k, v in stats.items():
        props.setdefault(k, v)
    assets: dict[str, Any] = {}
    for band in spec.bands:
        res = _band_res(band)
        n = spec.window_m // res
        tmpl = ia.get(band, {})
        a: dict[str, Any] = {
            "href": _rel_path(sc, band),
            "title": tmpl.get("title", band),
            "type": _COG_TYPE,
            "roles": ["data"],
            "proj:bbox": [w.left, w.bottom, w.right, w.top],
            "proj:shape": [n, n],
            "proj:transform": [float(res), 0.0, w.left, 0.0, -float(res), w.top],
            "gsd": float(res),
        }
        if "eo:bands" in tmpl:
            a["eo:bands"] = tmpl["eo:bands"]
        a["raster:bands"] = [
            {
                "nodata": 0,
                "data_type": "uint8" if band == "SCL" else "uint16",
                "spatial_resolution": float(res),
            }
        ]
        assets[band] = a
    base = f"{_PLACEHOLDER}/collections/sentinel-2-l2a"
    links = [
        {"href": base, "rel": "collection", "type": "application/json"},
        {"href": base, "rel": "parent", "type": "application/json"},
        {"href": f"{_PLACEHOLDER}/", "rel": "root", "type": "application/json"},
        {"href": f"{base}/items/{sc.item_id}", "rel": "self", "type": "application/geo+json"},
        {
            "href": "https://sentinel.esa.int/documents/247904/690755/Sentinel_Data_Legal_Notice",
            "rel": "license",
        },
    ]
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": list(_STAC_EXTENSIONS),
        "id": sc.item_id,
        "geometry": geom,
        "bbox": bbox,
        "properties": props,
        "links": links,
        "assets": assets,
        "collection": "sentinel-2-l2a",
    }


# --------------------------------------------------------------------------- writing


def _atomic_write_text(path: pathlib.Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`xsits.out.atomic.atomic_path`)."""
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(text)


def _overview_count(n: int, blocksize: int) -> int:
    """Halvings until the overview fits one block (as GDAL's COG driver), at least one.

    Overviews smaller than a block are padded to a full block, so more would only cost time.
    """
    count = 1
    while (n >> count) > blocksize:
        count += 1
    return count


def _write_cog(path: pathlib.Path, arr: np.ndarray, w: Window, res: int, spec: WorldSpec) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp.tif")
    is_scl = arr.dtype == np.uint8
    with rasterio.open(
        tmp,
        "w",
        driver="COG",
        width=arr.shape[1],
        height=arr.shape[0],
        count=1,
        dtype=arr.dtype.name,
        crs=f"EPSG:{w.epsg}",
        transform=Affine(float(res), 0.0, w.left, 0.0, -float(res), w.top),
        nodata=0,
        blocksize=spec.blocksize,
        compress="DEFLATE",
        predictor=2,
        overview_count=_overview_count(arr.shape[0], spec.blocksize),
        overview_resampling="nearest" if is_scl else "average",
        num_threads=1,
    ) as ds:
        ds.write(arr, 1)
    os.replace(tmp, path)


def _make_window(
    w: Window, scenes: list[Scene], spec: WorldSpec, root: pathlib.Path, ia: dict
) -> list[dict]:
    land = Landscape(w, spec)
    items = []
    for sc in scenes:
        arrays, stats = scene_arrays(sc, land, spec)
        for band, arr in arrays.items():
            _write_cog(root / _rel_path(sc, band), arr, w, _band_res(band), spec)
        items.append(_item(sc, stats, spec, ia))
    return items


def _join(base: str, rel: str) -> str:
    return base + rel if base.endswith(("/", "\\")) else f"{base}/{rel}"


def _rehref(items: list[dict], base: str) -> list[dict]:
    out = json.loads(json.dumps(items))
    for it in out:
        for a in it["assets"].values():
            a["href"] = _join(base, a["href"])
    return out


# --------------------------------------------------------------------------- public


class World:
    """A generated synthetic world on disk: COGs under ``root`` and their STAC items.

    Do not build one directly; call :func:`make_world`.

    Attributes
    ----------
    root : pathlib.Path
        Directory holding the COGs (item hrefs are relative to it before rebasing).
    spec : WorldSpec
        The spec it was generated from.
    collection : dict
        The Planetary Computer ``sentinel-2-l2a`` collection document, extent updated,
        links pointing at a placeholder host.
    items_meta : list of dict
        One dict per item: ``id``, ``datetime``, ``solar_date``, ``platform``,
        ``relative_orbit``, ``partial_swath``, ``tile``, ``epsg``, ``bounds``
        (left, bottom, right, top in UTM), ``window``, ``points`` (indices into
        ``spec.points``), ``cloud_cover``, ``nodata_percentage``,
        ``processing_baseline``, ``offset`` (1000 or 0).
    windows : list of dict
        One dict per window: ``index``, ``epsg``, ``tile``, ``bounds``, ``points``,
        ``points_xy`` (UTM coordinates of those points), ``main_orbit``,
        ``partial_orbit``.

    Examples
    --------
    >>> import tempfile
    >>> spec = WorldSpec(points=((11.35, 48.05),), start="2024-06-01", end="2024-06-05")
    >>> world = make_world(tempfile.mkdtemp(), spec)
    >>> world.truth(world.items_meta[0]["id"], "B04").shape
    (256, 256)
    >>> world.windows[0]["epsg"], len(world.item_dicts("/data"))
    (32632, 1)
    """

    def __init__(self, root: pathlib.Path, spec: WorldSpec, items: list[dict]):
        self.root = pathlib.Path(root)
        self.spec = spec
        self._items = items
        windows = plan_windows(spec)
        self.windows = [
            {
                "index": w.index,
                "epsg": w.epsg,
                "tile": w.tile,
                "bounds": (w.left, w.bottom, w.right, w.top),
                "points": w.points,
                "points_xy": w.points_xy,
                "main_orbit": w.main_orbit,
                "partial_orbit": w.partial_orbit,
            }
            for w in windows
        ]
        scenes = {s.item_id: s for s in plan_scenes(spec, windows)}
        self.items_meta = []
        for it in items:
            sc = scenes[it["id"]]
            p = it["properties"]
            self.items_meta.append(
                {
                    "id": it["id"],
                    "datetime": p["datetime"],
                    "solar_date": sc.solar_date.isoformat(),
                    "platform": p["platform"],
                    "relative_orbit": p["sat:relative_orbit"],
                    "partial_swath": sc.partial,
                    "tile": p["s2:mgrs_tile"],
                    "epsg": p["proj:epsg"],
                    "bounds": (sc.window.left, sc.window.bottom, sc.window.right, sc.window.top),
                    "window": sc.window.index,
                    "points": sc.window.points,
                    "cloud_cover": p["eo:cloud_cover"],
                    "nodata_percentage": p["s2:nodata_pixel_percentage"],
                    "processing_baseline": p["s2:processing_baseline"],
                    "offset": sc.offset,
                }
            )
        coll = _collection_template()
        lons = [v for it in items for v in (it["bbox"][0], it["bbox"][2])]
        lats = [v for it in items for v in (it["bbox"][1], it["bbox"][3])]
        coll["extent"] = {
            "spatial": {"bbox": [[min(lons), min(lats), max(lons), max(lats)]]},
            "temporal": {
                "interval": [
                    [
                        min(m["datetime"] for m in self.items_meta),
                        max(m["datetime"] for m in self.items_meta),
                    ]
                ]
            },
        }
        base = f"{_PLACEHOLDER}/collections/sentinel-2-l2a"
        repl = {
            "items": f"{base}/items",
            "parent": f"{_PLACEHOLDER}/",
            "root": f"{_PLACEHOLDER}/",
            "self": base,
        }
        for link in coll.get("links", []):
            if link.get("rel") in repl:
                link["href"] = repl[link["rel"]]
        self.collection = coll

    def __repr__(self) -> str:
        return (
            f"World(root={str(self.root)!r}, windows={len(self.windows)}, items={len(self._items)})"
        )

    def item_dicts(self, href_base: str) -> list[dict]:
        """STAC item dicts with asset hrefs rebased on ``href_base``.

        Parameters
        ----------
        href_base
            Prefix of every asset href, e.g. ``"http://127.0.0.1:8123/"``, a directory
            path or a ``file://`` URI; a ``/`` is inserted if missing.

        Returns
        -------
        list of dict
            Fresh copies (safe to mutate), sorted by window then date.

        Examples
        --------
        >>> import tempfile
        >>> spec = WorldSpec(points=((11.35, 48.05),), start="2024-06-01", end="2024-06-05")
        >>> world = make_world(tempfile.mkdtemp(), spec)
        >>> world.item_dicts("http://127.0.0.1:8123")[0]["assets"]["SCL"]["href"][:39]
        'http://127.0.0.1:8123/32/U/PU/2024/06/0'
        """
        return _rehref(self._items, href_base)

    def write_item_collection(
        self, path: str | os.PathLike[str], href_base: str | None = None
    ) -> pathlib.Path:
        """Write the items as a GeoJSON FeatureCollection, atomically.

        Parameters
        ----------
        path
            Output ``.json`` / ``.geojson`` file.
        href_base
            Prefix of asset hrefs; default: absolute local paths under ``root``.
            The placeholder ``self`` links are dropped (pystac would otherwise resolve
            local paths against them).

        Returns
        -------
        pathlib.Path
            ``path``.

        Examples
        --------
        >>> import tempfile, pystac
        >>> spec = WorldSpec(points=((11.35, 48.05),), start="2024-06-01", end="2024-06-05")
        >>> d = tempfile.mkdtemp()
        >>> p = make_world(d, spec).write_item_collection(f"{d}/items.geojson")
        >>> len(pystac.ItemCollection.from_file(str(p)))
        1
        """
        path = pathlib.Path(path)
        base = href_base if href_base is not None else self.root.resolve().as_posix() + "/"
        features = self.item_dicts(base)
        for it in features:  # a static file has no self; pystac would resolve paths against it
            it["links"] = [ln for ln in it["links"] if ln["rel"] != "self"]
        fc = {"type": "FeatureCollection", "features": features}
        _atomic_write_text(path, json.dumps(fc))
        return path

    def asset_path(self, item_id: str, band: str) -> pathlib.Path:
        """Local path of one COG.

        Parameters
        ----------
        item_id
            An item id of this world.
        band
            An asset key in ``spec.bands``.

        Returns
        -------
        pathlib.Path

        Examples
        --------
        >>> import tempfile
        >>> spec = WorldSpec(points=((11.35, 48.05),), start="2024-06-01", end="2024-06-05")
        >>> world = make_world(tempfile.mkdtemp(), spec)
        >>> world.asset_path(world.items_meta[0]["id"], "SCL").name[-11:]
        'SCL_20m.tif'
        """
        for it in self._items:
            if it["id"] == item_id:
                if band not in it["assets"]:
                    raise KeyError(f"band {band!r} not in world bands {self.spec.bands}")
                return self.root / it["assets"][band]["href"]
        raise KeyError(f"item {item_id!r} is not in this world")

    def truth(self, item_id: str, band: str) -> np.ndarray:
        """The DN array written to one COG (read back with rasterio).

        Parameters
        ----------
        item_id
            An item id of this world.
        band
            An asset key in ``spec.bands``.

        Returns
        -------
        numpy.ndarray
            ``uint16`` (reflectance) or ``uint8`` (SCL), shape ``proj:shape``.

        Examples
        --------
        >>> import tempfile
        >>> spec = WorldSpec(points=((11.35, 48.05),), start="2024-06-01", end="2024-06-05")
        >>> world = make_world(tempfile.mkdtemp(), spec)
        >>> world.truth(world.items_meta[0]["id"], "SCL").dtype
        dtype('uint8')
        """
        with rasterio.open(self.asset_path(item_id, band)) as ds:
            return ds.read(1)


def make_world(
    root: str | os.PathLike[str], spec: WorldSpec, *, workers: int | None = None
) -> World:
    """Generate (or reuse) a synthetic Sentinel-2 L2A world under ``root``.

    If ``root`` already holds a finished world of the identical spec (a manifest with
    the same :meth:`WorldSpec.key`, written last and atomically), nothing is rewritten.
    Otherwise all COGs are (re)written atomically and files of a previous, different
    world listed in its manifest are removed.

    Parameters
    ----------
    root
        Directory to write into (created if missing).
    spec
        What to generate.
    workers
        Threads writing windows in parallel; default ``min(8, os.cpu_count())``.

    Returns
    -------
    World

    Examples
    --------
    >>> import tempfile
    >>> spec = WorldSpec(points=((11.35, 48.05), (12.5, 41.9)), start="2024-06-01",
    ...                  end="2024-06-30", bands=("B04", "B08", "SCL"))
    >>> world = make_world(tempfile.mkdtemp(), spec)
    >>> len(world.items_meta), sorted({m["epsg"] for m in world.items_meta})
    (12, [32632, 32633])
    """
    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / _MANIFEST
    key = spec.key()
    old_files: list[str] = []
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            manifest = {}
        if manifest.get("key") == key and (root / _ITEMS).exists():
            try:
                items = json.loads((root / _ITEMS).read_text())
                return World(root, spec, items)
            except (OSError, ValueError, KeyError):
                pass
        old_files = list(manifest.get("files", []))
        manifest_path.unlink(missing_ok=True)

    windows = plan_windows(spec)
    scenes = plan_scenes(spec, windows)
    ia = _collection_template().get("item_assets", {})
    by_window: dict[int, list[Scene]] = {}
    for sc in scenes:
        by_window.setdefault(sc.window.index, []).append(sc)
    n_workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        futures = [
            pool.submit(_make_window, w, by_window.get(w.index, []), spec, root, ia)
            for w in windows
        ]
        items = [it for f in futures for it in f.result()]

    files = sorted({a["href"] for it in items for a in it["assets"].values()})
    keep = set(files) | {_ITEMS, _MANIFEST}
    for rel in old_files:
        if rel not in keep and not os.path.isabs(rel) and ".." not in rel.split("/"):
            (root / rel).unlink(missing_ok=True)
    _atomic_write_text(root / _ITEMS, json.dumps(items))
    _atomic_write_text(
        manifest_path,
        json.dumps(
            {
                "key": key,
                "version": GENERATOR_VERSION,
                "spec": dataclasses.asdict(spec),
                "files": files,
            },
            indent=1,
        ),
    )
    return World(root, spec, items)
