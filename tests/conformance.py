"""Reader conformance: xsits' loads against ``odc.stac.load`` with its default (GDAL) reader.

Cases are generated here (:func:`cases`); each writes its raster with rasterio / GDAL at run
time (files are shared between cases with the same layout), serves it from a
:class:`~xsits.testing.servers.CogServer`, indexes PC-shaped STAC items (no ``raster:bands``
unless the case asks) in the test STAC API, then loads the same items on the same geobox:

- the truth: ``odc.stac.load(items, ..., chunks=None)`` with its default reader (no driver),
  the band's dtype / nodata from ``rasterio`` for items without ``raster:bands``
  (floating-point bands with ``nodata=nan``: xsits loads their missing pixels as NaN);
- xsits' driver path: :func:`xsits.cube.load.load_cube` (``odc.stac.load(driver=CogDriver(...))``,
  dtypes from :func:`xsits.cube.load.band_config`), and for the ``api`` cases
  :func:`xsits.open_cubes` in image or patch mode on the STAC API;
- for the cases with ``points``: the points reader (:func:`xsits.cube.points.read_points`)
  on windows across the file, each against ``odc.stac.load`` on that window.

Equal means the same dtype, the same nodata attribute, identical values and identical NaN
positions. There is no tolerance anywhere. Each case records whether the fast reader served
its reads, GDAL did, or both (``reader.last_load_stats()``).

Fault cases inject per-path faults in the COG server: 500 / 503, a truncated body or a
dropped connection, on the header's requests or on the reads after it, then success, must
come back equal (retried); 404 / 403 must raise a :class:`LoadError` naming the href
(without its query string) within seconds. Through ``open_cubes`` (with features of good files
in the same call) the bad feature is in ``cubes.missing`` with that reason when open_cubes read
its header (the first file of the call's band and collection), else its lazy cube raises that
LoadError at once when computed; the other features' cubes are equal either way.

``python -m tests.conformance --table`` runs the whole suite (starting its own servers) and
prints the table of cases per axis.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

SUITE = "conformance"  # collection ids start with it
START, END = "2024-01-01", "2024-12-31"
# Source grids: CRS -> (origin x, origin y, pixel size)
ORIGINS = {
    "EPSG:32632": (600000.0, 5000000.0, 10.0),   # UTM 32 N, ~10.3 E 45.1 N
    "EPSG:32733": (400000.0, 7800000.0, 10.0),   # UTM 33 S, ~14 E 19.9 S
    "EPSG:3035": (4300000.0, 2600000.0, 10.0),   # LAEA Europe
    "EPSG:4326": (10.0, 45.0, 0.0001),           # lon / lat pixels
    "EPSG:3857": (1113190.0, 5621520.0, 10.0),   # web mercator, ~10 E 45 N
}
# Output CRSs tried from each source CRS
OUT_CRS = {
    "EPSG:32632": ("EPSG:3035", "EPSG:4326", "EPSG:3857", "EPSG:32633"),
    "EPSG:32733": ("EPSG:4326", "EPSG:3857", "EPSG:32734"),
    "EPSG:3035": ("EPSG:32632", "EPSG:4326"),
    "EPSG:4326": ("EPSG:32632", "EPSG:3035"),
    "EPSG:3857": ("EPSG:32632", "EPSG:4326"),
}
RESAMPLING = ("nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "mode",
              "min", "max", "med", "q1", "q3", "sum", "rms")


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Layout:
    """A file: how GDAL writes it."""

    dtype: str = "uint16"
    compress: str = "DEFLATE"  # or NONE, LZW, ZSTD, JPEG, LERC, LERC_DEFLATE, WEBP
    predictor: int = 1
    block: int = 256  # tile size; 0: striped (not tiled)
    interleave: str = "pixel"  # or "band"
    bands: int = 1
    overviews: str = "cog"  # "none", "cog" (COG driver), "addo" (internal, after the data),
    #                         "many" (addo, 2..64)
    nodata: str = "value"  # "none", "zero", "value" (not 0), "nan", "mask" (internal mask band),
    #                        or a number ("-9999": HLS reflectance, "-32768": Sentinel-1 RTC)
    endian: str = "little"  # or "big"
    crs: str = "EPSG:32632"
    res: tuple[float, float] = (1.0, 1.0)  # x, y pixel size, times the CRS's ORIGINS size
    size: int = 384  # width = height
    where: int = 0  # distinct position (api cases: each file elsewhere)
    offset: float = 0.0  # shift right and down, in file widths (files of a mosaic overlap)

    @property
    def key(self) -> str:
        text = repr(self)
        return f"{self.compress.lower()}-{self.dtype}-" + \
            hashlib.sha1(text.encode()).hexdigest()[:10]

    def transform(self) -> Any:
        """The file's affine transform (api cases side by side; mosaic files overlapping)."""
        from affine import Affine

        x0, y0, px = ORIGINS[self.crs]
        x0 += (self.where * 3 + self.offset) * px * self.size
        y0 -= self.offset / 2 * px * self.size * self.res[1]
        return Affine(px * self.res[0], 0, x0, 0, -px * self.res[1], y0)

    def nodata_value(self) -> float | None:
        if self.nodata in ("none", "mask"):
            return None
        if self.nodata == "zero":
            return 0
        if self.nodata == "nan":
            return float("nan")
        kind = np.dtype(self.dtype)
        if _numeric(self.nodata):
            return float(self.nodata) if kind.kind == "f" else int(self.nodata)
        if kind.kind == "f":
            return -9999.0
        return int(np.iinfo(kind).max) if kind.kind == "u" else int(np.iinfo(kind).min)


@dataclass(frozen=True)
class Request:
    """How the case loads the file."""

    crs: str | None = None  # output CRS; None: the file's
    factor: float = 1.0  # output pixel / file pixel
    shift: float = 0.0  # output grid offset, in output pixels (0: on the file's lattice)
    window: str = "all"  # "all": the file and 2 pixels around; "inside": a window in it
    resampling: str = "nearest"
    band: int = 1
    meta: str = "pc"  # "pc": proj:epsg + proj:shape + proj:transform, no raster:bands;
    #                   "raster_bands" (the file's dtype / nodata), "proj_code" (proj v2),
    #                   "no_transform", "epsg_only"; raster:bands unlike the file:
    #                   "rb_float32", "rb_nodata0", "rb_no_nodata"
    api: str | None = None  # None: the driver path only; "image" / "patch": also open_cubes
    points: int = 0  # > 0: also the points reader (xsits.cube.points), windows of this size
    fault: str | None = None  # "500", "truncate", "404", "403": the next requests of the
    #                           file fail (its header's); "KIND@read": once its header is known,
    #                           the next request (a block's, or GDAL's) fails with KIND


@dataclass(frozen=True)
class Case:
    name: str
    axis: str
    layout: Layout
    request: Request = Request()
    mosaic: tuple[Layout, ...] = ()  # more files on the same date, fused by odc-stac


@dataclass
class Result:
    case: Case
    equal: bool | None = None  # None: not run
    reader: str = "?"  # "fast", "gdal", "mixed", "none" (no read)
    detail: str = ""
    api_equal: dict[str, bool] = field(default_factory=dict)
    api_out: dict[str, tuple] = field(default_factory=dict)  # mode: (dtype, nodata attr)
    seconds: float = 0.0


BASE = Layout()
FLOAT_BASE = Layout(dtype="float32", nodata="nan")
#: The files of the collections beyond Sentinel-2: HLS reflectance (int16, nodata -9999) and
#: Sentinel-1 RTC gamma naught (float32, nodata -32768)
HLS_BASE = Layout(dtype="int16", nodata="-9999")
S1_BASE = Layout(dtype="float32", nodata="-32768", block=512, size=640)


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _valid(layout: Layout) -> bool:
    """Whether GDAL writes this layout (lossy codecs take bytes only, etc.)."""
    d, c = layout.dtype, layout.compress
    if c in ("JPEG", "WEBP") and d != "uint8":
        return False
    if c == "WEBP" and layout.bands not in (3, 4):
        return False
    if c == "JPEG" and layout.bands not in (1, 3):
        return False
    if layout.nodata == "nan" and np.dtype(d).kind != "f":
        return False
    if _numeric(layout.nodata) and np.dtype(d).kind in "iu" and not (
            np.iinfo(d).min <= float(layout.nodata) <= np.iinfo(d).max):
        return False
    if layout.predictor == 3 and np.dtype(d).kind != "f":
        return False
    if layout.predictor > 1 and c in ("NONE", "JPEG", "WEBP", "LERC", "LERC_DEFLATE"):
        return False
    if layout.overviews == "cog" and (layout.block == 0 or layout.endian == "big"):
        return False
    return True


def _layouts() -> Iterator[tuple[str, str, Layout]]:
    """(axis, label, layout) around the baselines, one or two axes at a time."""
    for comp in ("NONE", "DEFLATE", "LZW", "ZSTD", "LERC", "LERC_DEFLATE"):
        for dtype in ("uint8", "uint16", "int16", "int32", "float32", "float64") + (
                ("int8", "uint32") if comp in ("DEFLATE", "LERC") else ()):
            nodata = "nan" if dtype.startswith("float") else "value"
            yield "compression x dtype", f"{comp}-{dtype}", replace(
                BASE, compress=comp, dtype=dtype, nodata=nodata)
    for comp in ("JPEG", "WEBP"):
        for bands in (1, 3, 4):
            for ovr in ("cog", "none"):
                yield "compression (lossy)", f"{comp}-{bands}b-{ovr}", replace(
                    BASE, compress=comp, dtype="uint8", bands=bands, overviews=ovr,
                    nodata="none" if bands != 1 else "zero")
    for comp in ("DEFLATE", "LZW", "ZSTD"):
        for dtype in ("uint8", "uint16", "int16", "int32"):
            yield "predictor", f"p2-{comp}-{dtype}", replace(
                BASE, compress=comp, dtype=dtype, predictor=2)
        for dtype in ("float32", "float64"):
            for pred in (2, 3):
                yield "predictor", f"p{pred}-{comp}-{dtype}", replace(
                    FLOAT_BASE, compress=comp, dtype=dtype, predictor=pred)
    for block in (128, 256, 512, 0):
        for ovr in ("none", "addo", "cog"):
            for inter in ("pixel", "band"):
                yield "block x overviews x interleave", f"b{block}-{ovr}-{inter}", replace(
                    BASE, block=block, overviews=ovr, interleave=inter, bands=2,
                    size=640 if block == 512 else BASE.size)
    for bands in (1, 2, 3, 4):
        for inter in ("pixel", "band"):
            for comp in ("NONE", "DEFLATE"):
                yield "bands x interleave", f"{bands}b-{inter}-{comp}", replace(
                    BASE, bands=bands, interleave=inter, compress=comp)
    for ovr in ("none", "cog", "addo", "many"):
        for size in (384, 1024):
            yield "overviews", f"ovr-{ovr}-{size}", replace(BASE, overviews=ovr, size=size)
    for nodata in ("none", "zero", "value", "mask"):
        for dtype in ("uint16", "int16", "float32"):
            yield "nodata", f"nd-{nodata}-{dtype}", replace(BASE, nodata=nodata, dtype=dtype)
    yield "nodata", "nd-nan-float32", replace(BASE, nodata="nan", dtype="float32")
    yield "nodata", "nd-nan-float64", replace(BASE, nodata="nan", dtype="float64")
    for dtype in ("uint16", "int16", "int32", "float32", "float64"):
        for comp in ("NONE", "DEFLATE", "LZW"):
            yield "byte order", f"be-{dtype}-{comp}", replace(
                BASE, endian="big", dtype=dtype, compress=comp, overviews="addo",
                nodata="nan" if dtype.startswith("float") else "value")


def _requests_of_crs() -> Iterator[tuple[str, str, Layout, Request]]:
    for crs, outs in OUT_CRS.items():
        src = replace(BASE, crs=crs)
        yield "source CRS", f"src-{crs}", src, Request()
        yield "source CRS", f"src-{crs}-x2", src, Request(factor=2)
        for out in outs:
            for factor in (1, 2, 3.3, 8):
                yield "output CRS x resolution", f"{crs}-to-{out}-x{factor}", src, \
                    Request(crs=out, factor=factor)
            yield "output CRS x resampling", f"{crs}-to-{out}-bilinear", src, \
                Request(crs=out, factor=2, resampling="bilinear")


def cases() -> list[Case]:
    """Every case of the suite (cheap: no file is written)."""
    out: list[Case] = []

    def add(axis: str, name: str, layout: Layout, req: Request = Request(),
            mosaic: tuple[Layout, ...] = ()) -> None:
        if _valid(layout) and all(_valid(m) for m in mosaic):
            out.append(Case(name, axis, layout, req, mosaic))

    for axis, label, layout in _layouts():
        add(axis, label, layout)
        if axis in ("compression x dtype", "compression (lossy)", "predictor", "byte order",
                    "nodata", "overviews", "block x overviews x interleave"):
            add(axis, label + "-x2.5", layout, Request(factor=2.5))
        if axis in ("compression x dtype", "compression (lossy)", "nodata", "overviews"):
            add(axis, label + "-3035", layout, Request(crs="EPSG:3035", factor=1.5))
        if axis == "overviews":
            for f in (2, 4, 16):
                add(axis, f"{label}-x{f}", layout, Request(factor=f))
        if axis == "bands x interleave":
            for b in range(2, layout.bands + 1):
                add(axis, f"{label}-band{b}-rb", layout, Request(band=b, meta="raster_bands"))
                add(axis, f"{label}-band{b}-rb-x3", layout,
                    Request(band=b, meta="raster_bands", factor=3))
    for axis, label, layout, req in _requests_of_crs():
        add(axis, label, layout, req)
    for factor in (1, 1.5, 2, 2.5, 3, 3.3, 4, 5, 6, 7, 8, 0.5):
        for shift in (0.0, 0.5, 0.25):
            add("output resolution", f"res-x{factor}-s{shift}", BASE,
                Request(factor=factor, shift=shift))
    for res in ((1.0, 2.0), (2.0, 1.0), (1.5, 1.0)):
        for factor in (1, 2, 3.3):
            add("non-square pixels", f"px{res[0]}x{res[1]}-x{factor}", replace(BASE, res=res),
                Request(factor=factor))
        add("non-square pixels", f"px{res[0]}x{res[1]}-3035", replace(BASE, res=res),
            Request(crs="EPSG:3035", factor=2))
    for method in RESAMPLING:
        for factor in (1, 2, 3.3):
            add("resampling", f"{method}-x{factor}", BASE,
                Request(factor=factor, resampling=method))
        add("resampling", f"{method}-3035", BASE,
            Request(crs="EPSG:3035", factor=2, resampling=method))
        add("resampling", f"{method}-float", FLOAT_BASE,
            Request(factor=2, resampling=method))
    for meta in ("pc", "raster_bands", "proj_code", "no_transform", "epsg_only", "rb_float32",
                 "rb_nodata0", "rb_no_nodata"):
        for layout in (BASE, FLOAT_BASE, replace(BASE, nodata="none")):
            for req in (Request(), Request(crs="EPSG:3035", factor=2), Request(factor=6)):
                add("STAC metadata", f"{meta}-{layout.dtype}-{layout.nodata}-"
                    f"{req.crs or 'src'}-x{req.factor}", layout, replace(req, meta=meta))
    # several files on one date (odc-stac fuses them: the first valid pixel wins)
    pairs = {
        "same": (BASE, replace(BASE, offset=0.5)),
        "three": (BASE, replace(BASE, offset=0.5), replace(BASE, offset=-0.4)),
        "fast-gdal": (BASE, replace(BASE, compress="LERC", offset=0.5)),
        "gdal-fast": (replace(BASE, compress="JPEG", dtype="uint8", nodata="zero"),
                      replace(BASE, dtype="uint8", nodata="zero", offset=0.5)),
        "float": (FLOAT_BASE, replace(FLOAT_BASE, offset=0.5, overviews="addo")),
        "no-nodata": (replace(BASE, nodata="none"),
                      replace(BASE, nodata="none", offset=0.5, block=128)),
    }
    for label, (first, *more) in pairs.items():
        for req in (Request(), Request(factor=2), Request(factor=3.3, shift=0.5),
                    Request(crs="EPSG:3035", factor=2)):
            add("mosaic", f"mosaic-{label}-{req.crs or 'src'}-x{req.factor}", first, req,
                tuple(more))
    # beyond Sentinel-2: HLS int16 / -9999 and Sentinel-1 float32 / -32768, through the plan
    # and the points reader, with nodata pixels and dates fused from two overlapping files
    for label, layout in (("hls", HLS_BASE), ("hls-p2", replace(HLS_BASE, predictor=2)),
                          ("s1", S1_BASE), ("s1-p3", replace(S1_BASE, predictor=3))):
        for meta in ("raster_bands", "pc"):
            for req in (Request(points=3), Request(factor=2, points=1),
                        Request(factor=1.5, shift=0.5, points=2),
                        Request(crs="EPSG:3035", factor=1.5, points=3)):
                add("nodata dtypes", f"{label}-{meta}-{req.crs or 'src'}-x{req.factor}"
                    f"-s{req.shift}", layout, replace(req, meta=meta))
        add("nodata dtypes", f"{label}-mosaic", layout, Request(meta="raster_bands", points=3),
            (replace(layout, offset=0.5),))
        add("nodata dtypes", f"{label}-mosaic-3035", layout,
            Request(crs="EPSG:3035", factor=2, meta="raster_bands", points=1),
            (replace(layout, offset=0.5),))
    # a sample of combinations of several axes
    rng = np.random.default_rng(19)
    pool = [c for c in out if c.axis in ("compression x dtype", "predictor", "nodata")]
    for i in range(40):
        base = pool[int(rng.integers(len(pool)))].layout
        layout = replace(base, block=int(rng.choice([128, 256, 512, 0])),
                         interleave=str(rng.choice(["pixel", "band"])),
                         bands=int(rng.integers(1, 4)),
                         overviews=str(rng.choice(["none", "cog", "addo", "many"])),
                         res=((1.0, 1.0), (1.0, 2.0))[int(rng.integers(2))])
        req = Request(crs=(None, "EPSG:3035", "EPSG:4326")[int(rng.integers(3))],
                      factor=float(rng.choice([1, 2, 2.5, 4, 7])),
                      shift=float(rng.choice([0, 0.5])),
                      resampling=str(rng.choice(["nearest", "nearest", "bilinear", "average"])),
                      meta=str(rng.choice(["pc", "raster_bands"])))
        if req.meta == "raster_bands" and layout.bands > 1:
            req = replace(req, band=layout.bands)
        add("combinations", f"combo-{i}", layout, req)
    # open_cubes, image and patch modes: each file elsewhere (one item per feature)
    api_layouts = [BASE, replace(BASE, compress="ZSTD", predictor=2, overviews="addo",
                                 block=128),
                   replace(BASE, compress="JPEG", dtype="uint8", nodata="zero"),
                   replace(BASE, interleave="band", bands=2, compress="LERC", block=0,
                           overviews="none"),
                   replace(BASE, nodata="mask"), FLOAT_BASE, HLS_BASE, S1_BASE]
    n = 0
    for mode in ("image", "patch"):
        for crs, factor, method in (("utm", 1, "nearest"), ("utm", 2, "nearest"),
                                    ("EPSG:3035", 2, "nearest"), ("EPSG:3035", 6, "average")):
            for meta in ("pc", "raster_bands"):
                for layout in api_layouts:
                    if layout in (HLS_BASE, S1_BASE) and method != "nearest" or \
                            (layout in (HLS_BASE, S1_BASE) and (crs, factor) == ("utm", 2)):
                        continue  # beyond Sentinel-2: two grids are enough
                    n += 1
                    req = Request(crs=None if crs == "utm" else crs, factor=factor,
                                  resampling=method, meta=meta, api=mode)
                    add("open_cubes", f"api-{mode}-{crs}-x{factor}-{method}-{meta}-"
                        f"{layout.compress}-{layout.dtype}-{layout.nodata}-"
                        f"{layout.interleave}-{layout.overviews}",
                        replace(layout, where=n), req)
    for kind in ("500", "truncate", "404", "403", "500@read", "truncate@read", "drop@read",
                 "503@read"):
        for layout in (BASE, replace(BASE, compress="JPEG", dtype="uint8", nodata="zero")):
            # ("patch", "pc"): with good features in one open_cubes call; ("image",
            # "proj_code"): alone in its call
            for api, meta in ((None, "pc"), (None, "raster_bands"), ("patch", "pc"),
                              ("image", "proj_code")):
                if "@" in kind and api is not None:
                    continue
                n += 1
                # reads after the header: a file larger than the header's request (128 kB)
                lay = replace(layout, where=n, size=1024 if "@" in kind else layout.size)
                add("HTTP faults", f"fault-{kind}-{layout.compress}-{api or 'driver'}-{meta}",
                    lay, Request(fault=kind, api=api, factor=1 if "@" in kind else 2,
                                 meta=meta))
    names = Counter(c.name for c in out)
    dup = [k for k, v in names.items() if v > 1]
    assert not dup, dup
    return out


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
    if layout.nodata in ("zero", "value", "nan") or _numeric(layout.nodata):
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


def _footprint(layout: Layout) -> tuple[Any, Any]:
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
    gbox, fp = _footprint(layout)
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
    src, _ = _footprint(layout)
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


# --------------------------------------------------------------------------- comparing


def _nodata_attr(da: Any) -> Any:
    nd = da.attrs.get("nodata", da.encoding.get("_FillValue"))
    return None if nd is None else float(nd)


def compare(got: Any, want: Any, bands: Sequence[str]) -> str:
    """Why two Datasets differ ('' when equal): dtype, nodata, values, NaN positions."""
    for band in bands:
        g, w = got[band], want[band]
        if g.dtype != w.dtype:
            return f"{band}: dtype {g.dtype} != {w.dtype}"
        gn, wn = _nodata_attr(g), _nodata_attr(w)
        if not (gn == wn or (gn is not None and wn is not None and math.isnan(gn)
                             and math.isnan(wn))):
            return f"{band}: nodata {gn} != {wn}"
        if g.shape != w.shape:
            return f"{band}: shape {g.shape} != {w.shape}"
        gv, wv = g.values, w.values
        valid = ~np.isnan(wv) if wv.dtype.kind == "f" else np.ones(wv.shape, bool)
        if wn is not None and not math.isnan(wn):
            valid &= wv != wn
        if valid.mean() < 0.2:  # a case must compare pixels, not an empty window
            return f"{band}: only {100 * valid.mean():.1f} % of the truth is valid"
        if not np.array_equal(gv, wv, equal_nan=gv.dtype.kind == "f"):
            if gv.dtype.kind == "f":
                nan = np.isnan(gv) != np.isnan(wv)
                diff = nan | (~np.isnan(gv) & (gv != wv))
            else:
                diff = gv != wv
            return f"{band}: {int(diff.sum())} of {diff.size} pixels differ " \
                f"({100 * diff.mean():.1f} %)"
    return ""


def truth_cfg(items: Sequence[Any], band: str) -> dict:
    """The band's dtype / nodata from rasterio when the items have no raster:bands."""
    import rasterio

    asset = band.split(".")[0]
    it = items[0]
    if it.assets[asset].extra_fields.get("raster:bands"):
        return {}
    with rasterio.open(it.assets[asset].href) as f:
        dtype, nodata = f.dtypes[0], f.nodata
    if nodata is not None and np.dtype(dtype).kind in "iu":
        nodata = int(nodata)
    return {"*": {"assets": {f"{asset}.*": {"data_type": dtype, "nodata": nodata}}}}


def truth_dtype(items: Sequence[Any], band: str) -> str:
    """The band's dtype as odc-stac loads it (its raster:bands', else the file's)."""
    import rasterio

    asset, _, index = band.partition(".")
    rbs = items[0].assets[asset].extra_fields.get("raster:bands")
    if rbs:
        return rbs[int(index or 1) - 1].get("data_type", "float32")
    with rasterio.open(items[0].assets[asset].href) as f:
        return f.dtypes[0]


def load_truth(items: Sequence[Any], gbox: Any, band: str, resampling: str) -> Any:
    """odc-stac + GDAL; a floating-point band with NaN for missing pixels, as xsits loads it
    (``nodata=nan``: the files' nodata is still what GDAL reads as missing)."""
    import odc.stac

    nodata = {"nodata": float("nan")} if np.dtype(truth_dtype(items, band)).kind == "f" else {}
    return odc.stac.load(items, bands=[band], geobox=gbox, groupby="solar_day",
                         resampling=resampling, chunks=None,
                         stac_cfg=truth_cfg(items, band), **nodata)


def point_windows(gbox: Any, size: int, n: int = 9, seed: int = 7) -> list[Any]:
    """``n`` square windows of ``size`` output pixels on ``gbox``: over its nodata corner,
    across the file's edges and inside it (the file and 2 pixels around fill ``gbox``)."""
    rng = np.random.default_rng(seed)
    ny, nx = gbox.shape.yx
    top = [(2, 2), (3, nx // 8), (ny // 8, 3), (0, nx // 2), (ny // 2, 0),
           (ny - size, nx - size), (ny // 2 + 1, nx // 3)]
    spots = top + [(int(rng.integers(0, ny - size)), int(rng.integers(0, nx - size)))
                   for _ in range(n - len(top))]
    return [gbox[r:r + size, c:c + size] for r, c in spots]


def check_points(items: Sequence[Any], gbox: Any, band: str, size: int) -> str:
    """The points reader (``xsits.cube.points.read_points``) against GDAL per window.

    Each window's truth is ``odc.stac.load`` on that window (what its patch cube reads).
    '' when equal; else why not. The windows together must hold valid and nodata pixels.
    """
    from xsits.cube import points
    from xsits.cube.load import band_config
    from xsits.cube.plan import plan_items

    wins = point_windows(gbox, size)
    plan = plan_items(items, [band], stac_cfg=band_config(items, [band]))
    batches = points.read_points(plan, [list(range(len(items)))] * len(wins),
                                 points.Windows.of(wins))
    if batches is None:
        return "the points reader refused the files"
    seen_valid = seen_missing = 0
    for batch in batches:
        for j, k in enumerate(batch.points):
            want = load_truth(items, wins[k], band, "nearest")[band]
            got = batch.values[band][:, :, j * size:(j + 1) * size]
            if len(batch.groups) != want.sizes["time"] or got.dtype != want.dtype:
                return f"points: window {k}: {len(batch.groups)} dates of {got.dtype}, " \
                    f"GDAL {want.sizes['time']} of {want.dtype}"
            wv = want.values
            if not np.array_equal(got, wv, equal_nan=wv.dtype.kind == "f"):
                return f"points: window {k}: {int((got != wv).sum())} pixels differ"
            nd = _nodata_attr(want)
            missing = np.isnan(wv) if nd is None or math.isnan(nd) else wv == nd
            seen_missing += int(missing.sum())
            seen_valid += int((~missing).sum())
    if not seen_valid or not seen_missing:
        return f"points: {seen_valid} valid and {seen_missing} nodata pixels compared"
    return ""


def load_driver(items: Sequence[Any], gbox: Any, band: str, resampling: str) -> Any:
    """xsits' driver path: :func:`xsits.cube.load.load_cube` (its plan, ``chunked_load`` and
    ``CogDriver``), computed (a small cube is one task that loads without dask)."""
    from xsits.cube.load import load_cube
    from xsits.errors import LoadError

    try:
        return load_cube(items, gbox, bands=[band], resampling=resampling).compute()
    except LoadError:
        raise
    except Exception as err:  # as before: every failure to read is a LoadError
        raise LoadError(f"cannot read the cube: {err}") from err


def _reader_of(stats: dict[str, int]) -> str:
    f, g = stats["fast"], stats["gdal"]
    return "mixed" if f and g else "fast" if f else "gdal" if g else "none"


# --------------------------------------------------------------------------- running


class Suite:
    """The suite's files, server, items and results.

    Parameters
    ----------
    root
        A directory for the files (emptied).
    cog_server
        A started CogServer over ``root``.
    stac
        A started PgstacServer (its ``load`` indexes the items).
    """

    def __init__(self, root: Path, cog_server: Any, stac: Any,
                 selected: Sequence[Case] | None = None) -> None:
        self.root, self.cogs, self.stac = Path(root), cog_server, stac
        self.cases = list(selected if selected is not None else cases())
        self.results: dict[str, Result] = {}
        self.items: dict[str, Any] = {}
        self.hrefs: dict[str, str] = {}
        self.paths: dict[str, str] = {}  # case -> path on the server

    def href(self, case: Case) -> str:
        layout = case.layout
        rel = f"files/{layout.key}.tif"
        if case.request.fault:
            rel = f"faults/{case.name}.tif"
        self.paths[case.name] = rel
        href = self.cogs.url + rel
        if case.request.fault in ("404", "403"):
            href += "?sig=SECRET"
        if case.request.fault == "404":
            href = self.cogs.url + f"faults/missing-{case.name}.tif?sig=SECRET"
            self.paths[case.name] = f"faults/missing-{case.name}.tif"
        return href

    def prepare(self) -> None:
        """Write every file, index every item (one collection per group), read them back."""
        import pystac_client

        def file(layout: Layout) -> Path:  # each distinct layout written once
            path = self.root / "files" / f"{layout.key}.tif"
            if not path.exists():
                write_raster(layout, path)
            return path

        by_collection: dict[str, list[dict]] = defaultdict(list)
        for i, case in enumerate(self.cases):
            path = file(case.layout)
            href = self.href(case)
            if case.request.fault and case.request.fault != "404":
                dst = self.root / self.paths[case.name]
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, dst)
            self.hrefs[case.name] = href
            cid = self.collection(case)
            by_collection[cid].append(make_item(case, href, cid, i))
            for k, extra in enumerate(case.mosaic, 1):
                file(extra)
                by_collection[cid].append(make_item(replace(case, layout=extra),
                                                    self.cogs.url + f"files/{extra.key}.tif",
                                                    cid, i, k))
        for cid, items in by_collection.items():
            self.stac.load(make_collection(cid), items)
        client = pystac_client.Client.open(self.stac.url)
        found = {}
        for cid in by_collection:
            for it in client.search(collections=[cid], limit=500).items():
                found[it.id] = it
        for i, case in enumerate(self.cases):
            cid = self.collection(case)
            self.items[case.name] = [found[item_id(case, i, k)]
                                     for k in range(len(case.mosaic) + 1)]

    @staticmethod
    def collection(case: Case) -> str:
        """Driver cases share one collection; open_cubes cases one per dtype and nodata.

        (open_cubes takes a band's dtype / nodata from the first file of its collection.)
        """
        req = case.request
        if req.api is None:
            return f"{SUITE}-driver"
        return f"{SUITE}-api-{case.layout.dtype}-{case.layout.nodata}"

    def run(self) -> dict[str, Result]:
        """Run every case (open_cubes cases by group, one open_cubes call per group)."""
        import xsits

        with xsits.set_options(retry_delay=0.01, progress=False):
            for case in self.cases:
                self.results[case.name] = self.run_driver(case)
            groups: dict[tuple, list[Case]] = defaultdict(list)
            for case in self.cases:
                if case.request.api is not None:
                    groups[api_group(case)].append(case)
            for group in groups.values():
                self.run_api(group)
        return self.results

    # -- the driver path
    def run_driver(self, case: Case) -> Result:
        from xsits.errors import LoadError
        from xsits.io import reader
        t0 = time.monotonic()
        res = Result(case)
        items = self.items[case.name]  # more than one: a mosaic
        band = "B04" if case.request.band == 1 else f"B04.{case.request.band}"
        gbox = case_geobox(case)
        req = case.request
        try:
            if req.fault in ("404", "403"):
                res.equal, res.detail, res.reader = self._client_fault(case, items, band, gbox)
                return res
            want = load_truth(items, gbox, band, req.resampling)
            reader.clear_cache()
            if req.fault:
                kind, _, when = req.fault.partition("@")
                if when == "read":
                    from xsits.io import tiff

                    tiff.headers([self.hrefs[case.name]])
                self.cogs.reset_stats()
                # 2: a HEAD (GDAL's first request) has no body to truncate
                self.cogs.set_fault(self.paths[case.name], kind, times=2)
            try:
                got = load_driver(items, gbox, band, req.resampling)
            finally:
                if req.fault:
                    self.cogs.clear_faults()
            res.reader = _reader_of(reader.last_load_stats())
            res.detail = compare(got, want, [band])
            if req.points and not res.detail:
                res.detail = check_points(items, gbox, band, req.points)
            if req.fault and not res.detail and not self.cogs.stats()["faults"]:
                res.detail = "the fault was never served (nothing was asked of the file)"
            res.equal = not res.detail
        except LoadError as err:
            res.equal, res.detail = False, f"LoadError: {err}"
        except Exception as err:  # a crash is a failed case, with its reason
            res.equal, res.detail = False, f"{type(err).__name__}: {err}"
        finally:
            res.seconds = time.monotonic() - t0
        return res

    def _client_fault(self, case: Case, items: Any, band: str, gbox: Any) -> tuple:
        """404 / 403: a LoadError naming the href without its query, within seconds."""
        from xsits.errors import LoadError
        from xsits.io import reader

        reader.clear_cache()
        path = self.paths[case.name]
        if case.request.fault == "403":
            self.cogs.set_fault(path, "403", times=-1)
        t0 = time.monotonic()
        try:
            load_driver(items, gbox, band, "nearest")
        except LoadError as err:
            took = time.monotonic() - t0
            msg = str(err)
            bare = self.hrefs[case.name].split("?")[0]
            if bare not in msg or "SECRET" in msg:
                return False, f"the error does not name {bare} (or shows the query): {msg}", \
                    "none"
            if f"HTTP {case.request.fault}" not in msg:
                return False, f"the error does not say HTTP {case.request.fault}: {msg}", "none"
            if took > 3:
                return False, f"raised after {took:.1f} s (retried?)", "none"
            return True, "", "none"
        except Exception as err:
            return False, f"{type(err).__name__} instead of LoadError: {err}", "none"
        finally:
            self.cogs.clear_faults()
        return False, "no error", "none"

    # -- open_cubes
    def run_api(self, group: list[Case]) -> None:
        import geopandas as gpd

        import xsits
        from xsits.errors import LoadError
        from xsits.io import reader

        first = group[0]
        req = first.request
        points, fids = [], []
        for i, case in enumerate(group):
            _, fp = _footprint(case.layout)
            points.append(fp.centroid.geom)
            fids.append(f"f{i}")
        aoi = xsits.read_aoi(gpd.GeoDataFrame({"id": fids}, geometry=points, crs=4326),
                             id_column="id")
        id_of = {case.name: fid for case, fid in zip(group, aoi["feature_id"], strict=True)}
        res_m = ORIGINS[first.layout.crs][2] * req.factor
        mode_kw = dict(mode="patch", size=(23, 17)) if req.api == "patch" else \
            dict(mode="image", buffer=res_m * 40 + 3.0)
        for case in group:
            if case.request.fault:
                path = self.paths[case.name]
                kind = case.request.fault
                self.cogs.set_fault(path, kind, times=-1 if kind in ("403", "404") else 2)
        reader.clear_cache()
        try:
            cubes = xsits.open_cubes(
                aoi, stac=self.stac.url, collection=self.collection(first), bands=["B04"],
                start=START, end=END, resolution=res_m, crs=req.crs or "utm",
                resampling=req.resampling, **mode_kw)
            computed: dict[str, Any] = {}
            for fid, cube in cubes.items():
                t0 = time.monotonic()
                try:
                    computed[fid] = cube.compute()
                except LoadError as err:  # a feature whose file fails when it is read
                    computed[fid] = (err, time.monotonic() - t0)
        except Exception as err:
            for case in group:
                self._api_result(case, False, f"open_cubes: {type(err).__name__}: {err}")
            return
        finally:
            self.cogs.clear_faults()
        stats = reader.last_load_stats()
        for case in group:
            fid = id_of[case.name]
            if case.request.fault in ("404", "403"):
                # cubes are lazy: a file whose header open_cubes read (the first of its
                # collection's band) leaves its feature in .missing; any other fails when
                # its cube is computed, at once, with the same LoadError
                bare = self.hrefs[case.name].split("?")[0]
                if fid in cubes:
                    err, took = computed[fid] if isinstance(computed.get(fid), tuple) else \
                        (None, 0.0)
                    why = str(err) if err is not None else "computed without an error"
                    ok = err is not None and took < 3
                    where = "compute"
                else:
                    why, ok, where = cubes.missing.get(fid, ""), True, "missing"
                ok = ok and bare in why and "SECRET" not in why and \
                    f"HTTP {case.request.fault}" in why
                self.results[case.name].api_out["fault"] = (where,)
                self._api_result(case, ok, "" if ok else f"{where}: {why!r}")
                continue
            if fid not in computed:
                self._api_result(case, False, f"no cube: {cubes.missing.get(fid)}")
                continue
            if isinstance(computed[fid], tuple):
                self._api_result(case, False, f"compute: {computed[fid][0]}")
                continue
            got = computed[fid]
            self.results[case.name].api_out[case.request.api] = (
                got["B04"].dtype.name, got["B04"].attrs.get("nodata"),
                got["B04"].encoding.get("_FillValue"))
            items = cubes.search.items[fid]
            if [it.id for it in items] != [it.id for it in self.items[case.name]]:
                self._api_result(case, False, f"items {[it.id for it in items]}")
                continue
            want = load_truth(items, cubes[fid].odc.geobox, "B04", case.request.resampling)
            detail = compare(got, want, ["B04"])
            self._api_result(case, not detail, detail)
        del stats

    def _api_result(self, case: Case, ok: bool, detail: str) -> None:
        res = self.results[case.name]
        res.api_equal[case.request.api] = ok
        if not ok:
            res.equal = False
            res.detail = (res.detail + "; " if res.detail else "") + \
                f"open_cubes {case.request.api}: {detail}"


def api_group(case: Case) -> tuple:
    """open_cubes cases loaded by one call: same dtype / nodata / metadata / grid request."""
    lay, req = case.layout, case.request
    alone = req.fault if req.meta == "proj_code" else None  # fault cases alone in a call
    return (lay.dtype, lay.nodata, lay.crs, req.meta, req.api, req.crs, req.factor,
            req.resampling, req.band, alone)


# --------------------------------------------------------------------------- table


def table(results: dict[str, Result]) -> str:
    """Cases per axis: how many the fast reader served, how many went to GDAL, equal or not."""
    rows: dict[str, Counter] = defaultdict(Counter)
    for r in results.values():
        for key in (r.case.axis, "TOTAL"):
            c = rows[key]
            c["cases"] += 1
            c[r.reader] += 1
            c["equal" if r.equal else "not equal"] += 1
            if r.case.request.api:
                c["open_cubes"] += 1
    cols = ("cases", "fast", "gdal", "mixed", "none", "open_cubes", "equal", "not equal")
    width = max(len(k) for k in rows) + 2
    lines = ["axis".ljust(width) + "".join(c.rjust(11) for c in cols)]
    for axis in [*sorted(k for k in rows if k != "TOTAL"), "TOTAL"]:
        lines.append(axis.ljust(width) + "".join(str(rows[axis][c]).rjust(11) for c in cols))
    bad = [r for r in results.values() if not r.equal]
    for r in bad:
        lines.append(f"NOT EQUAL {r.case.name}: {r.detail}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.conformance --table [--only SUBSTRING]``: run the suite, print it."""
    import argparse
    import tempfile

    from xsits.testing.pgstac import PgstacServer
    from xsits.testing.servers import CogServer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="print the table of cases")
    parser.add_argument("--only", default="", help="run the cases whose name has this")
    parser.add_argument("--list", action="store_true", help="list the cases, run nothing")
    args = parser.parse_args(argv)
    selected = [c for c in cases() if args.only in c.name]
    if args.list:
        for c in selected:
            print(c.axis, "|", c.name)
        print(len(selected), "cases")
        return 0
    root = Path(tempfile.mkdtemp(prefix="xsits-conformance-"))
    t0 = time.monotonic()
    with CogServer(root) as cogs, PgstacServer() as stac:
        suite = Suite(root, cogs, stac, selected)
        suite.prepare()
        t1 = time.monotonic()
        results = suite.run()
    t2 = time.monotonic()
    shutil.rmtree(root, ignore_errors=True)
    print(table(results))
    print(f"{len(results)} cases; files and items {t1 - t0:.1f} s, loads {t2 - t1:.1f} s")
    return 0 if all(r.equal for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
