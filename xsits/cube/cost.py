"""The cost of a load before it is made: files, blocks, requests and bytes of a plan.

Owns: :class:`Cost` and :func:`cost` (what loading the features of a search group's
:class:`~xsits.cube.plan.ItemsPlan` will read, from the files' headers or guessed from the
item grids), which :func:`xsits.cube.load.dry_run` adds up.
Must not: read pixels, or plan otherwise than :mod:`xsits.cube.plan`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from odc.geo.geobox import GeoBox

from xsits.cube.plan import ItemsPlan
from xsits.io import fast, fetch, tiff
from xsits.io.fast import grid_key

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
    >>> import datetime as dt, pystac
    >>> from xsits.cube.plan import plan_items
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


__all__ = ["Cost", "cost", "BLOCK_GUESS", "COMPRESSION_GUESS"]
