"""Landsat and HLS test worlds, made from the synthetic Sentinel-2 world, in real item shapes.

:func:`make_sensor_world` generates a Sentinel-2 world (:func:`xsits.testing.world.make_world`,
its landscape, clouds, shadows, snow and partial swaths) and writes each scene again as the
other collection's files and items:

- ``landsat-c2-l2`` (shapes ``pc-landsat`` and ``es-landsat``): 30 m ``uint16`` surface
  reflectance ``DN = round((reflectance + 0.2) / 2.75e-05)``, nodata 0; ``qa_pixel``
  (``uint16``, fill 1) with the Collection 2 bits of each SCL class (see :data:`QA_PIXEL`);
  Landsat 8 / 9 alternate; acquired 25 minutes before the Sentinel-2 scene it is made from.
- ``hls2-s30`` / ``hls2-l30`` (shapes ``nasa-hls`` and ``pc-hls``): 30 m ``int16``
  reflectance ``round(reflectance * 10000)``, nodata -9999; ``Fmask`` (``uint8``, fill 255)
  with the HLS v2.0 bits (see :data:`FMASK`).

Pixels are the Sentinel-2 scene's, picked by nearest neighbour at the 30 m pixel centres
(the grid's origin is on Landsat's 15 m lattice); clouds (SCL 8 / 9) are ringed by one pixel
of ``dilated_cloud`` (Landsat) or ``adjacent`` (HLS). Items copy real items stored in
``data/real/`` (see its SOURCES.md): asset keys, asset fields, ``raster:bands``,
``classification:bitfields``, item-level ``proj:*``; a field the template has and the scene
cannot give honestly is left out, none is added.

Owns: the conversions (:data:`QA_PIXEL`, :data:`FMASK`), :func:`make_sensor_world` and
:class:`SensorWorld`.
Must not: be imported by library code.

Examples
--------
>>> import tempfile
>>> from xsits.testing.scenes import WorldSpec
>>> spec = WorldSpec(points=((11.35, 48.05),), start="2024-06-02", end="2024-06-02",
...                  window_m=1280, blocksize=128)
>>> w = make_sensor_world(tempfile.mkdtemp(), spec, "pc-landsat")
>>> item = w.item_dicts("https://x.blob.core.windows.net/")[0]
>>> item["id"], item["assets"]["red"]["raster:bands"][0]["scale"]
('LC08_L2SP_191027_20240602_02_T1', 2.75e-05)
>>> w.truth(item["id"], "qa_pixel").dtype.name, item["properties"]["proj:shape"]
('uint16', [41, 41])
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
from xsits.testing.scenes import WorldSpec
from xsits.testing.world import World, make_world

#: Shape -> (template in ``data/real/``, collection, relative href of a band's file).
SHAPES: dict[str, tuple[str, str]] = {
    "pc-landsat": ("pc-landsat-c2-l2-2024.json", "landsat-c2-l2"),
    "es-landsat": ("es-landsat-c2-l2-2023.json", "landsat-c2-l2"),
    "nasa-hls": ("nasa-HLSS30.v2.0-2022.json", "HLSS30.v2.0"),
    "pc-hls": ("nasa-HLSS30.v2.0-2022.json", "hls2-s30"),
}
#: Landsat asset key -> the Sentinel-2 band it is made from.
LANDSAT_FROM = {"blue": "B02", "green": "B03", "red": "B04", "nir08": "B8A",
                "swir16": "B11", "swir22": "B12", "qa_pixel": "SCL"}
#: HLS S30 asset key -> the Sentinel-2 band it is made from.
HLS_FROM = {"B02": "B02", "B03": "B03", "B04": "B04", "B08": "B08", "B8A": "B8A",
            "B11": "B11", "B12": "B12", "Fmask": "SCL"}
#: Landsat file names of each asset (Collection 2 product layout).
_LANDSAT_FILES = {"blue": "SR_B2", "green": "SR_B3", "red": "SR_B4", "nir08": "SR_B5",
                  "swir16": "SR_B6", "swir22": "SR_B7", "qa_pixel": "QA_PIXEL"}

#: Collection 2 ``QA_PIXEL`` values written for each SCL class (the values of real scenes:
#: 21824 clear land, 21952 water, 22280 high-confidence cloud, 23888 shadow, 30048 snow,
#: 54596 cirrus, 21762 dilated cloud, 1 fill); SCL 8 (medium cloud) is cloud confidence
#: medium without the cloud bit.
QA_PIXEL = {0: 1, 1: 21824, 2: 21824, 3: 23888, 4: 21824, 5: 21824, 6: 21952, 7: 21824,
            8: 22080, 9: 22280, 10: 54596, 11: 30048}
QA_DILATED = 21762
#: HLS v2.0 ``Fmask`` values per SCL class: aerosol low (bit 6) plus cloud (bit 1),
#: shadow (3), snow (4), water (5); cirrus is flagged cloud (HLS v2 leaves bit 0 unused).
FMASK = {0: 255, 1: 64, 2: 64, 3: 72, 4: 64, 5: 64, 6: 96, 7: 64, 8: 66, 9: 66, 10: 66,
         11: 80}
FMASK_ADJACENT = 4


def template(name: str) -> dict[str, Any]:
    """A real item of ``data/real/`` (a fresh copy)."""
    text = resources.files("xsits.testing").joinpath(f"data/real/{name}").read_text()
    return json.loads(text)


def _grid(bounds: tuple[float, float, float, float]) -> tuple[float, float, int, int]:
    """A 30 m grid inside ``bounds`` on Landsat's lattice (origins at 15 m mod 30)."""
    left, bottom, right, top = bounds
    x0 = np.ceil((left - 15) / 30) * 30 + 15
    y0 = np.floor((top - 15) / 30) * 30 + 15
    return float(x0), float(y0), int((right - x0) // 30), int((y0 - bottom) // 30)


def _pick(arr: np.ndarray, bounds, grid) -> np.ndarray:
    """Nearest pixels of ``arr`` (covering ``bounds``) at the 30 m grid's centres."""
    left, _, right, top = bounds
    res = (right - left) / arr.shape[1]
    x0, y0, nx, ny = grid
    cols = ((x0 + 15 + 30 * np.arange(nx) - left) // res).astype(int)
    rows = ((top - (y0 - 15 - 30 * np.arange(ny))) // res).astype(int)
    return arr[np.ix_(rows, cols)]


def _ring(mask: np.ndarray) -> np.ndarray:
    """Pixels next to ``mask`` (8-neighbourhood), not in it."""
    grown = mask.copy()
    padded = np.pad(mask, 1)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            grown |= padded[1 + dy: 1 + dy + mask.shape[0], 1 + dx: 1 + dx + mask.shape[1]]
    return grown & ~mask


def _write(path: pathlib.Path, arr: np.ndarray, epsg: int, grid, nodata, blocksize: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.tif")
    with rasterio.open(tmp, "w", driver="COG", width=arr.shape[1], height=arr.shape[0],
                       count=1, dtype=arr.dtype.name, crs=f"EPSG:{epsg}",
                       transform=Affine(30.0, 0.0, grid[0], 0.0, -30.0, grid[1]),
                       nodata=nodata, blocksize=blocksize, compress="DEFLATE",
                       predictor=2, overview_count=1, overview_resampling="nearest",
                       num_threads=1) as f:
        f.write(arr, 1)
    os.replace(tmp, path)


def _arrays(kind: str, s2: dict[str, np.ndarray], offset: int) -> dict[str, np.ndarray]:
    """One scene's files: ``{asset: array}`` from the Sentinel-2 arrays on the 30 m grid."""
    scl = s2["SCL"]
    cloud = np.isin(scl, (8, 9))
    source = LANDSAT_FROM if kind == "landsat" else HLS_FROM
    out = {}
    for key, band in source.items():
        if band == "SCL":
            table = QA_PIXEL if kind == "landsat" else FMASK
            qa = np.vectorize(table.get, otypes=["int64"])(scl)
            ring = _ring(cloud | (kind == "hls") * (scl == 3)) & (scl != 0)
            if kind == "landsat":
                qa[ring & ~np.isin(scl, (3, 10, 11))] = QA_DILATED
                out[key] = qa.astype("uint16")
            else:
                qa[ring] |= FMASK_ADJACENT
                out[key] = qa.astype("uint8")
            continue
        dn = s2[band].astype("float64")
        refl = (dn - offset) / 10000.0
        if kind == "landsat":
            arr = np.clip(np.rint((refl + 0.2) / 2.75e-05), 1, 65535).astype("uint16")
            arr[dn == 0] = 0
        else:
            arr = np.clip(np.rint(refl * 10000), -9998, 32767).astype("int16")
            arr[dn == 0] = -9999
        out[key] = arr
    return out


@dataclasses.dataclass
class SensorWorld(ItemFiles):
    """A generated Landsat or HLS world: COGs under ``root`` and their item dicts.

    Attributes
    ----------
    root
        The files, at provider-like relative paths.
    shape
        A key of :data:`SHAPES`.
    source
        The Sentinel-2 world the scenes are made from.
    items
        Item dicts, hrefs relative to ``root``.
    """

    root: pathlib.Path
    shape: str
    source: World
    items: list[dict[str, Any]]

    @property
    def collection(self) -> str:
        """The collection id of the items."""
        return SHAPES[self.shape][1]


def _landsat_item(tmpl: dict, meta: dict, grid, arrays, n: int) -> tuple[dict, dict]:
    when = dt.datetime.fromisoformat(meta["datetime"].replace("Z", "+00:00"))
    when -= dt.timedelta(minutes=25)
    sat = "08" if meta["platform"].endswith("A") else "09"
    window = meta["window"]
    path, row = f"{(190 + 7 * window) % 233 + 1:03d}", f"{27 + window:03d}"
    day = f"{when:%Y%m%d}"
    product = f"LC{sat}_L2SP_{path}{row}_{day}_{day}_02_T1"
    item_id = f"LC{sat}_L2SP_{path}{row}_{day}_02_T1"
    qa = arrays["qa_pixel"]
    valid = qa != 1
    cloudy = valid & ((qa & 0b1110) > 0)
    cover = round(100.0 * cloudy.sum() / max(1, valid.sum()), 2)
    scene = {"datetime": f"{when:%Y-%m-%dT%H:%M:%S}.477296Z", "platform": f"landsat-{sat[1]}",
             "proj:epsg": meta["epsg"], "proj:shape": [n[1], n[0]],
             "proj:transform": [30.0, 0.0, grid[0], 0.0, -30.0, grid[1]],
             "eo:cloud_cover": cover, "landsat:cloud_cover_land": cover,
             "landsat:wrs_path": path, "landsat:wrs_row": row,
             "landsat:scene_id": f"LC{sat[1]}{path}{row}{when:%Y%j}LGN00",
             "grid:code": f"WRS2-{path}{row}", "created": f"{when:%Y-%m-%dT%H:%M:%S}Z",
             "updated": f"{when:%Y-%m-%dT%H:%M:%S}Z",
             "landsat:product_generated": f"{when:%Y-%m-%dT%H:%M:%S}Z"}
    props = {}
    for key, value in tmpl["properties"].items():
        if key in scene:
            props[key] = scene[key]
        elif not key.startswith(("view:sun", "proj:centroid", "earthsearch:")):
            props[key] = copy.deepcopy(value)
    rel = f"{when:%Y}/{path}/{row}/{product}/{product}"
    names = {"id": item_id, "rel": rel}
    return props, names


def make_sensor_world(root: str | os.PathLike, spec: WorldSpec, shape: str) -> SensorWorld:
    """A Landsat or HLS world made from the Sentinel-2 world of ``spec`` (see the module).

    Parameters
    ----------
    root
        Directory: the Sentinel-2 source world goes to ``root/s2``, the files to ``root``.
    spec
        The Sentinel-2 world to make the scenes from (its bands are set here).
    shape
        A key of :data:`SHAPES`.

    Returns
    -------
    SensorWorld
    """
    root = pathlib.Path(root)
    name, collection = SHAPES[shape]
    kind = "landsat" if shape.endswith("landsat") else "hls"
    bands = tuple(sorted(set(LANDSAT_FROM.values() if kind == "landsat" else
                             HLS_FROM.values()) - {"SCL"})) + ("SCL",)
    source = make_world(root / "s2", dataclasses.replace(spec, bands=bands))
    tmpl = template(name)
    items = []
    for meta in source.items_meta:
        s2_id = meta["id"]
        bounds = meta["bounds"]
        grid = _grid(bounds)
        s2 = {b: _pick(source.truth(s2_id, b), bounds, grid) for b in bands}
        arrays = _arrays(kind, s2, meta["offset"])
        n = (grid[2], grid[3])
        if kind == "landsat":
            props, names = _landsat_item(tmpl, meta, grid, arrays, n)
            item_id = names["id"]
            prefix = ("landsat-c2/level-2/standard/oli-tirs/" if shape == "pc-landsat" else
                      "collection02/level-2/standard/oli-tirs/")
            hrefs = {k: f"{prefix}{names['rel']}_{_LANDSAT_FILES[k]}.TIF" for k in arrays}
        else:
            props, item_id = _hls_item(tmpl, meta, arrays)
            folder = "lp-prod-protected/HLSS30.020" if shape == "nasa-hls" else "hls2/S30"
            hrefs = {k: f"{folder}/{item_id}/{item_id}.{k}.tif" for k in arrays}
        for key, arr in arrays.items():
            nodata = tmpl_nodata(tmpl, key, kind)
            _write(root / hrefs[key], arr, meta["epsg"], grid, nodata, spec.blocksize)
        assets = {}
        for key, tasset in tmpl["assets"].items():  # every asset of the real item
            asset = {k: copy.deepcopy(v) for k, v in tasset.items()
                     if k not in ("file:size", "file:checksum")}
            if key in hrefs:
                asset["href"] = hrefs[key]
            elif not asset["href"].startswith("https://planetarycomputer"):
                asset["href"] = _sibling(hrefs, asset["href"])  # not written: never read
            assets[key] = asset
        geometry = next(it for it in source.item_dicts("/")
                        if it["id"] == s2_id)["geometry"]
        lons = [c[0] for c in geometry["coordinates"][0]]
        lats = [c[1] for c in geometry["coordinates"][0]]
        item = {"type": "Feature", "stac_version": tmpl["stac_version"],
                "stac_extensions": list(tmpl["stac_extensions"]), "id": item_id,
                "geometry": geometry, "bbox": [min(lons), min(lats), max(lons), max(lats)],
                "properties": props, "links": [], "assets": assets,
                "collection": collection}
        items.append(item)
    (root / "items.json").write_text(json.dumps(items))
    return SensorWorld(root, shape, source, items)


def _sibling(hrefs: dict[str, str], real: str) -> str:
    """A relative href beside the written files for an asset that is not written."""
    folder = next(iter(hrefs.values())).rsplit("/", 1)[0]
    return f"{folder}/{real.rsplit('/', 1)[-1]}"


def tmpl_nodata(tmpl: dict, key: str, kind: str) -> float | int:
    """The nodata of an asset's files: its ``raster:bands``, else the product's fill."""
    bands = tmpl["assets"][key].get("raster:bands") or [{}]
    if "nodata" in bands[0]:
        return bands[0]["nodata"]
    if kind == "landsat":
        return 0
    return 255 if key == "Fmask" else -9999


def _hls_item(tmpl: dict, meta: dict, arrays) -> tuple[dict, str]:
    when = dt.datetime.fromisoformat(meta["datetime"].replace("Z", "+00:00"))
    item_id = f"HLS.S30.T{meta['tile']}.{when:%Y%jT%H%M%S}.v2.0"
    fmask = arrays["Fmask"]
    valid = fmask != 255
    cloudy = valid & ((fmask & 0b1110) > 0)
    stamp = f"{when:%Y-%m-%dT%H:%M:%S}.{when.microsecond // 1000:03d}"
    props = {"eo:cloud_cover": int(round(100.0 * cloudy.sum() / max(1, valid.sum()))),
             "datetime": f"{stamp}000Z", "start_datetime": f"{stamp}Z",
             "end_datetime": f"{stamp}Z"}
    return {k: props[k] for k in tmpl["properties"] if k in props}, item_id
