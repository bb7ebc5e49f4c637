"""GeoTIFF headers as the fast reader needs them, and whether it serves the file.

Owns: parsing a file's header with tifffile (over :mod:`xsits.io.fetch`, so IFDs anywhere in the
file are found), its levels (full resolution, then overviews as GDAL orders them), grids,
dtype, nodata and bands (:class:`Header`), and the allow-list of layouts the fast reader
serves (:func:`fast_refusal`), each one proven equal to GDAL by ``tests/test_conformance.py``.
Must not: decode pixels or plan reads (:mod:`xsits.io.reader`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tifffile
from affine import Affine
from odc.geo.geobox import GeoBox

from xsits._common import Lru
from xsits.errors import LoadError
from xsits.io import fetch

#: Smallest request made when a header reads beyond what was fetched (IFDs at the end...).
BLOCK_BYTES = 64 * 1024
#: TIFF compressions the fast reader decodes (lossless, decoded by imagecodecs like GDAL).
FAST_COMPRESSIONS = {1: "none", 5: "LZW", 8: "DEFLATE", 32946: "DEFLATE", 50000: "ZSTD"}
#: Sample dtypes the fast reader serves.
FAST_DTYPES = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"}

# Parsed headers of this process, by href: features of one tile share their files.
_HEADERS: Lru[Any] = Lru(keep=8192)


class _RangeFile:
    """A read-only file over :mod:`xsits.io.fetch`, for tifffile to parse a header from."""

    def __init__(self, uri: str, first: memoryview) -> None:
        self.uri, self.pos = uri, 0
        self.size = fetch.size(uri) or len(first)

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else self.pos + offset if whence == 1 else \
            self.size + offset
        return self.pos

    def read(self, n: int = -1) -> bytes:
        start = self.pos
        end = self.size if n is None or n < 0 else min(self.size, start + n)
        if end <= start:
            return b""
        data = fetch.find(self.uri, start, end)
        if data is None:
            block_end = min(self.size, max(end, start + BLOCK_BYTES))
            data = fetch.submit(self.uri, start, block_end).result()[:end - start]
        self.pos = end
        return bytes(data)

    def readinto(self, buf: Any) -> int:
        data = self.read(len(buf))
        buf[:len(data)] = data
        return len(data)

    def close(self) -> None:
        pass

    @property
    def closed(self) -> bool:
        return False


@dataclass(frozen=True)
class Level:
    """One resolution of a file: its grid and where its tiles (or strips) are."""

    geobox: GeoBox
    block: tuple[int, int]  # (rows, cols) of a tile, or (rows per strip, width)
    offsets: np.ndarray
    counts: np.ndarray
    page: Any = field(repr=False)  # tifffile.TiffPage: decodes the level's segments

    @property
    def grid(self) -> tuple[int, int]:
        """Tiles down and across."""
        (h, w), (bh, bw) = self.geobox.shape.yx, self.block
        return -(-h // bh), -(-w // bw)


@dataclass(frozen=True)
class Header:
    """What a file's header says, and whether the fast reader serves it."""

    uri: str
    dtype: str
    count: int  # bands (samples per pixel)
    planar: bool  # band-interleaved (PlanarConfiguration 2)
    nodata: float | None
    levels: tuple[Level, ...]  # full resolution first, then overviews, finer to coarser
    refusal: str | None  # why the fast reader does not serve this file (None: it does)

    @property
    def factors(self) -> list[int]:
        """Overview factors as rasterio reports them (``width // overview width``, rounded)."""
        w = self.levels[0].geobox.shape.x
        return [int(round(w / lv.geobox.shape.x)) for lv in self.levels[1:]]


#: GeoKeys read from the GeoKeyDirectory: model type, raster type, projected / geographic CRS.
_GEOKEYS = {1024: "model", 1025: "raster", 3072: "projected", 2048: "geographic"}


def _geokeys(page: Any) -> dict[str, int]:
    """The GeoKeys of :data:`_GEOKEYS` held in the directory itself (its short values).

    Read from the raw GeoKeyDirectory tag: tifffile's ``geotiff_metadata`` decodes every key
    into enums, ~1 ms a file.
    """
    tag = page.tags.get(34735)
    if tag is None:
        return {}
    values = tag.value
    keys = {}
    for k in range(int(values[3])):
        key, location, _count, value = values[4 + 4 * k: 8 + 4 * k]
        if key in _GEOKEYS and location == 0:
            keys[_GEOKEYS[key]] = int(value)
    return keys


def _geobox(page: Any) -> GeoBox | str:
    """The pixel grid of a full-resolution page, or why it is not served."""
    if 34264 in page.tags:
        return "a ModelTransformation (rotated or sheared grid)"
    scale, tie = page.tags.get(33550), page.tags.get(33922)
    if scale is None or tie is None or len(tie.value) != 6:
        return "no ModelPixelScale / single ModelTiepoint"
    keys = _geokeys(page)
    if keys.get("raster", 1) != 1:
        return "PixelIsPoint georeferencing"
    model = keys.get("model", 0)
    code = keys.get("projected") if model == 1 else keys.get("geographic") if model == 2 else None
    if code is None or code in (0, 32767):
        return "no EPSG code in the GeoKeys (user-defined CRS)"
    i, j, _, x, y, _ = (float(v) for v in tie.value)
    sx, sy = float(scale.value[0]), float(scale.value[1])
    transform = Affine(sx, 0.0, x - i * sx, 0.0, -sy, y + j * sy)
    return GeoBox((page.imagelength, page.imagewidth), transform, f"EPSG:{code}")


def fast_refusal(tif: Any) -> str | None:
    """Why the fast reader does not serve a parsed file (None when it does).

    The allow-list is what ``tests/test_conformance.py`` proves equal to GDAL.

    Examples
    --------
    >>> import tempfile, numpy as np, rasterio, tifffile
    >>> from rasterio.transform import from_origin
    >>> path = tempfile.mktemp(suffix=".tif")
    >>> with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=1,
    ...                    dtype="uint8", crs="EPSG:32632", compress="jpeg",
    ...                    transform=from_origin(0, 40, 10, 10)) as f:
    ...     f.write(np.zeros((1, 4, 4), "uint8"))
    >>> with tifffile.TiffFile(path) as tif:
    ...     fast_refusal(tif)
    'compression JPEG'
    """
    pages = list(tif.pages)
    first = pages[0]
    if any(int(p.subfiletype) & 4 for p in pages):
        return "an internal mask band"
    for p in pages:
        comp = int(p.compression)
        if comp not in FAST_COMPRESSIONS:
            return f"compression {p.compression.name}"
        if int(p.predictor) not in (1, 2, 3):
            return f"predictor {int(p.predictor)}"
        if any(int(s) in (1, 2) for s in p.extrasamples or ()):
            return "an alpha band"
        if int(p.photometric) not in (1, 2):
            return f"photometric {p.photometric.name}"
        if p.dtype is None or p.dtype.name not in FAST_DTYPES or \
                p.bitspersample != p.dtype.itemsize * 8:
            return f"samples of {p.bitspersample} bits ({p.dtype})"
        if p.is_tiled and p.tiledepth > 1 or p.imagedepth > 1:
            return "a 3-D image"
        if p.samplesperpixel != first.samplesperpixel or p.dtype != first.dtype or \
                p.planarconfig != first.planarconfig:
            return "overviews unlike the full-resolution image"
        if any(int(c) == 0 for c in p.databytecounts):
            return "sparse tiles (no bytes)"
    return None


def _parse(uri: str, first: memoryview) -> Header:
    with tifffile.TiffFile(_RangeFile(uri, first)) as tif:
        pages = [p for p in tif.pages if not int(p.subfiletype) & 4]
        page0 = pages[0]
        gbox = _geobox(page0)
        refusal = gbox if isinstance(gbox, str) else fast_refusal(tif)
        nodata_tag = page0.tags.get(42113)
        nodata = None
        if nodata_tag is not None:
            with contextlib.suppress(ValueError):
                nodata = float(str(nodata_tag.value).strip().rstrip("\x00"))
        levels = []
        if refusal is None:
            ordered = [page0] + sorted((p for p in pages[1:] if int(p.subfiletype) & 1),
                                       key=lambda p: -p.imagewidth)
            for p in ordered:
                h, w = p.imagelength, p.imagewidth
                fx, fy = page0.imagewidth / w, page0.imagelength / h  # as GDAL's overviews
                t = gbox.transform
                lv_box = GeoBox((h, w), Affine(t.a * fx, 0.0, t.c, 0.0, t.e * fy, t.f),
                                gbox.crs)
                block = (p.tilelength, p.tilewidth) if p.is_tiled else \
                    (min(p.rowsperstrip or h, h), w)
                levels.append(Level(lv_box, block, np.asarray(p.dataoffsets),
                                    np.asarray(p.databytecounts), p))
        return Header(uri, page0.dtype.name if page0.dtype is not None else "?",
                      int(page0.samplesperpixel), int(page0.planarconfig) == 2, nodata,
                      tuple(levels), refusal)


def headers(uris: Sequence[str]) -> list[Header | BaseException]:
    """The parsed headers of ``uris``, fetched all at once (an exception per failure).

    Examples
    --------
    >>> import tempfile, numpy as np, rasterio
    >>> from rasterio.transform import from_origin
    >>> path = tempfile.mktemp(suffix=".tif")
    >>> with rasterio.open(path, "w", driver="COG", width=600, height=600, count=1,
    ...                    dtype="uint16", crs="EPSG:32632", nodata=0, compress="deflate",
    ...                    blocksize=256, transform=from_origin(600000, 5600000, 10, 10)) as f:
    ...     f.write(np.ones((1, 600, 600), "uint16"))
    >>> (h,) = headers([path])
    >>> h.dtype, h.nodata, h.refusal, [lv.geobox.shape.x for lv in h.levels]
    ('uint16', 0.0, None, [600, 300, 150])
    """
    out: dict[str, Any] = {}
    firsts = {}
    for uri in dict.fromkeys(uris):
        known = _HEADERS.get(uri)
        if known is not None:
            out[uri] = known
        else:
            firsts[uri] = fetch.submit(uri, 0, fetch.head_bytes(uri))
    for uri, fut in firsts.items():
        try:
            first = fut.result()
            fetch.saw_size(uri)
            head: Header | BaseException = _parse(uri, first)
        except LoadError as err:
            head = err  # network failures are not remembered: a later load asks again
            out[uri] = head
            continue
        except Exception as err:  # not a TIFF tifffile reads: GDAL's
            head = Header(uri, "?", 0, False, None, (), f"unreadable header ({err})")
        out[uri] = _HEADERS.put(uri, head)
    return [out[u] for u in uris]


def clear() -> None:
    """Forget the parsed headers.

    Examples
    --------
    >>> clear()
    """
    _HEADERS.clear()
