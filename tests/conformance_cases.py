"""The cases of the reader conformance suite (tests/conformance.py runs them).

A case is a file layout (:class:`Layout`: dtype, compression, predictor, blocks, overviews,
nodata, bands, interleave, endianness, source grid) and a request (:class:`Request`: output
CRS and resolution factor, resampling, item metadata, injected HTTP faults, the public API,
points); :func:`cases` generates every case once, named after its axis and values.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
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
        if is_numeric(self.nodata):
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


def is_numeric(text: str) -> bool:
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
    if is_numeric(layout.nodata) and np.dtype(d).kind in "iu" and not (
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
