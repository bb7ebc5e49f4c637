"""A Sentinel-1 RTC test world, on the places and dates of the synthetic Sentinel-2 world.

:func:`make_s1_world` plans the windows and scenes of a synthetic Sentinel-2 world
(:func:`xsits.testing.scenes.plan_windows`, :func:`~xsits.testing.scenes.plan_scenes`: its
places, UTM grids and solar dates; no Sentinel-2 file is written) and writes, for each
scene, the Sentinel-1 RTC passes over the same window on the same solar day, in Planetary
Computer's ``sentinel-1-rtc`` shapes:

- a **descending** pass at ~06:10 local solar time on every date and, on every other date,
  an **ascending** pass at ~17:50 (same solar day, same place: they must stay two dates);
- ``vv`` and ``vh``: 10 m float32 COGs of linear gamma naught, nodata -32768: a landscape of
  smooth patches (``vv`` 0.02..0.3, ``vh`` about a fifth of it), a seasonal swing, a
  brightness of its own per orbit state and multiplicative speckle; nodata where the
  descending swath's edge cuts the window's corner (every third date) and on a few
  radar-shadow specks. The points of the window are always valid.

Items copy the real item ``data/real/pc-sentinel-1-rtc-2025.json`` (see its SOURCES.md):
asset keys ``vv`` / ``vh`` with its ``raster:bands`` (float32, nodata -32768), item-level
``proj:epsg`` / ``proj:bbox`` / ``proj:shape`` / 9-element ``proj:transform``,
``s1:shape`` (width first), ``sat:orbit_state``, ``sat:relative_orbit``,
``sat:absolute_orbit``, and ``start_datetime`` / ``end_datetime`` written as Planetary
Computer writes them (``"2025-03-11 04:42:31.719576+00:00"``, not RFC 3339). Fields that
depend on the scene are the scene's; ``file:size`` / ``file:checksum`` are left out; no field
the real item lacks is added.

Owns: :func:`make_s1_world`, :class:`S1World`, :func:`backscatter` (the pixel model).
Must not: be imported by library code.

Examples
--------
>>> import tempfile
>>> from xsits.testing.scenes import WorldSpec
>>> spec = WorldSpec(points=((11.35, 48.05),), start="2024-06-01", end="2024-06-01",
...                  window_m=1280, blocksize=128)
>>> w = make_s1_world(tempfile.mkdtemp(), spec)
>>> [(it["properties"]["sat:orbit_state"], it["properties"]["start_datetime"])
...  for it in w.items]  # doctest: +NORMALIZE_WHITESPACE
[('descending', '2024-06-01 05:24:50.123456+00:00'),
 ('ascending', '2024-06-01 17:04:50.123456+00:00')]
>>> w.truth(w.items[0]["id"], "vv").dtype.name, w.items[0]["properties"]["proj:shape"]
('float32', [128, 128])
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import os
import pathlib
from importlib import resources
from typing import Any

import numpy as np
import rasterio
from affine import Affine

from xsits.testing.items import ItemFiles
from xsits.testing.scenes import Window, WorldSpec, footprint, plan_scenes, plan_windows

__all__ = ["S1World", "make_s1_world", "backscatter", "NODATA", "TEMPLATE"]

#: The real item every generated item copies (``data/real/``).
TEMPLATE = "pc-sentinel-1-rtc-2025.json"
#: The files' nodata value (the real items' ``raster:bands``).
NODATA = -32768.0
#: Local solar time of the passes (hours): descending early morning, ascending evening.
PASS_HOURS = {"descending": 6 + 10 / 60, "ascending": 17 + 50 / 60}
#: Seconds a pass takes over its slice (start_datetime .. end_datetime; the real item: 18 s).
SLICE_SECONDS = 18
#: Brightness of each orbit state (another look angle): fused passes would show it.
LOOK = {"descending": 1.0, "ascending": 1.35}


def template() -> dict[str, Any]:
    """The real Planetary Computer Sentinel-1 RTC item (a fresh copy)."""
    text = resources.files("xsits.testing").joinpath(f"data/real/{TEMPLATE}").read_text()
    return json.loads(text)


def _pc_time(when: dt.datetime) -> str:
    """A datetime as Planetary Computer writes S1 RTC's start / end (``str(datetime)``)."""
    return str(when.replace(tzinfo=dt.UTC))


def backscatter(window: int, shape: tuple[int, int], day: dt.date, state: str,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear gamma naught ``(vv, vh)`` of one pass over a window (float32, no nodata yet).

    Patches of smooth texture (fields, forest, water), a seasonal swing of the vegetated
    patches, the orbit state's brightness (:data:`LOOK`) and speckle (gamma, 4.4 looks: the
    real items' ``sar:looks_equivalent_number``).

    Examples
    --------
    >>> vv, vh = backscatter(0, (4, 4), dt.date(2024, 6, 1), "descending", seed=0)
    >>> vv.dtype.name, bool((vv > 0).all()), bool((vh < vv).all())
    ('float32', True, True)
    """
    ny, nx = shape
    land = np.random.default_rng([seed, window])
    yy, xx = np.mgrid[0:ny, 0:nx] / max(ny, nx)
    field = np.zeros(shape)
    for _ in range(6):  # a few plane waves: patches a few hundred metres wide
        kx, ky, phase = land.uniform(2, 9), land.uniform(2, 9), land.uniform(0, 2 * np.pi)
        field += np.sin(2 * np.pi * (kx * xx + ky * yy) + phase)
    cover = np.digitize(field, np.quantile(field, [0.1, 0.6]))  # 0 water, 1 fields, 2 forest
    base_vv = np.choose(cover, [0.02, 0.08, 0.18])
    ratio = np.choose(cover, [0.1, 0.2, 0.28])
    doy = day.timetuple().tm_yday
    season = 1 + 0.5 * (cover == 1) * np.sin(2 * np.pi * (doy - 100) / 365)
    rng = np.random.default_rng([seed, window, day.toordinal(), state == "ascending"])
    looks = 4.4
    speckle = rng.gamma(looks, 1 / looks, (2, ny, nx))
    vv = base_vv * season * LOOK[state] * speckle[0]
    vh = vv * ratio * speckle[1]
    return vv.astype("float32"), vh.astype("float32")


def _holes(shape: tuple[int, int], k: int, state: str, keep: list[tuple[int, int]],
           seed: int) -> np.ndarray:
    """Nodata pixels of a pass, never on the window's points (``keep``: row, col).

    The swath edge across a corner (descending, every third date) and radar-shadow specks.
    """
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    holes = np.zeros(shape, dtype=bool)
    if state == "descending" and k % 3 == 0:
        holes |= xx + yy < (nx + ny) // 4
    rng = np.random.default_rng([seed, k, state == "ascending", 7])
    for r, c in rng.integers(0, (ny, nx), (4, 2)):
        holes[max(0, r - 2):r + 2, max(0, c - 2):c + 2] = True
    for r, c in keep:
        holes[max(0, r - 1):r + 2, max(0, c - 1):c + 2] = False
    return holes


def _write(path: pathlib.Path, arr: np.ndarray, epsg: int, left: float, top: float,
           blocksize: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.tif")
    with rasterio.open(tmp, "w", driver="COG", width=arr.shape[1], height=arr.shape[0],
                       count=1, dtype="float32", crs=f"EPSG:{epsg}",
                       transform=Affine(10.0, 0.0, left, 0.0, -10.0, top), nodata=NODATA,
                       blocksize=blocksize, compress="DEFLATE", predictor=3,
                       overview_resampling="nearest", num_threads=1) as f:
        f.write(arr, 1)
    os.replace(tmp, path)


@dataclasses.dataclass
class S1World(ItemFiles):
    """A generated Sentinel-1 RTC world: COGs under ``root`` and their item dicts.

    Attributes
    ----------
    root
        The files, at Planetary-Computer-like relative paths.
    windows
        The Sentinel-2 world's windows it covers (:func:`xsits.testing.scenes.plan_windows`).
    items
        Item dicts, asset hrefs relative to ``root``.
    passes
        Per item id: ``window``, ``solar_date``, ``orbit_state``, ``relative_orbit``.
    """

    root: pathlib.Path
    windows: list[Window]
    items: list[dict[str, Any]]
    passes: dict[str, dict[str, Any]]

    collection_id = "sentinel-1-rtc"

    @property
    def collection(self) -> dict[str, Any]:
        """A minimal ``sentinel-1-rtc`` collection document covering the items."""
        lons = [v for it in self.items for v in (it["bbox"][0], it["bbox"][2])]
        lats = [v for it in self.items for v in (it["bbox"][1], it["bbox"][3])]
        times = sorted(it["properties"]["datetime"] for it in self.items)
        return {"type": "Collection", "stac_version": "1.0.0", "id": self.collection_id,
                "description": "Sentinel 1 Radiometrically Terrain Corrected (RTC), test world",
                "license": "CC-BY-4.0", "links": [],
                "extent": {"spatial": {"bbox": [[min(lons), min(lats), max(lons),
                                                  max(lats)]]},
                           "temporal": {"interval": [[times[0], times[-1]]]}}}


def _item(tmpl: dict, *, item_id: str, start: dt.datetime, epsg: int,
          bounds: tuple[float, float, float, float], shape: tuple[int, int], state: str,
          relative: int, absolute: int, geometry: dict, hrefs: dict[str, str]) -> dict:
    left, bottom, right, top = bounds
    end = start + dt.timedelta(seconds=SLICE_SECONDS)
    mid = start + dt.timedelta(seconds=SLICE_SECONDS / 2)
    scene = {
        "datetime": f"{mid:%Y-%m-%dT%H:%M:%S.%f}Z", "start_datetime": _pc_time(start),
        "end_datetime": _pc_time(end), "proj:epsg": epsg,
        "proj:bbox": [left, bottom, right, top], "proj:shape": [shape[0], shape[1]],
        "s1:shape": [shape[1], shape[0]],
        "proj:transform": [10.0, 0.0, left, 0.0, -10.0, top, 0.0, 0.0, 1.0],
        "sat:orbit_state": state, "sat:relative_orbit": relative,
        "sat:absolute_orbit": absolute, "s1:datatake_id": str(absolute * 8 % 1048576),
    }
    props = {k: scene.get(k, copy.deepcopy(v)) for k, v in tmpl["properties"].items()
             if k not in ("s1:slice_number", "s1:total_slices")}  # not a slice of a datatake
    assets = {}
    for key, tasset in tmpl["assets"].items():
        asset = {k: copy.deepcopy(v) for k, v in tasset.items()
                 if k not in ("file:size", "file:checksum")}
        if key in hrefs:
            asset["href"] = hrefs[key]
        else:  # the API's tiles / preview of the item: never read
            asset["href"] = asset["href"].replace(tmpl["id"], item_id)
        assets[key] = asset
    lons = [c[0] for c in geometry["coordinates"][0]]
    lats = [c[1] for c in geometry["coordinates"][0]]
    return {"type": "Feature", "stac_version": tmpl["stac_version"],
            "stac_extensions": list(tmpl["stac_extensions"]), "id": item_id,
            "geometry": geometry, "bbox": [min(lons), min(lats), max(lons), max(lats)],
            "properties": props, "links": [], "assets": assets,
            "collection": "sentinel-1-rtc"}


def make_s1_world(root: str | os.PathLike, spec: WorldSpec) -> S1World:
    """The Sentinel-1 RTC world over the windows and dates of ``spec`` (see the module).

    Parameters
    ----------
    root
        Directory of the files (and ``items.json``).
    spec
        The Sentinel-2 world whose windows and solar dates the passes cover (its bands do
        not matter). Its ``seed`` seeds the backscatter.

    Returns
    -------
    S1World
    """
    root = pathlib.Path(root)
    tmpl = template()
    windows = plan_windows(spec)
    items, passes = [], {}
    for k, scene in enumerate(plan_scenes(spec, windows)):
        if scene.partial:  # one Sentinel-2 scene per solar date and window
            continue
        w = scene.window
        left, bottom, right, top = w.left, w.bottom, w.right, w.top
        shape = (round((top - bottom) / 10), round((right - left) / 10))
        keep = [(int((top - y) // 10), int((x - left) // 10)) for x, y in w.points_xy]
        day = scene.solar_date
        lon = w.lon
        states = ("descending", "ascending") if k % 2 == 0 else ("descending",)
        for state in states:
            local = dt.datetime.combine(day, dt.time()) + dt.timedelta(hours=PASS_HOURS[state])
            start = (local - dt.timedelta(hours=lon / 15)).replace(microsecond=123456)
            start = start.replace(second=50)
            relative = (80 + 7 * w.index if state == "descending" else
                        117 + 7 * w.index) % 175 + 1
            absolute = 40000 + (day - dt.date(2020, 1, 1)).days * 175 // 12 + relative
            vv, vh = backscatter(w.index, shape, day, state, spec.seed)
            holes = _holes(shape, k, state, keep, spec.seed)
            vv[holes] = NODATA
            vh[holes] = NODATA
            dv = "DV"
            stamp = f"{start:%Y%m%dT%H%M%S}"
            end = start + dt.timedelta(seconds=SLICE_SECONDS)
            product = f"S1A_IW_GRDH_1SDV_{stamp}_{end:%Y%m%dT%H%M%S}_{absolute:06d}_" \
                f"{absolute * 8 % 1048576:06X}"
            item_id = f"{product}_rtc"
            folder = f"GRD/{day.year}/{day.month}/{day.day}/IW/{dv}/{product}_{w.index:04X}"
            hrefs = {key: f"{folder}/measurement/iw-{key}.rtc.tiff" for key in ("vv", "vh")}
            for key, arr in (("vv", vv), ("vh", vh)):
                _write(root / hrefs[key], arr, w.epsg, left, top, spec.blocksize)
            items.append(_item(tmpl, item_id=item_id, start=start, epsg=w.epsg,
                               bounds=(left, bottom, right, top), shape=shape, state=state,
                               relative=relative, absolute=absolute,
                               geometry=footprint(w)[0], hrefs=hrefs))
            passes[item_id] = {"window": w.index, "solar_date": day.isoformat(),
                               "orbit_state": state, "relative_orbit": relative}
    (root / "items.json").write_text(json.dumps(items))
    return S1World(root, windows, items, passes)
