"""The files and STAC items of the reader conformance suite (tests/conformance.py).

Each case's raster is written with rasterio / GDAL in its layout (:func:`write_raster`,
checked by :func:`check_written`), described by PC-shaped items (:func:`make_item`, no
``raster:bands`` unless the case asks) in its own collection (:func:`make_collection`), and
loaded on the geobox of its request (:func:`case_geobox`).
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import numpy as np
from conformance_cases import (
    SUITE,
    Case,
    Layout,
    is_numeric,
)

# --------------------------------------------------------------------------- files


def _pattern(layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """The bands of a file: noise with smooth structure, nodata in a corner and a stripe."""
    rng = np.random.default_rng(np.dtype(layout.dtype).num * 10 + layout.bands)
    n = layout.size
    yy, xx = np.mgrid[0:n, 0:n]
    dtype = np.dtype(layout.dtype)
    out = []
    for b in range(layout.bands):
        smooth = np.sin(xx / (17 + 5 * b)) * np.cos(yy / 23) * 0.5 + 0.5
        noise = rng.random((n, n))
        v = 0.6 * smooth + 0.4 * noise
        if dtype.kind == "f":
            arr = ((v - 0.3) * 2000).astype(dtype)
        elif layout.compress in ("JPEG", "WEBP"):
            arr = (v * 200 + 20).astype(dtype)
        else:
            lo, hi = (1, 250) if dtype.itemsize == 1 else (-3000, 12000) \
                if dtype.kind == "i" else (1, 12000)
            arr = (lo + v * (hi - lo)).astype(dtype)
        out.append(arr)
    data = np.stack(out)
    hole = (xx + yy < n // 5) | ((yy > n // 2) & (yy < n // 2 + 7))
    nd = layout.nodata_value()
    if layout.nodata in ("zero", "value", "nan") or is_numeric(layout.nodata):
        data[:, hole] = nd
    elif dtype.kind == "f" and layout.compress not in ("LERC", "LERC_DEFLATE"):
        data[:, (xx % 97 == 3) & (yy % 89 == 5)] = np.nan  # NaNs that are not nodata
    return data, hole


def write_raster(layout: Layout, path: Path) -> None:
    """Write ``layout`` with rasterio / GDAL (the GTiff or COG driver, creation options)."""
    import rasterio

    transform = layout.transform()
    data, hole = _pattern(layout)
    opts: dict[str, Any] = {"compress": layout.compress}
    if layout.predictor > 1:
        opts["predictor"] = layout.predictor
    if layout.compress == "JPEG" and layout.bands == 3:
        opts["photometric"] = "YCBCR" if layout.interleave == "pixel" else "RGB"
    if layout.compress == "WEBP":
        opts["webp_lossless"] = False
    # "cog": the COG driver; band interleave (which its GDAL 3.10 cannot write): a GTiff
    # copied with COPY_SRC_OVERVIEWS, the same layout (overviews' IFDs first, then the data)
    cog = layout.overviews == "cog"
    by_cog_driver = cog and layout.interleave == "pixel"
    if by_cog_driver:
        opts.update(blocksize=layout.block, overviews="AUTO", resampling="nearest")
    else:
        opts["interleave"] = layout.interleave
        if layout.block:
            opts.update(tiled=True, blockxsize=layout.block, blockysize=layout.block)
        else:
            opts.update(tiled=False, blockysize=max(1, 8192 // layout.size))
        if layout.endian == "big":
            opts["endianness"] = "BIG"
    nodata = layout.nodata_value()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.tif")
    copied = cog and (layout.nodata == "mask" or not by_cog_driver)
    from rasterio.enums import Resampling
    from rasterio.shutil import copy as rio_copy

    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        target = tmp if copied else path
        drv = "COG" if by_cog_driver and not copied else "GTiff"
        first_opts = {"tiled": True, "interleave": layout.interleave} if copied else opts
        with rasterio.open(target, "w", driver=drv, width=layout.size, height=layout.size,
                           count=layout.bands, dtype=layout.dtype, crs=layout.crs,
                           transform=transform, nodata=nodata, **first_opts) as dst:
            dst.write(data)
            if layout.nodata == "mask":
                dst.write_mask(np.where(hole, 0, 255).astype("uint8"))
        if copied:
            if by_cog_driver:
                rio_copy(tmp, path, driver="COG", **opts)
            else:
                with rasterio.open(tmp, "r+") as dst:
                    factors, f = [], 2
                    while layout.size / f >= min(layout.block, 256) / 2:
                        factors.append(f)
                        f *= 2
                    dst.build_overviews(factors or [2], Resampling.nearest)
                rio_copy(tmp, path, driver="GTiff", copy_src_overviews=True, **opts)
            tmp.unlink()
        if layout.overviews in ("addo", "many"):
            with rasterio.open(path, "r+") as dst:
                factors = [2, 4] if layout.overviews == "addo" else [2, 4, 8, 16, 32, 64]
                dst.build_overviews(factors, Resampling.nearest)
    check_written(layout, path)


#: TIFF compression tag of each codec name
_TIFF_CODES = {"NONE": 1, "DEFLATE": 8, "LZW": 5, "ZSTD": 50000, "JPEG": 7, "LERC": 34887,
               "LERC_DEFLATE": 34887, "WEBP": 50001}


def check_written(layout: Layout, path: Path) -> None:
    """Fail unless the file has the layout the case claims (GDAL may ignore an option)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        pages = list(tif.pages)
        main = pages[0]
        images = [p for p in pages if not int(p.subfiletype) & 4]
        masks = [p for p in pages if int(p.subfiletype) & 4]
        got = {
            "compression": int(main.compression), "predictor": int(main.predictor),
            "tiled": main.is_tiled, "block": main.tilewidth if main.is_tiled else 0,
            "planar": int(main.planarconfig), "bands": main.samplesperpixel,
            "dtype": main.dtype.name, "big": tif.byteorder == ">", "masks": bool(masks),
            "overviews": len(images) - 1,
            # where the IFDs are: all before the image data (COG), or some after (gdaladdo)
            "ifds_first": max(p.offset for p in pages) < min(main.dataoffsets),
        }
    want = {
        "compression": _TIFF_CODES[layout.compress], "predictor": layout.predictor,
        "tiled": layout.block > 0, "block": layout.block,
        "planar": 2 if layout.interleave == "band" and layout.bands > 1 else 1,
        "bands": layout.bands, "dtype": layout.dtype, "big": layout.endian == "big",
        "masks": layout.nodata == "mask",
        "ifds_first": layout.overviews not in ("addo", "many"),
        "overviews": {"none": 0, "addo": 2, "many": 6}.get(layout.overviews,
                                                           got["overviews"] or -1),
    }
    if layout.bands == 1:
        want["planar"] = got["planar"]  # one band: either is the same layout
    if layout.overviews == "cog" and layout.size <= layout.block:
        want["overviews"] = got["overviews"]  # GDAL makes none for a single-tile file
    if got != want:
        diff = {k: (got[k], want[k]) for k in got if got[k] != want[k]}
        raise AssertionError(f"{path.name}: GDAL wrote another layout (got, wanted): {diff}")


# --------------------------------------------------------------------------- STAC items


def case_footprint(layout: Layout) -> tuple[Any, Any]:
    """(geobox of the file, its footprint polygon in EPSG:4326)."""
    from odc.geo.geobox import GeoBox

    gbox = GeoBox((layout.size, layout.size), layout.transform(), layout.crs)
    return gbox, gbox.extent.to_crs("EPSG:4326")


def item_id(case: Case, index: int, part: int = 0) -> str:
    """The id of the item of the case's ``part``-th file (0: its own; 1...: the mosaic's)."""
    return f"{SUITE}-{index:04d}-{part}-{case.name}"[:120]


def make_item(case: Case, href: str, collection: str, index: int, part: int = 0) -> dict:
    """A Planetary-Computer-shaped item of the case's file (see tests/data/pc-item-example)."""
    layout, req = case.layout, case.request
    gbox, fp = case_footprint(layout)
    epsg = int(layout.crs.split(":")[1])
    props: dict[str, Any] = {
        "datetime": (dt.datetime(2024, 1, 1, 10, 30) + dt.timedelta(
            days=index % 300, seconds=index + part)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "platform": "Sentinel-2B", "constellation": "Sentinel 2", "instruments": ["msi"],
        "eo:cloud_cover": 1.5, "s2:mgrs_tile": "32TNR", "s2:processing_baseline": "05.11",
    }
    exts = ["https://stac-extensions.github.io/eo/v1.0.0/schema.json"]
    asset: dict[str, Any] = {
        "href": href, "title": "Band 4 - Red - 10m",
        "type": "image/tiff; application=geotiff; profile=cloud-optimized", "roles": ["data"],
        "gsd": float(gbox.resolution.x),
    }
    rb = req.meta == "raster_bands" or req.meta.startswith("rb_")
    if req.meta in ("pc", "no_transform", "epsg_only") or rb:
        props["proj:epsg"] = epsg
        exts.append("https://stac-extensions.github.io/projection/v1.0.0/schema.json")
    elif req.meta == "proj_code":
        props["proj:code"] = f"EPSG:{epsg}"
        exts.append("https://stac-extensions.github.io/projection/v2.0.0/schema.json")
    if req.meta in ("pc", "proj_code", "no_transform") or rb:
        asset["proj:shape"] = [layout.size, layout.size]
        asset["proj:bbox"] = list(gbox.extent.boundingbox)
    if req.meta in ("pc", "proj_code") or rb:
        asset["proj:transform"] = list(gbox.transform)[:6]
    if rb:
        exts.append("https://stac-extensions.github.io/raster/v1.1.0/schema.json")
        nd = layout.nodata_value()
        band: dict[str, Any] = {"data_type": layout.dtype, "spatial_resolution": 10,
                                "scale": 1.0, "offset": 0.0}
        if req.meta == "rb_float32":  # STAC says float32 of an integer file
            band["data_type"] = "float32"
        if req.meta == "rb_nodata0":  # STAC's nodata is not the file's
            nd = 0
        if nd is not None and req.meta != "rb_no_nodata":
            band["nodata"] = "nan" if isinstance(nd, float) and math.isnan(nd) else nd
        asset["raster:bands"] = [band] * layout.bands
    return {
        "type": "Feature", "stac_version": "1.1.0", "stac_extensions": exts,
        "id": item_id(case, index, part), "collection": collection,
        "geometry": fp.json, "bbox": list(fp.boundingbox), "properties": props, "links": [],
        "assets": {"B04": asset,
                   "tilejson": {"href": "http://127.0.0.1:9/tilejson.json",
                                "type": "application/json", "roles": ["tiles"]}},
    }


def make_collection(cid: str) -> dict:
    return {
        "type": "Collection", "stac_version": "1.1.0", "id": cid,
        "description": "xsits reader conformance cases", "license": "proprietary", "links": [],
        "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                   "temporal": {"interval": [["2024-01-01T00:00:00Z", None]]}},
    }


# --------------------------------------------------------------------------- geoboxes


def case_geobox(case: Case) -> Any:
    """The output grid of a driver-path case: the file and 2 output pixels around it."""
    from affine import Affine
    from odc.geo.crs import CRS
    from odc.geo.geobox import GeoBox

    layout, req = case.layout, case.request
    src, _ = case_footprint(layout)
    out = CRS(req.crs or layout.crs)
    res_src = abs(src.resolution.x) if not out.geographic or CRS(layout.crs).geographic \
        else None
    if res_src is None:  # metres to degrees
        res = abs(src.resolution.x) / 111320.0 * req.factor
    elif CRS(layout.crs).geographic and not out.geographic:
        res = abs(src.resolution.x) * 111320.0 * req.factor
    else:
        res = res_src * req.factor
    minx, miny, maxx, maxy = src.extent.to_crs(out).boundingbox
    if req.window == "inside":
        cx, cy, w = (minx + maxx) / 2, (miny + maxy) / 2, (maxx - minx) / 4
        minx, maxx, miny, maxy = cx - w, cx + w, cy - w, cy + w
    x0 = (math.floor(minx / res) - 2 + req.shift) * res
    y1 = (math.ceil(maxy / res) + 2 + req.shift) * res
    nx = int(math.ceil((maxx - x0) / res)) + 2
    ny = int(math.ceil((y1 - miny) / res)) + 2
    return GeoBox((ny, nx), Affine(res, 0, x0, 0, -res, y1), out)
