"""The embedded offline demo: the seed workload on a small synthetic Sentinel-2 world.

``xsits demo`` (``make demo``) runs :func:`run_demo`: on first use the demo scenes are
generated deterministically with :func:`xsits.testing.world.make_world` into the cache
directory (:func:`cache_dir`: the option ``cache_dir``, ``$XSITS_CACHE_DIR`` or the user cache)
and written as a static STAC ItemCollection that :func:`xsits.search` filters in-process: no
network, no server. Then, for :data:`DEMO_PT_IDS` of the bundled points, it opens the cubes,
harmonizes, masks clouds with SCL, gap-fills linearly, exports one NetCDF per feature with
:func:`xsits.compute_all`, writes an Intake catalog of the outputs, renders one GIF and prints a
summary table.

Examples
--------
>>> import tempfile
>>> from xsits.demo import run_demo
>>> table = run_demo(tempfile.mkdtemp(), progress=False)
xsits demo: 6 features, 134 feature-dates, outputs in ...
>>> table.status.tolist()
['written', 'written', 'written', 'written', 'written', 'written']
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import xarray as xr
from shapely.geometry import Point

from xsits.batch import compute_all
from xsits.cube.load import open_cubes
from xsits.ops import steps
from xsits.ops.mask import masked_fraction
from xsits.options import get_options
from xsits.out.gif import to_gif
from xsits.stac.providers import DEMO_NAMES, register_catalog
from xsits.testing.scenes import WorldSpec
from xsits.testing.world import make_world

__all__ = [
    "BUNDLED_POINTS",
    "DEMO_PT_IDS",
    "bundled_points",
    "cache_dir",
    "demo_aoi",
    "demo_catalog_path",
    "demo_world",
    "run_demo",
]

#: The 24 random points of the seed notebook (``pt_id: (lon, lat)``, EPSG:4326), also shipped
#: as ``notebooks/data/rand_pts.geojson``. 1..10 are the seed's points; 11..24 are xsits' own.
BUNDLED_POINTS: dict[int, tuple[float, float]] = {
    1: (8.49138, 49.85437), 2: (8.41277, 53.14555), 3: (11.17678, 50.01380),
    4: (23.79724, 40.06894), 5: (16.80020, 48.98809), 6: (22.49204, 42.36324),
    7: (-6.51812, 39.32035), 8: (27.54503, 40.23213), 9: (22.84505, 41.47664),
    10: (1.29386, 44.31059), 11: (4.86217, 52.08463), 12: (-3.94158, 40.55302),
    13: (2.35741, 48.21876), 14: (10.95623, 45.35419), 15: (19.45287, 51.75148),
    16: (14.55931, 50.24706), 17: (25.61472, 45.14935), 18: (-1.21846, 52.40327),
    19: (12.91358, 56.01274), 20: (24.90216, 59.10893), 21: (-8.30517, 41.40128),
    22: (20.99844, 47.50261), 23: (15.91732, 45.75418), 24: (9.50373, 55.60597),
}

#: Bundled points covered by the demo world (six UTM zones, Spain to Greece).
DEMO_PT_IDS: tuple[int, ...] = (1, 3, 4, 5, 7, 10)

#: The demo query and grid: ~6 months, every 5 days, 128x128 px patches at 10 m in UTM.
DEMO_START, DEMO_END = "2024-04-01", "2024-09-30"
DEMO_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B08", "SCL")
DEMO_MAX_CLOUD = 30.0
DEMO_GRID: dict[str, Any] = {"resolution": 10.0, "crs": "utm", "mode": "patch",
                             "size": (128, 128)}
DEMO_WINDOW_M = 2560


def cache_dir() -> Path:
    """Where xsits caches generated data: ``get_options().cache_path()``.

    That is the option ``cache_dir``, else ``$XSITS_CACHE_DIR``, else ``user_cache_dir("xsits")``.

    Examples
    --------
    >>> import xsits
    >>> with xsits.set_options(cache_dir="/tmp/xsits-cache"):
    ...     str(cache_dir())
    '/tmp/xsits-cache'
    """
    return get_options().cache_path().expanduser()


def bundled_points(pt_ids: Sequence[int] | None = None) -> gpd.GeoDataFrame:
    """The bundled random points as a GeoDataFrame (``id``, ``pt_id``, ``feature_id``).

    Parameters
    ----------
    pt_ids
        Which points (default: all 24, in ``pt_id`` order).

    Examples
    --------
    >>> gdf = bundled_points([1, 7])
    >>> gdf["feature_id"].tolist(), round(float(gdf.geometry.x.iloc[1]), 5)
    (['1', '7'], -6.51812)
    """
    ids = list(BUNDLED_POINTS) if pt_ids is None else [int(i) for i in pt_ids]
    return gpd.GeoDataFrame(
        {"id": ids, "pt_id": ids, "feature_id": [str(i) for i in ids]},
        geometry=[Point(*BUNDLED_POINTS[i]) for i in ids],
        crs="EPSG:4326",
    )


def demo_aoi() -> gpd.GeoDataFrame:
    """The demo features: :data:`DEMO_PT_IDS` of the bundled points.

    Examples
    --------
    >>> demo_aoi()["feature_id"].tolist()
    ['1', '3', '4', '5', '7', '10']
    """
    return bundled_points(DEMO_PT_IDS)


def _spec():
    return WorldSpec(
        points=tuple(BUNDLED_POINTS[i] for i in DEMO_PT_IDS),
        start=DEMO_START,
        end=DEMO_END,
        revisit_days=5,
        bands=DEMO_BANDS,
        window_m=DEMO_WINDOW_M,
        blocksize=256,
        seed=0,
    )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive inter-process lock (tests, notebook kernels and the CLI may race)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock, make_world is atomic
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def demo_world():
    """Generate (first call, ~30 s) or reuse the demo world in ``cache_dir()/"demo-world"``.

    Returns
    -------
    xsits.testing.world.World

    Examples
    --------
    >>> world = demo_world()
    >>> len(world.windows)
    6
    """
    root = cache_dir() / "demo-world"
    with _locked(cache_dir() / "demo-world.lock"):
        return make_world(root, _spec())


def demo_catalog_path() -> Path:
    """Ensure the demo world exists and return its static STAC ItemCollection (``.geojson``).

    Give the path as ``stac=`` to :func:`xsits.open_cubes` / :func:`xsits.search`, or use
    ``stac="demo"`` in the Intake ``sits`` driver.

    Returns
    -------
    pathlib.Path
        ``<cache_dir>/demo-world/items-<spec key>.geojson`` with absolute local asset hrefs.

    Examples
    --------
    >>> import xsits
    >>> path = demo_catalog_path()
    >>> path.suffix
    '.geojson'
    >>> cubes = xsits.open_cubes(demo_aoi(), stac=str(path), start=DEMO_START,
    ...                          end=DEMO_END)
    >>> sorted(cubes)
    ['1', '10', '3', '4', '5', '7']
    """
    spec = _spec()
    root = cache_dir() / "demo-world"
    path = root / f"items-{spec.key()[:12]}.geojson"
    if path.exists() and (root / "world.json").exists():
        return path
    world = demo_world()
    with _locked(cache_dir() / "demo-world.lock"):
        if not path.exists():
            world.write_item_collection(path)
    return path


def _masked_pct(path: Path) -> float:
    """Percent of pixels masked by SCL (all dates), from the exported file's ``SCL`` band."""
    with xr.open_dataset(path) as ds:
        return round(100 * float(masked_fraction(ds.load()).mean()), 1)


def run_demo(out_dir: str | os.PathLike | None = None, *, progress: bool = True) -> pd.DataFrame:
    """Run the seed workload offline on the demo world; print and return a summary table.

    Opens the demo cubes (:data:`DEMO_PT_IDS`, 2024-04..09, bands B02 B03 B04 B08 SCL,
    ``max_cloud=30``, 128x128 px patches at 10 m), then with :func:`xsits.compute_all` applies
    harmonize, SCL mask and linear gap-fill and writes one NetCDF per feature, writes
    ``catalog.yaml`` (Intake) beside them, and renders ``<first feature>.gif``.

    Parameters
    ----------
    out_dir
        Output directory. Default: a new temporary directory. Existing outputs are replaced.
    progress
        Show a progress bar while computing.

    Returns
    -------
    pandas.DataFrame
        One row per feature: ``feature_id``, ``lon``, ``lat``, ``dates``, ``masked_pct``
        (percent of pixels masked by SCL before gap-filling), ``status``, ``path``. ``attrs``
        holds ``gif``, ``catalog``, ``out_dir``, ``seconds`` and ``timings`` (per phase).

    Examples
    --------
    >>> table = run_demo(progress=False)
    xsits demo: 6 features, 134 feature-dates, outputs in ...
    >>> table[["feature_id", "dates"]].head(2)
      feature_id  dates
    0          1     23
    1          3     20
    """
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    mark = [t0]

    def lap(name: str) -> None:
        now = time.perf_counter()
        timings[name] = round(now - mark[0], 2)
        mark[0] = now

    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="xsits-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    items = demo_catalog_path()
    lap("scenes")
    aoi = demo_aoi()
    cubes = open_cubes(aoi, stac=str(items), bands=DEMO_BANDS, start=DEMO_START, end=DEMO_END,
                       max_cloud=DEMO_MAX_CLOUD, **DEMO_GRID)
    lap("search")
    report = compute_all(
        cubes,
        steps=[steps.harmonize(), steps.scl_mask(), steps.gapfill("linear")],
        out_dir=out,
        format="netcdf",
        progress=progress,
        overwrite=True,
    )
    lap("compute_all")
    report = report.set_index("feature_id")
    paths = {f: Path(p) for f, p in report["path"].items()
             if report.loc[f, "status"] in ("written", "skipped") and isinstance(p, str | Path)}
    catalog = report.attrs.get("catalog")  # written by compute_all beside the outputs
    masked = {f: _masked_pct(p) for f, p in paths.items()}
    gif = None
    if paths:
        first = next(iter(paths))
        with xr.open_dataset(paths[first]) as ds:
            gif = Path(to_gif(ds.load(), out / f"{first}.gif"))
    lap("gif")
    rows = []
    for fid, lon, lat in zip(aoi["feature_id"], aoi.geometry.x, aoi.geometry.y, strict=True):
        r = report.loc[fid] if fid in report.index else None
        rows.append({
            "feature_id": fid,
            "lon": round(lon, 5),
            "lat": round(lat, 5),
            "dates": int(cubes[fid].sizes["time"]) if fid in cubes else 0,
            "masked_pct": masked.get(fid, float("nan")),
            "status": r["status"] if r is not None else "missing",
            "path": str(paths.get(fid, "")),
        })
    table = pd.DataFrame(rows)
    table.attrs.update(gif=str(gif) if gif else None, catalog=str(catalog) if catalog else None,
                       out_dir=str(out), seconds=round(time.perf_counter() - t0, 2),
                       timings=timings)
    _print_summary(table)
    return table


def _print_summary(table: pd.DataFrame) -> None:
    shown = table.assign(path=[Path(p).name if p else "" for p in table["path"]])
    print(f"xsits demo: {len(table)} features, "
          f"{int(table['dates'].sum())} feature-dates, outputs in {table.attrs['out_dir']}")
    print(shown[["feature_id", "lon", "lat", "dates", "masked_pct", "status", "path"]]
          .to_string(index=False))
    print(f"GIF:     {table.attrs['gif']}")
    print(f"catalog: {table.attrs['catalog']}  (intake.open_catalog(...) reopens the outputs)")
    t = table.attrs["timings"]
    print(f"done in {table.attrs['seconds']:.1f} s (" + ", ".join(f"{k} {v:.1f} s"
                                                         for k, v in t.items()) + ")")


register_catalog(DEMO_NAMES, demo_catalog_path)
