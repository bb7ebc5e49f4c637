"""Synthetic scenes in the exact item shapes of real providers (Earth Search v1, C1, v0).

The synthetic world (:mod:`xsits.testing.world`) writes Planetary-Computer-shaped items.
:func:`reshape` gives one of them the shape of a real item stored in ``data/real/`` (see its
``SOURCES.md``): the template's asset keys, asset fields and ``raster:bands`` (scale, offset,
``bits_per_sample``), ``proj:*`` per asset or per item, 6- or 9-element transforms, property
names, flags, ``stac_version`` and ``stac_extensions``. Values that belong to the scene
(geometry, dates, tile, cloud cover, hrefs, pixel shapes and transforms) are the synthetic
scene's; a field the template has and the scene cannot give honestly is left out, and no
field the template lacks is added.

Owns: the shape templates (:data:`SHAPES`) and :func:`reshape`.
Must not: write pixels (the COGs are the world's; which DN they hold, with or without the
+1000 offset, is the world's ``baseline_switch``).

Examples
--------
>>> import tempfile
>>> from xsits.testing.scenes import WorldSpec
>>> from xsits.testing.world import make_world
>>> world = make_world(tempfile.mkdtemp(), WorldSpec(points=((11.35, 48.05),),
...                    start="2024-06-01", end="2024-06-01", bands=("B04", "SCL")))
>>> item = reshape(world.item_dicts("/data")[0], "es-v1-2025", offset_applied=False)
>>> item["id"], sorted(item["assets"]), item["properties"]["earthsearch:boa_offset_applied"]
('S2A_32UPU_20240601_0_L2A', ['red', 'scl'], False)
>>> item["assets"]["red"]["raster:bands"][0]["offset"], item["properties"]["platform"]
(-0.1, 'sentinel-2a')
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from importlib import resources
from typing import Any

from xsits.stac.providers import EARTH_SEARCH_KEYS

#: Shape name -> (template file in ``data/real/``, band naming of its asset keys).
SHAPES: dict[str, tuple[str, str]] = {
    "es-v1-2025": ("es-v1-sentinel-2-l2a-2025.json", "earth-search"),
    "es-v1-2023": ("es-v1-sentinel-2-l2a-2023.json", "earth-search"),
    "es-c1-2025": ("es-c1-sentinel-2-c1-l2a-2025.json", "earth-search"),
    "es-v0-2025": ("es-v0-sentinel-s2-l2a-cogs-2025.json", "band-id"),
    "es-v0-2020": ("es-v0-sentinel-s2-l2a-cogs-2020.json", "band-id"),
}

#: Template properties that do not depend on the scene (kept as they are).
_KEEP = {"constellation", "instruments", "gsd", "view:off_nadir", "sentinel:sequence",
         "s2:sequence", "sentinel:valid_cloud_cover", "processing:software", "storage:platform",
         "storage:region", "storage:requester_pays", "s2:product_type", "s2:datatake_type"}


def template(shape: str) -> dict[str, Any]:
    """The real item a shape copies (a fresh copy).

    Examples
    --------
    >>> template("es-c1-2025")["collection"]
    'sentinel-2-c1-l2a'
    """
    name, _ = SHAPES[shape]
    text = resources.files("xsits.testing").joinpath(f"data/real/{name}").read_text()
    return json.loads(text)


def _with_baseline(text: str, baseline: str) -> str:
    return re.sub(r"_N\d{4}_", f"_N{baseline.replace('.', '')}_", text)


def _properties(tmpl: dict[str, Any], src: dict[str, Any], item_id: str, baseline: str,
                offset_applied: bool | None) -> dict[str, Any]:
    p = src["properties"]
    tile = p["s2:mgrs_tile"]
    zone, band, square = int(tile[:2]), tile[2], tile[3:]
    when = dt.datetime.fromisoformat(p["datetime"].replace("Z", "+00:00"))
    product = _with_baseline(p["s2:product_uri"], baseline)
    lons = [c[0] for c in src["geometry"]["coordinates"][0]]
    lats = [c[1] for c in src["geometry"]["coordinates"][0]]
    scene: dict[str, Any] = {
        "datetime": p["datetime"], "created": p["datetime"], "updated": p["datetime"],
        "platform": p["platform"].lower(),
        "eo:cloud_cover": p["eo:cloud_cover"], "proj:epsg": p["proj:epsg"],
        "proj:centroid": {"lat": round(sum(lats[:-1]) / (len(lats) - 1), 5),
                          "lon": round(sum(lons[:-1]) / (len(lons) - 1), 5)},
        "mgrs:utm_zone": zone, "mgrs:latitude_band": band, "mgrs:grid_square": square,
        "sentinel:utm_zone": zone, "sentinel:latitude_band": band,
        "sentinel:grid_square": square, "grid:code": f"MGRS-{tile}",
        "s2:processing_baseline": baseline, "sentinel:processing_baseline": baseline,
        "s2:product_uri": product, "sentinel:product_id": product.removesuffix(".SAFE"),
        "view:sun_azimuth": p.get("s2:mean_solar_azimuth"),
        "view:sun_elevation": None if p.get("s2:mean_solar_zenith") is None
        else 90.0 - p["s2:mean_solar_zenith"],
        "data_coverage": round(100.0 - p["s2:nodata_pixel_percentage"], 2),
        "sentinel:data_coverage": round(100.0 - p["s2:nodata_pixel_percentage"], 2),
        "earthsearch:s3_path": (f"s3://sentinel-cogs/sentinel-s2-l2a-cogs/{zone}/{band}/"
                                f"{square}/{when.year}/{when.month}/{item_id}"),
    }
    for key in ("s2:generation_time", "s2:datatake_id", "s2:datastrip_id", "s2:granule_id"):
        if key in p:
            scene[key] = p[key] if key == "s2:generation_time" else \
                re.sub(r"N\d{2}\.\d{2}", f"N{baseline}", p[key])
    out: dict[str, Any] = {}
    for key, value in tmpl["properties"].items():
        if key in ("earthsearch:boa_offset_applied", "sentinel:boa_offset_applied"):
            out[key] = value if offset_applied is None else offset_applied
        elif key in scene and scene[key] is not None:
            out[key] = scene[key]
        elif key in _KEEP:
            out[key] = copy.deepcopy(value)
        elif key.startswith("s2:") and key in p:
            out[key] = p[key]
    return out


def reshape(item: dict[str, Any], shape: str, *, baseline: str | None = None,
            offset_applied: bool | None = None) -> dict[str, Any]:
    """A synthetic (Planetary-Computer-shaped) item dict in the shape of a real one.

    Parameters
    ----------
    item
        An item of :meth:`xsits.testing.world.World.item_dicts` (hrefs already rebased).
    shape
        A key of :data:`SHAPES`.
    baseline
        The processing baseline to state (product ids follow it). Default: the template's
        own (``05.11``, ``05.09``; the 2020 v0 template states none and its product id says
        ``02.14``).
    offset_applied
        The provider's "offset removed" flag, for templates that have one (Earth Search v1,
        v0 2025). Default: the template's value.

    Returns
    -------
    dict
        The new item dict (the input is not changed).

    Examples
    --------
    >>> import tempfile
    >>> from xsits.testing.scenes import WorldSpec
    >>> from xsits.testing.world import make_world
    >>> world = make_world(tempfile.mkdtemp(), WorldSpec(points=((11.35, 48.05),),
    ...                    start="2024-06-01", end="2024-06-01", bands=("B04", "SCL")))
    >>> v0 = reshape(world.item_dicts("/data")[0], "es-v0-2020")
    >>> v0["properties"]["sentinel:product_id"][27:32], len(v0["assets"]["B04"]["proj:transform"])
    ('N0214', 9)
    >>> "raster:bands" in v0["assets"]["B04"], "sentinel:processing_baseline" in v0["properties"]
    (False, False)
    """
    tmpl = template(shape)
    _, naming = SHAPES[shape]
    if baseline is None:
        baseline = tmpl["properties"].get("s2:processing_baseline") or tmpl["properties"].get(
            "sentinel:processing_baseline")
        if baseline is None:
            match = re.search(r"_N(\d{2})(\d{2})_", tmpl["properties"]["sentinel:product_id"])
            baseline = f"{match[1]}.{match[2]}" if match else "02.14"
    p = item["properties"]
    when = dt.datetime.fromisoformat(p["datetime"].replace("Z", "+00:00"))
    sat, tile = p["platform"][-1].upper(), p["s2:mgrs_tile"]
    if shape.startswith("es-c1"):
        item_id = f"S2{sat}_T{tile}_{when:%Y%m%dT%H%M%S}_L2A"
    else:
        item_id = f"S2{sat}_{tile}_{when:%Y%m%d}_0_L2A"
    assets = {}
    for band, src in item["assets"].items():
        key = EARTH_SEARCH_KEYS[band] if naming == "earth-search" else band
        asset = copy.deepcopy(tmpl["assets"][key])
        asset["href"] = src["href"]
        if "proj:shape" in asset:
            asset["proj:shape"] = list(src["proj:shape"])
        if "proj:transform" in asset:
            transform = list(src["proj:transform"])[:6]
            asset["proj:transform"] = transform + [0.0, 0.0, 1.0] if len(
                asset["proj:transform"]) == 9 else transform
        for field in ("file:size", "file:checksum"):  # of the template's file, not this one
            asset.pop(field, None)
        assets[key] = asset
    out = {
        "type": "Feature",
        "stac_version": tmpl["stac_version"],
        "stac_extensions": list(tmpl["stac_extensions"]),
        "id": item_id,
        "geometry": copy.deepcopy(item["geometry"]),
        "bbox": list(item["bbox"]),
        "properties": _properties(tmpl, item, item_id, baseline, offset_applied),
        "links": [],
        "assets": assets,
    }
    if "collection" in tmpl:
        out["collection"] = tmpl["collection"]
    return out


def item_collection(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of item dicts (what a local ItemCollection file holds).

    Examples
    --------
    >>> item_collection([])["type"]
    'FeatureCollection'
    """
    return {"type": "FeatureCollection", "features": items}
