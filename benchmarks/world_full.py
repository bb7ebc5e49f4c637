"""A world of full-size Sentinel-2 tiles: files shaped like the real COGs, few dates.

    python benchmarks/world_full.py            # builds benchmarks/.world-full (once)

``world.py``'s windows are 5.12 km: a file is one 512-px block and its overview, read whole
by the first request. Real Sentinel-2 L2A COGs (as on Planetary Computer) are full tiles:
10980 x 10980 pixels at 10 m (5490 x 5490 at 20 m for SCL), 1024-px blocks, DEFLATE with
predictor 2, overviews down to one block; a client pays per block it needs. This world has
2 adjacent tiles of UTM zone 32 (they overlap by 9.8 km, as real tiles do: points there get
two items per date, fused by ``groupby="solar_day"``), 4 dates (every 5 days from
2024-06-01; the 4th from a partial-swath orbit: a nodata corner), B03 B04 B08 and SCL.

The pixels are smooth synthetic fields plus low noise (``NOISE`` DN, a few bits per pixel,
so that blocks compress as real ones roughly do): a 10 m band is ~55 MB, not the 100-200 MB
of a real one, and writing all 32 files takes a few minutes on 2 cores. Items are made by
:mod:`xsits.testing.world` (ids, properties, assets, ``proj:*``, hrefs as on Planetary
Computer) for windows that are exactly the tiles. SCL: vegetation, bare soil and a lake,
a few cloud discs (8, 9) with shadows (3) covering ~2-4 %, so every item has
``eo:cloud_cover < 10``.

``feature_points(n)``: ``n`` points uniform over the two tiles (2 km inside their edges).
"""

from __future__ import annotations

import json
import os
import random
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WORLD_DIR = HERE / ".world-full"
VERSION = "1"

ZONE = 32
EPSG = 32600 + ZONE
TILE_M = 109800
TILE_LEFTS = (499960.0, 599960.0)  # two adjacent tiles (x overlap 599960..609760)
TILE_TOP = 5400000.0
BANDS = ("B03", "B04", "B08", "SCL")
START, END = "2024-06-01", "2024-06-16"  # 4 dates every 5 days
REVISIT = 5
BLOCKSIZE = 1024
NOISE = 8  # DN of uniform noise on the reflectance bands (3 bits)
# (reflectance DN before the +1000 offset) base, amplitude per band
_REFL = {"B03": (600, 300), "B04": (500, 400), "B08": (2800, 900)}


def _centres() -> list[tuple[float, float]]:
    """(lon, lat) whose scenes.py windows are exactly the tiles (centre of each tile)."""
    from pyproj import Transformer

    tr = Transformer.from_crs(EPSG, 4326, always_xy=True)
    half = TILE_M / 2
    return [tuple(map(float, tr.transform(left + half, TILE_TOP - half)))
            for left in TILE_LEFTS]


def spec():
    from xsits.testing.scenes import WorldSpec

    return WorldSpec(points=tuple(_centres()), start=START, end=END, revisit_days=REVISIT,
                     bands=BANDS, window_m=TILE_M, blocksize=BLOCKSIZE)


def _key() -> str:
    import hashlib

    return hashlib.sha256(json.dumps([spec().key(), VERSION, NOISE, BLOCKSIZE]).encode()
                          ).hexdigest()


# --------------------------------------------------------------------------- pixels


def _seed(*parts: str) -> int:
    return zlib.crc32("/".join(parts).encode())


def _discs(rng: np.random.Generator, size: int, count: int, r: tuple[int, int]):
    """A boolean ``(size, size)`` mask of ``count`` discs of radius in ``r`` (pixels)."""
    mask = np.zeros((size, size), bool)
    for _ in range(count):
        cy, cx = rng.integers(0, size, 2)
        rad = int(rng.integers(*r))
        y0, y1 = max(0, cy - rad), min(size, cy + rad + 1)
        x0, x1 = max(0, cx - rad), min(size, cx + rad + 1)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        mask[y0:y1, x0:x1] |= (yy - cy) ** 2 + (xx - cx) ** 2 <= rad * rad
    return mask


def _scl(sc, n20: int) -> np.ndarray:
    """The 20 m SCL of a scene: land cover by smooth fields, clouds, shadows, nodata."""
    rng = np.random.default_rng(_seed(sc.item_id, "SCL"))
    y = np.linspace(0, 1, n20, dtype="float32")
    field = np.sin(y[:, None] * 37.0 + 1.3) * np.cos(y[None, :] * 29.0)
    scl = np.where(field > 0.55, 5, 4).astype("uint8")  # bare soil / vegetation
    scl[_discs(np.random.default_rng(_seed(sc.window.tile)), n20, 3, (80, 200))] = 6  # lakes
    clouds = _discs(rng, n20, 12, (40, 120))
    scl[np.roll(clouds, (60, 60), axis=(0, 1)) & ~clouds] = 3  # shadows
    scl[clouds] = 9
    scl[clouds & ~np.roll(clouds, (8, 8), axis=(0, 1))] = 8  # cloud edges: medium
    if sc.partial:  # the partial-swath orbit cuts the north-east corner
        yy, xx = np.ogrid[0:n20, 0:n20]
        scl[(xx - yy) > int(n20 * 0.6)] = 0
    return scl


def _refl(sc, band: str, scl20: np.ndarray, n10: int) -> np.ndarray:
    """A 10 m reflectance band: smooth field + noise, bright clouds, dark shadows, 0 nodata."""
    base, amp = _REFL[band]
    rng = np.random.default_rng(_seed(sc.item_id, band))
    t = sc.index / 4.0
    y = np.linspace(0, 1, n10, dtype="float32")
    row = np.sin(y * 23.0 + t).astype("float32")
    col = np.cos(y * 31.0 - t).astype("float32")
    dn = (base + sc.offset) + amp * (row[:, None] * col[None, :])
    dn = dn.astype("uint16")
    dn += rng.integers(0, NOISE, size=dn.shape, dtype="uint16")
    scl = np.repeat(np.repeat(scl20, 2, axis=0), 2, axis=1)[:n10, :n10]
    dn[(scl == 8) | (scl == 9)] = 5500 + sc.offset
    dn[scl == 3] //= 3
    dn[scl == 0] = 0
    return dn


def _stats(sc, scl: np.ndarray) -> dict:
    from xsits.testing.pixels import scl_properties
    from xsits.testing.scenes import solar_angles

    return scl_properties(scl, *solar_angles(sc.window.lat, sc.solar_date))


def _write(path: Path, arr: np.ndarray, w, res: int) -> None:
    import rasterio
    from affine import Affine

    from xsits.testing.world import _overview_count

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.tif")
    with rasterio.open(tmp, "w", driver="COG", width=arr.shape[1], height=arr.shape[0],
                       count=1, dtype=arr.dtype.name, crs=f"EPSG:{w.epsg}",
                       transform=Affine(float(res), 0.0, w.left, 0.0, -float(res), w.top),
                       nodata=0, blocksize=BLOCKSIZE, compress="DEFLATE", predictor=2,
                       overview_count=_overview_count(arr.shape[0], BLOCKSIZE),
                       overview_resampling="nearest" if arr.dtype == np.uint8 else "average",
                       num_threads=1) as ds:
        ds.write(arr, 1)
    os.replace(tmp, path)


def _scene(sc, root: Path, spec_, ia: dict) -> dict:
    from xsits.testing.world import _item, _rel_path

    n20, n10 = TILE_M // 20, TILE_M // 10
    scl = _scl(sc, n20)
    _write(root / _rel_path(sc, "SCL"), scl, sc.window, 20)
    for band in BANDS:
        if band != "SCL":
            _write(root / _rel_path(sc, band), _refl(sc, band, scl, n10), sc.window, 10)
    return _item(sc, _stats(sc, scl), spec_, ia)


def get_world(workers: int = 2):
    """Generate (once) or reuse the full-tile world in ``benchmarks/.world-full``."""
    from xsits.testing.scenes import plan_scenes, plan_windows
    from xsits.testing.world import World, _collection_template

    WORLD_DIR.mkdir(parents=True, exist_ok=True)
    manifest = WORLD_DIR / "world.json"
    items_path = WORLD_DIR / "items.json"
    s = spec()
    if manifest.exists() and items_path.exists():
        if json.loads(manifest.read_text()).get("key") == _key():
            return World(WORLD_DIR, s, json.loads(items_path.read_text()))
    windows = plan_windows(s)
    got = [(w.left, w.top, w.right - w.left) for w in windows]
    want = [(left, TILE_TOP, float(TILE_M)) for left in TILE_LEFTS]
    assert got == want, f"windows are not the tiles: {got} != {want}"
    scenes = plan_scenes(s, windows)
    ia = _collection_template().get("item_assets", {})
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        items = list(pool.map(lambda sc: _scene(sc, WORLD_DIR, s, ia), scenes))
    items_path.write_text(json.dumps(items))
    manifest.write_text(json.dumps({"key": _key(), "version": VERSION,
                                    "seconds": time.perf_counter() - t0,
                                    "files": sorted(a["href"] for it in items
                                                    for a in it["assets"].values())}))
    return World(WORLD_DIR, s, items)


def feature_points(n: int, seed: int = 0) -> list[tuple[str, float, float]]:
    """``n`` points uniform over the two tiles, 2 km inside their outer edges."""
    from pyproj import Transformer

    tr = Transformer.from_crs(EPSG, 4326, always_xy=True)
    rng = random.Random(seed)
    x0, x1 = TILE_LEFTS[0] + 2000, TILE_LEFTS[-1] + TILE_M - 2000
    y0, y1 = TILE_TOP - TILE_M + 2000, TILE_TOP - 2000
    xs = [rng.uniform(x0, x1) for _ in range(n)]
    ys = [rng.uniform(y0, y1) for _ in range(n)]
    lons, lats = tr.transform(xs, ys)
    return [(f"p{i + 1}", float(lo), float(la))
            for i, (lo, la) in enumerate(zip(lons, lats, strict=True))]


if __name__ == "__main__":
    t0 = time.perf_counter()
    world = get_world()
    size = sum(p.stat().st_size for p in WORLD_DIR.rglob("*.tif"))
    print(f"{world!r}: {len(world.items_meta)} items, {size / 1e6:.0f} MB of COGs, "
          f"{time.perf_counter() - t0:.0f} s; cloud cover "
          f"{sorted(round(m['cloud_cover'], 1) for m in world.items_meta)}")
