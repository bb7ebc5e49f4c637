"""The benchmark world: the seed notebook's 24 points, one year of Sentinel-2 dates.

Built (once, cached under ``benchmarks/.world/``) with :func:`xsits.testing.world.make_world`.
"""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# XSITS_BENCH_SMALL=1: a 3-point, 2-month world for trying the harness out quickly
SMALL = os.environ.get("XSITS_BENCH_SMALL") == "1"
WORLD_DIR = HERE / (".world-small" if SMALL else ".world")
RAND_PTS = REPO / "notebooks" / "data" / "rand_pts.geojson"

# the 10 points printed in the seed notebook (pt_id 1..10)
SEED_POINTS = [
    (8.49138, 49.85437), (8.41277, 53.14555), (11.17678, 50.01380), (23.79724, 40.06894),
    (16.80020, 48.98809), (22.49204, 42.36324), (-6.51812, 39.32035), (27.54503, 40.23213),
    (22.84505, 41.47664), (1.29386, 44.31059),
]
# used only when notebooks/data/rand_pts.geojson is absent: 14 more European land points
EXTRA_POINTS = [
    (4.86217, 52.08463), (-3.94158, 40.55302), (2.35741, 48.21876), (10.95623, 45.35419),
    (19.45287, 51.75148), (14.55931, 50.24706), (25.61472, 45.14935), (-1.21846, 52.40327),
    (12.91358, 56.01274), (24.90216, 59.10893), (-8.30517, 41.40128), (20.99844, 47.50261),
    (15.91732, 45.75418), (9.50373, 55.60597),
]

BANDS = ("B03", "B04", "B08", "SCL")
START, END = "2024-01-01", ("2024-02-29" if SMALL else "2024-12-31")
WINDOW_M = 5120
BLOCKSIZE = 512


def base_points() -> list[tuple[str, float, float]]:
    """``[(pt_id, lon, lat)]`` of the 24 benchmark points."""
    if RAND_PTS.exists():
        doc = json.loads(RAND_PTS.read_text())
        out = []
        for f in doc["features"]:
            lon, lat = f["geometry"]["coordinates"][:2]
            out.append((str(f["properties"].get("pt_id", len(out) + 1)), float(lon), float(lat)))
        return out[:3] if SMALL else out
    pts = SEED_POINTS + EXTRA_POINTS
    return [(str(i + 1), lon, lat) for i, (lon, lat) in enumerate(pts)]


def spec():
    from xsits.testing.scenes import WorldSpec

    return WorldSpec(
        points=tuple((lon, lat) for _, lon, lat in base_points()),
        start=START, end=END, revisit_days=5, bands=BANDS, window_m=WINDOW_M,
        blocksize=BLOCKSIZE,
    )


def get_world():
    """Generate or reuse the world in ``benchmarks/.world``."""
    from xsits.testing.world import make_world

    return make_world(WORLD_DIR, spec())


def feature_points(n: int, seed: int = 0) -> list[tuple[str, float, float]]:
    """``n`` points: the 24 base points, then points scattered inside their windows.

    Extra points are drawn uniformly within +-1.2 km of a base point (windows are 5.12 km
    wide centred within 10 m of the point), so that an image-mode bbox (+-0.01 deg, i.e.
    <= ~1.1 km) stays inside the window and no extra generation is needed.
    """
    base = base_points()
    if n <= len(base):
        return base[:n]
    rng = random.Random(seed)
    out = list(base)
    k = 0
    while len(out) < n:
        pid, lon, lat = base[k % len(base)]
        dx, dy = rng.uniform(-1200, 1200), rng.uniform(-1200, 1200)
        dlat = dy / 111_320.0
        dlon = dx / (111_320.0 * math.cos(math.radians(lat)))
        out.append((f"{pid}_{len(out)}", lon + dlon, lat + dlat))
        k += 1
    return out


if __name__ == "__main__":
    import time

    t0 = time.perf_counter()
    w = get_world()
    print(f"world {w!r} in {time.perf_counter() - t0:.1f} s")
