"""A deterministic synthetic Sentinel-2 L2A "world": Cloud-Optimized GeoTIFFs + STAC items.

The world covers a list of places (lon, lat).  Each place gets a square window of a
real-looking MGRS tile in its own UTM zone, and every ``revisit_days`` one scene per
window is written as one COG per band plus a Planetary-Computer-shaped STAC item.
Nothing here touches the network; the collection document ships as package data.

What the pixels look like
-------------------------
* a landscape of rotated crop parcels (summer crops, winter crops, grassland, forest,
  bare soil) with a seasonal vegetation curve per parcel (hemisphere aware), plus a lake;
  the window centre always lies in a summer-crop parcel;
* per scene: cloud blobs (SCL 8/9, bright), their shadows (SCL 3, dark, cast away from
  the sun), thin cirrus (SCL 10), snow patches on some winter scenes (SCL 11), a few
  unclassified (7) and, rarely, saturated (1) pixels;
* every 4th date (index 3, 7, 11, ...) is acquired from a second, *partial-swath* relative
  orbit whose swath edge cuts a corner of the window diagonally: SCL 0 and reflectance 0
  there (the window centre is always valid);
* reflectance DN = round(reflectance * 10000) + 1000 for processing baseline >= 04.00
  (dates >= ``WorldSpec.baseline_switch``), without the offset before.

``eo:cloud_cover`` and every ``s2:*_percentage`` are computed from the SCL array that is
written: class percentages are relative to the valid (non-zero) SCL pixels,
``s2:nodata_pixel_percentage`` is relative to all pixels of the window.

Places, tiles and ids
---------------------
* UTM zone = ``int((lon + 180) // 6) + 1`` (no Norway/Svalbard exceptions), EPSG 326zz
  north / 327zz south.  Points on both sides of a multiple of 6 degrees of longitude
  (e.g. lon 11.9 and 12.1) straddle zones 32 and 33.
* Tile origins are those of real S2 tiles (x = 99960, 199960, ..., y = multiple of
  100 km, 109 800 m side) and ``s2:mgrs_tile`` carries the real MGRS square letters
  (e.g. Munich 32UPU, Denver 13TDE, Paris 31UDQ, Sydney 56HLH).
* Windows are centred on the point, snapped to the 20 m grid of the tile.
* Item ids look like ``S2B_MSIL2A_20240106T094436_R096_T32UPU_20240106T115136``; the
  acquisition time is ~10:30 local solar time (``lon / 15`` hours before in UTC), the
  partial-swath orbit ~11 minutes earlier.  Windows sharing a tile differ by the seconds of
  the trailing generation time, so ids stay unique without a suffix.
* Not handled: windows crossing the antimeridian (bbox would wrap), polar regions.

Examples
--------
>>> import tempfile
>>> from xsits.testing.scenes import WorldSpec, make_world
>>> spec = WorldSpec(points=((11.35, 48.05),), start="2024-06-01", end="2024-06-10")
>>> world = make_world(tempfile.mkdtemp(), spec)
>>> [m["id"][:26] for m in world.items_meta]
['S2A_MSIL2A_20240601T094436', 'S2B_MSIL2A_20240606T094436']
>>> world.item_dicts("http://127.0.0.1:8123/")[0]["properties"]["s2:mgrs_tile"]
'32UPU'
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import pathlib
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

__all__ = ["WorldSpec", "World", "make_world", "GENERATOR_VERSION"]

#: Bumped whenever the generator's output changes; part of the reuse key.
GENERATOR_VERSION = "2"

BANDS_10M = ("B02", "B03", "B04", "B08")
BANDS_20M = ("B05", "B06", "B07", "B8A", "B11", "B12", "SCL")
ALL_BANDS = BANDS_10M + BANDS_20M
_REFL_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")

# Surface reflectance spectra (0..1) in _REFL_BANDS order.
_SPECTRA = {
    "soil": (0.07, 0.10, 0.14, 0.16, 0.18, 0.19, 0.20, 0.21, 0.31, 0.26),
    "veg": (0.03, 0.06, 0.03, 0.09, 0.26, 0.34, 0.38, 0.40, 0.20, 0.10),
    "water": (0.05, 0.045, 0.03, 0.02, 0.015, 0.012, 0.010, 0.009, 0.005, 0.003),
    "cloud": (0.55, 0.55, 0.56, 0.57, 0.58, 0.58, 0.59, 0.58, 0.42, 0.30),
    "snow": (0.85, 0.84, 0.82, 0.80, 0.78, 0.77, 0.75, 0.72, 0.10, 0.07),
    "haze": (0.015, 0.010, 0.006, 0.004, 0.003, 0.003, 0.003, 0.003, 0.001, 0.001),
}
_SPEC_IDX = {b: i for i, b in enumerate(_REFL_BANDS)}

_COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
_PLACEHOLDER = "https://stac.invalid/api/stac/v1"
_STAC_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.0.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
]
_LAT_BANDS = "CDEFGHJKLMNPQRSTUVWX"
_COL_SETS = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")
_ROW_LETTERS = "ABCDEFGHJKLMNPQRSTUV"
_MANIFEST = "world.json"
_ITEMS = "items.json"
_K = 4096  # size of the parcel parameter table (parcels are hashed into it)

# parcel types
_SUMMER, _WINTER, _GRASS, _FOREST, _BARE = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class WorldSpec:
    """What a synthetic world covers and how its COGs are laid out.

    Parameters
    ----------
    points
        ``(lon, lat)`` places to cover (EPSG:4326).  Each gets a window in its own UTM
        zone; a point lying well inside an earlier point's window (at least
        ``window_m / 4`` from its edges) shares that window and its items.
    start, end
        ISO dates; scenes fall on ``start + k * revisit_days`` up to ``end`` (solar dates).
    revisit_days
        Days between scenes of one window; platform alternates Sentinel-2A / 2B.
    bands
        Asset keys to write.  10 m: B02 B03 B04 B08; 20 m: B05 B06 B07 B8A B11 B12 SCL.
    window_m
        Side of the square UTM window per place, metres, multiple of 20.
    blocksize
        Internal COG tile size in pixels (multiple of 16).
    baseline_switch
        Dates on/after it get processing baseline >= 04.00 and the +1000 DN offset.
    seed
        Seed of every random draw; same spec -> byte-identical items and COGs.

    Examples
    --------
    >>> spec = WorldSpec(points=((11.35, 48.05), (-105.1, 40.0)), end="2024-03-31")
    >>> spec.window_m, spec.bands[-1]
    (2560, 'SCL')
    """

    points: tuple[tuple[float, float], ...]
    start: str = "2024-01-01"
    end: str = "2024-12-31"
    revisit_days: int = 5
    bands: tuple[str, ...] = ("B02", "B03", "B04", "B08", "B11", "SCL")
    window_m: int = 2560
    blocksize: int = 256
    baseline_switch: str = "2022-01-25"
    seed: int = 0

    def __post_init__(self) -> None:
        pts = tuple((float(lon), float(lat)) for lon, lat in self.points)
        object.__setattr__(self, "points", pts)
        object.__setattr__(self, "bands", tuple(self.bands))
        if not pts:
            raise ValueError("WorldSpec.points is empty; give at least one (lon, lat)")
        for lon, lat in pts:
            if not (-180 <= lon <= 180 and -80 <= lat <= 84):
                raise ValueError(f"WorldSpec point ({lon}, {lat}) is outside UTM coverage")
        unknown = [b for b in self.bands if b not in ALL_BANDS]
        if unknown:
            raise ValueError(f"WorldSpec.bands has unknown bands {unknown}; use {ALL_BANDS}")
        if self.window_m <= 0 or self.window_m % 20:
            raise ValueError(
                f"WorldSpec.window_m={self.window_m} must be a positive multiple of 20"
            )
        if self.blocksize <= 0 or self.blocksize % 16:
            raise ValueError(f"WorldSpec.blocksize={self.blocksize} must be a multiple of 16")
        if self.revisit_days < 1:
            raise ValueError("WorldSpec.revisit_days must be >= 1")
        if _date(self.end) < _date(self.start):
            raise ValueError(f"WorldSpec.end {self.end} is before start {self.start}")

    def key(self) -> str:
        """Hash identifying the generated output (spec + generator version).

        Returns
        -------
        str
            Hex sha256 digest.

        Examples
        --------
        >>> WorldSpec(points=((0.5, 45.0),)).key() == WorldSpec(points=((0.5, 45),)).key()
        True
        """
        payload = json.dumps(
            {"spec": dataclasses.asdict(self), "version": GENERATOR_VERSION}, sort_keys=True
        )
        return hashlib.sha256(payload.encode()).hexdigest()


# --------------------------------------------------------------------------- geometry


def _date(s: str) -> dt.date:
    return dt.date.fromisoformat(str(s)[:10])


@dataclass(frozen=True)
class _Window:
    index: int
    zone: int
    epsg: int
    tile: str
    left: float
    bottom: float
    right: float
    top: float
    points: tuple[int, ...]
    points_xy: tuple[tuple[float, float], ...]
    lon: float
    lat: float
    main_orbit: int
    partial_orbit: int
    rank: int  # rank among windows sharing the same tile (for unique ids)


def _utm_zone(lon: float) -> int:
    return min(60, int((lon + 180.0) // 6.0) + 1)


def _mgrs_tile(zone: int, lat: float, tile_left: float, tile_top: float) -> str:
    band = _LAT_BANDS[min(len(_LAT_BANDS) - 1, max(0, int((lat + 80.0) // 8.0)))]
    col_set = _COL_SETS[(zone - 1) % 3]
    col = col_set[int(round(tile_left + 40.0)) // 100000 - 1]
    row_offset = 0 if zone % 2 else 5
    row = _ROW_LETTERS[(int(round(tile_top)) // 100000 - 1 + row_offset) % 20]
    return f"{zone:02d}{band}{col}{row}"


def _plan_windows(spec: WorldSpec) -> list[_Window]:
    from pyproj import Transformer

    half = (spec.window_m // 40) * 20
    margin = spec.window_m / 4.0
    raw: list[dict[str, Any]] = []
    for pid, (lon, lat) in enumerate(spec.points):
        zone = _utm_zone(lon)
        epsg = (32600 if lat >= 0 else 32700) + zone
        tr = Transformer.from_crs(4326, epsg, always_xy=True)
        e, n = tr.transform(lon, lat)
        for w in raw:
            if (
                w["epsg"] == epsg
                and w["left"] + margin <= e <= w["right"] - margin
                and w["bottom"] + margin <= n <= w["top"] - margin
            ):
                w["points"].append(pid)
                w["xy"].append((e, n))
                break
        else:
            k = max(1, min(8, int((e + 40.0) // 100000)))
            tile_left = k * 100000 - 40.0
            tile_top = (math.floor(n / 100000.0) + 1) * 100000.0
            cx = tile_left + round((e - tile_left) / 20.0) * 20.0
            cy = tile_top - round((tile_top - n) / 20.0) * 20.0
            left, top = cx - half, cy + half
            # real S2 tiles overlap by 9800 m west->east and south->north: if the window
            # sticks out of this tile's west / north edge, the western / northern
            # neighbour tile contains it (for windows up to 9800 m)
            if left < tile_left and k > 1:
                tile_left -= 100000.0
            if top > tile_top:
                tile_top += 100000.0
            raw.append(
                dict(
                    zone=zone,
                    epsg=epsg,
                    tile=_mgrs_tile(zone, lat, tile_left, tile_top),
                    left=left,
                    right=left + spec.window_m,
                    top=top,
                    bottom=top - spec.window_m,
                    points=[pid],
                    xy=[(e, n)],
                    lon=lon,
                    lat=lat,
                )
            )
    out = []
    seen: dict[str, int] = {}
    for i, w in enumerate(raw):
        rank = seen.get(w["tile"], 0)
        seen[w["tile"]] = rank + 1
        main = 1 + int(((w["lon"] + 180.0) % 360.0) / 360.0 * 143 * 37) % 143
        out.append(
            _Window(
                index=i,
                zone=w["zone"],
                epsg=w["epsg"],
                tile=w["tile"],
                left=w["left"],
                bottom=w["bottom"],
                right=w["right"],
                top=w["top"],
                points=tuple(w["points"]),
                points_xy=tuple(w["xy"]),
                lon=w["lon"],
                lat=w["lat"],
                main_orbit=main,
                partial_orbit=(main - 1 - 43) % 143 + 1,
                rank=rank,
            )
        )
    return out


def _footprint(w: _Window) -> tuple[dict[str, Any], list[float]]:
    from pyproj import Transformer

    tr = Transformer.from_crs(w.epsg, 4326, always_xy=True)
    n = 4
    xs: list[float] = []
    ys: list[float] = []
    corners = [(w.left, w.bottom), (w.right, w.bottom), (w.right, w.top), (w.left, w.top)]
    for (x0, y0), (x1, y1) in zip(corners, corners[1:] + corners[:1], strict=True):
        for k in range(n):
            xs.append(x0 + (x1 - x0) * k / n)
            ys.append(y0 + (y1 - y0) * k / n)
    lons, lats = tr.transform(xs, ys)
    ring = [[round(float(a), 7), round(float(b), 7)] for a, b in zip(lons, lats, strict=True)]
    ring.append(ring[0])
    bbox = [
        min(p[0] for p in ring),
        min(p[1] for p in ring),
        max(p[0] for p in ring),
        max(p[1] for p in ring),
    ]
    return {"type": "Polygon", "coordinates": [ring]}, bbox


# --------------------------------------------------------------------------- scenes


@dataclass(frozen=True)
class _Scene:
    window: _Window
    index: int  # date index within the window
    solar_date: dt.date
    when: dt.datetime  # UTC acquisition time
    generated: dt.datetime
    platform: str  # "S2A" / "S2B"
    orbit: int
    partial: bool
    baseline: str
    offset: int
    item_id: str


def _baseline(day: dt.date, switch: dt.date) -> str:
    if day < switch:
        return "03.00" if day < dt.date(2021, 11, 3) else "03.01"
    for until, name in (
        (dt.date(2022, 12, 6), "04.00"),
        (dt.date(2023, 12, 13), "05.09"),
        (dt.date(2024, 7, 23), "05.10"),
    ):
        if day < until:
            return name
    return "05.11"


def _plan_scenes(spec: WorldSpec, windows: list[_Window]) -> list[_Scene]:
    start, end, switch = _date(spec.start), _date(spec.end), _date(spec.baseline_switch)
    n_dates = (end - start).days // spec.revisit_days + 1
    scenes = []
    for w in windows:
        # local solar time ~10:30 (main orbit) / ~10:19 (partial orbit), seconds from lon
        base_sec = int(round(10.5 * 3600 - w.lon / 15.0 * 3600))
        for i in range(n_dates):
            day = start + dt.timedelta(days=i * spec.revisit_days)
            partial = i % 4 == 3
            sec = base_sec - (11 * 60 + 7 if partial else 0)
            when = dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC)
            when += dt.timedelta(seconds=sec)
            gen = when + dt.timedelta(hours=2, minutes=(i * 7) % 50, seconds=w.rank)
            platform = "S2A" if i % 2 == 0 else "S2B"
            orbit = w.partial_orbit if partial else w.main_orbit
            bl = _baseline(day, switch)
            item_id = (
                f"{platform}_MSIL2A_{when:%Y%m%dT%H%M%S}_R{orbit:03d}_T{w.tile}_{gen:%Y%m%dT%H%M%S}"
            )
            scenes.append(
                _Scene(
                    w,
                    i,
                    day,
                    when,
                    gen,
                    platform,
                    orbit,
                    partial,
                    bl,
                    1000 if day >= switch else 0,
                    item_id,
                )
            )
    ids = [s.item_id for s in scenes]
    assert len(set(ids)) == len(ids), "synthetic item ids are not unique"
    return scenes


def _solar_angles(lat: float, day: dt.date) -> tuple[float, float]:
    doy = day.timetuple().tm_yday
    decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + doy) / 365.0)
    phi, h = math.radians(lat), math.radians(-22.5)
    cos_z = math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(h)
    zen = math.degrees(math.acos(max(-1.0, min(1.0, cos_z))))
    az = math.degrees(
        math.atan2(math.sin(h), math.cos(h) * math.sin(phi) - math.tan(decl) * math.cos(phi))
    )
    return zen, (az + 180.0) % 360.0


# --------------------------------------------------------------------------- pixels


def _smooth_grid(rng: np.random.Generator, extent_m: float, cell_m: float) -> np.ndarray:
    n = int(extent_m // cell_m) + 3
    return rng.random((n, n), dtype=np.float64).astype(np.float32)


def _sample_grid(g: np.ndarray, n: int, res: float, cell_m: float) -> np.ndarray:
    """Smooth (smoothstep-bilinear) field from coarse grid ``g`` at pixel centres."""
    c = ((np.arange(n) + 0.5) * res / cell_m).astype(np.float32)
    i0 = c.astype(np.int64)
    t = c - i0
    t = t * t * (3 - 2 * t)
    ty, tx = t[:, None], t[None, :]
    a = g[np.ix_(i0, i0)]
    b = g[np.ix_(i0, i0 + 1)]
    cc = g[np.ix_(i0 + 1, i0)]
    d = g[np.ix_(i0 + 1, i0 + 1)]
    return (a * (1 - tx) + b * tx) * (1 - ty) + (cc * (1 - tx) + d * tx) * ty


def _up2(a: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(a, 2, axis=0), 2, axis=1)


def _shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(mask)
    h, w = mask.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = mask[ys, xs]
    return out


def _threshold(field: np.ndarray, frac: float) -> np.ndarray:
    if frac <= 0:
        return np.zeros(field.shape, bool)
    if frac >= 1:
        return np.ones(field.shape, bool)
    return field > np.quantile(field, 1.0 - frac)


class _Landscape:
    """Static per-window surface, evaluated at 10 m and 20 m pixel centres."""

    def __init__(self, w: _Window, spec: WorldSpec):
        rng = np.random.default_rng([spec.seed, 1, w.index])
        m = float(spec.window_m)
        self.south = w.lat < 0
        # parcel parameter table
        u = rng.random(_K)
        ptype = np.select(
            [u < 0.35, u < 0.55, u < 0.75, u < 0.90], [_SUMMER, _WINTER, _GRASS, _FOREST], _BARE
        )
        peak = np.choose(ptype, [175.0, 125.0, 150.0, 185.0, 0.0]) + rng.normal(0, 12, _K)
        width = np.choose(ptype, [38.0, 42.0, 75.0, 80.0, 1.0]) * rng.uniform(0.85, 1.15, _K)
        fmin = np.choose(ptype, [0.04, 0.18, 0.30, 0.55, 0.02]) * rng.uniform(0.8, 1.2, _K)
        fmax = np.choose(ptype, [0.88, 0.80, 0.70, 0.85, 0.02]) * rng.uniform(0.9, 1.05, _K)
        self.soil_bright = rng.uniform(0.8, 1.2, _K).astype(np.float32)
        theta = rng.uniform(0, math.pi / 2)
        sx, sy = rng.uniform(220, 420), rng.uniform(140, 300)
        salt = int(rng.integers(1, 2**31 - 1))
        # lake: away from the centre
        qx, qy = rng.choice([-1, 1], 2)
        lake = (
            m / 2 + qx * 0.29 * m,
            m / 2 + qy * 0.29 * m,
            0.13 * m,
            0.085 * m,
            rng.uniform(0, math.pi),
        )
        tex_grid = _smooth_grid(rng, m, 120.0)
        edge_grid = _smooth_grid(rng, m, 80.0)

        def pid_at(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            uu = x * math.cos(theta) + y * math.sin(theta)
            vv = -x * math.sin(theta) + y * math.cos(theta)
            pi_ = np.floor(uu / sx).astype(np.int64)
            pj_ = np.floor(vv / sy).astype(np.int64)
            h = (pi_ * 73856093) ^ (pj_ * 19349663) ^ salt
            return (h % _K).astype(np.int32)

        centre_pid = int(pid_at(np.array(m / 2), np.array(m / 2)))
        ptype[centre_pid], peak[centre_pid], width[centre_pid] = _SUMMER, 180.0, 40.0
        fmin[centre_pid], fmax[centre_pid] = 0.05, 0.88
        self.ptype, self.peak, self.width, self.fmin, self.fmax = ptype, peak, width, fmin, fmax

        self.pid: dict[int, np.ndarray] = {}
        self.water: dict[int, np.ndarray] = {}
        self.tex: dict[int, np.ndarray] = {}
        for res in (10, 20):
            n = spec.window_m // res
            c = (np.arange(n) + 0.5) * res
            x, y = c[None, :], c[:, None]
            self.pid[res] = pid_at(x, y)
            lx, ly, la, lb, lt = lake
            dx, dy = x - lx, y - ly
            r2 = ((dx * math.cos(lt) + dy * math.sin(lt)) / la) ** 2 + (
                (-dx * math.sin(lt) + dy * math.cos(lt)) / lb
            ) ** 2
            self.water[res] = (r2 + 0.6 * (_sample_grid(edge_grid, n, res, 80.0) - 0.5)) < 1.0
            fine = rng.normal(0, 0.015, (n, n)).astype(np.float32)
            self.tex[res] = (0.92 + 0.16 * _sample_grid(tex_grid, n, res, 120.0) + fine).astype(
                np.float32
            )

    def veg_fraction(self, day: dt.date) -> np.ndarray:
        doy = day.timetuple().tm_yday + (182 if self.south else 0)
        d = (doy - self.peak + 182.5) % 365.0 - 182.5
        f = self.fmin + (self.fmax - self.fmin) * np.exp(-0.5 * (d / self.width) ** 2)
        return np.clip(f, 0.0, 0.95).astype(np.float32)


def _scene_arrays(
    sc: _Scene, land: _Landscape, spec: WorldSpec
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """All band arrays of one scene and the SCL statistics."""
    w = sc.window
    rng = np.random.default_rng([spec.seed, 2, w.index, sc.index])
    m = float(spec.window_m)
    n20 = spec.window_m // 20
    doy = sc.solar_date.timetuple().tm_yday + (182 if w.lat < 0 else 0)
    winter = (doy % 365) < 60 or (doy % 365) > 335
    zen, az = _solar_angles(w.lat, sc.solar_date)

    # ---- cloud amount: ~45 % nearly clear, ~10 % overcast, the rest 10-95 %
    u = rng.random()
    if u < 0.45:
        total = 0.0 if rng.random() < 0.3 else rng.uniform(0.0, 0.08)
    elif u < 0.55:
        total = 1.0
    elif u < 0.85:
        total = rng.uniform(0.10, 0.60)
    else:
        total = rng.uniform(0.60, 0.95)
    cirrus_share = rng.uniform(0.1, 0.4) if (rng.random() < 0.4 and total < 1.0) else 0.0
    f_cloud = total * (1 - cirrus_share)
    f_cirrus = total * cirrus_share

    field = 0.7 * _sample_grid(_smooth_grid(rng, m, 640.0), n20, 20, 640.0) + 0.3 * _sample_grid(
        _smooth_grid(rng, m, 160.0), n20, 20, 160.0
    )
    cloud = _threshold(field, f_cloud)
    high = cloud & _threshold(field, f_cloud * 0.6)
    cir_field = _sample_grid(_smooth_grid(rng, m, 900.0), n20, 20, 900.0)
    cirrus = _threshold(cir_field, f_cirrus) & ~cloud
    # shadows: clouds ~1.5 km high, cast away from the sun
    dist = min(60.0, 1500.0 * math.tan(math.radians(min(zen, 75.0))) / 20.0)
    dy = int(round(dist * math.cos(math.radians(az))))  # sun north -> shadow south (+row)
    dx = int(round(-dist * math.sin(math.radians(az))))
    shadow = _shift(cloud, dy, dx) & ~cloud & ~cirrus
    snow = np.zeros((n20, n20), bool)
    if winter and rng.random() < 0.35:
        snow = (
            _threshold(
                _sample_grid(_smooth_grid(rng, m, 300.0), n20, 20, 300.0), rng.uniform(0.05, 0.5)
            )
            & ~land.water[20]
        )
    unclassified = rng.random((n20, n20)) < 0.002
    saturated = np.zeros((n20, n20), bool)
    if rng.random() < 0.05:
        k = int(rng.integers(1, 6))
        saturated[rng.integers(0, n20, k), rng.integers(0, n20, k)] = True
    nodata = np.zeros((n20, n20), bool)
    if sc.partial:
        wr = np.random.default_rng([spec.seed, 3, w.index])
        t = wr.uniform(1.3, 1.6)
        flip_x, flip_y = wr.random() < 0.5, wr.random() < 0.5
        c = (np.arange(n20) + 0.5) / n20
        cx = (1 - c) if flip_x else c
        cy = (1 - c) if flip_y else c
        nodata = (cx[None, :] + cy[:, None]) > t
    saturated &= ~nodata & ~cloud

    # ---- SCL
    fv = land.veg_fraction(sc.solar_date)
    f20 = fv[land.pid[20]]
    scl = np.where(land.water[20], 6, np.where(f20 >= 0.3, 4, 5)).astype(np.uint8)
    scl[unclassified & ~land.water[20]] = 7
    scl[snow] = 11
    scl[shadow] = 3
    scl[cirrus] = 10
    scl[cloud] = 8
    scl[high] = 9
    scl[saturated] = 1
    scl[nodata] = 0

    # ---- reflectance
    haze = rng.uniform(0.0, 1.0)
    bright = rng.uniform(0.97, 1.03)
    masks20 = {
        "cloud": cloud,
        "high": high,
        "cirrus": cirrus,
        "shadow": shadow,
        "snow": snow,
        "saturated": saturated,
        "nodata": nodata,
        "field": field,
    }
    masks10 = {k: _up2(v) for k, v in masks20.items()}
    noise = {
        res: rng.normal(0, 0.01, (spec.window_m // res,) * 2).astype(np.float32) for res in (10, 20)
    }
    out: dict[str, np.ndarray] = {}
    for band in spec.bands:
        if band == "SCL":
            out[band] = scl
            continue
        res = 10 if band in BANDS_10M else 20
        mk = masks10 if res == 10 else masks20
        i = _SPEC_IDX[band]
        f = fv[land.pid[res]]
        sb = land.soil_bright[land.pid[res]]
        r = (f * _SPECTRA["veg"][i] + (1 - f) * _SPECTRA["soil"][i] * sb) * land.tex[res]
        r = np.where(land.water[res], _SPECTRA["water"][i] * (0.5 + 0.5 * land.tex[res]), r)
        r = np.where(mk["snow"], _SPECTRA["snow"][i] * land.tex[res], r)
        r = r * bright + _SPECTRA["haze"][i] * haze
        r = np.where(mk["shadow"], r * 0.35, r)
        alpha = np.where(mk["high"], 0.92, np.where(mk["cloud"], 0.65, 0.0))
        alpha = np.where(mk["cirrus"], 0.25, alpha) * (0.85 + 0.3 * mk["field"])
        alpha = np.clip(alpha, 0.0, 1.0)
        r = r * (1 - alpha) + _SPECTRA["cloud"][i] * alpha
        r = r * (1 + noise[res])
        dn = np.clip(np.rint(r * 10000.0) + sc.offset, 1, 65535).astype(np.uint16)
        dn[mk["saturated"]] = 65535
        dn[mk["nodata"]] = 0
        out[band] = dn

    counts = np.bincount(scl.ravel(), minlength=12)
    total_px = int(scl.size)
    valid = total_px - int(counts[0])

    def pct(*classes: int) -> float:
        return 100.0 * float(sum(int(counts[c]) for c in classes)) / valid if valid else 0.0

    stats = {
        "eo:cloud_cover": pct(8, 9, 10),
        "s2:nodata_pixel_percentage": 100.0 * float(counts[0]) / total_px,
        "s2:saturated_defective_pixel_percentage": pct(1),
        "s2:dark_features_percentage": pct(2),
        "s2:cloud_shadow_percentage": pct(3),
        "s2:vegetation_percentage": pct(4),
        "s2:not_vegetated_percentage": pct(5),
        "s2:water_percentage": pct(6),
        "s2:unclassified_percentage": pct(7),
        "s2:medium_proba_clouds_percentage": pct(8),
        "s2:high_proba_clouds_percentage": pct(9),
        "s2:thin_cirrus_percentage": pct(10),
        "s2:snow_ice_percentage": pct(11),
        "s2:mean_solar_zenith": round(zen, 6),
        "s2:mean_solar_azimuth": round(az, 6),
    }
    return out, stats


# --------------------------------------------------------------------------- items


def _collection_template() -> dict[str, Any]:
    text = resources.files("xsits.testing").joinpath("data/sentinel-2-l2a.collection.json")
    return json.loads(text.read_text())


def _band_res(band: str) -> int:
    return 10 if band in BANDS_10M else 20


def _rel_path(sc: _Scene, band: str) -> str:
    w = sc.window
    t = w.tile
    return (
        f"{t[:2]}/{t[2]}/{t[3:]}/{sc.solar_date:%Y/%m/%d}/{sc.item_id}/"
        f"T{t}_{sc.when:%Y%m%dT%H%M%S}_{band}_{_band_res(band)}m.tif"
    )


def _item(sc: _Scene, stats: dict[str, Any], spec: WorldSpec, ia: dict[str, Any]) -> dict:
    w = sc.window
    geom, bbox = _footprint(w)
    sat = sc.platform
    bl = sc.baseline
    doy = sc.solar_date.timetuple().tm_yday
    abs_orbit = int((sc.solar_date - dt.date(2015, 6, 23)).days * 14.3) % 1000000
    ps = "2APS" if sat == "S2A" else "2BPS"
    gen = f"{sc.generated:%Y%m%dT%H%M%S}"
    acq = f"{sc.when:%Y%m%dT%H%M%S}"
    props: dict[str, Any] = {
        "datetime": f"{sc.when:%Y-%m-%dT%H:%M:%S}.024Z",
        "platform": f"Sentinel-2{sat[-1]}",
        "constellation": "Sentinel 2",
        "instruments": ["msi"],
        "eo:cloud_cover": stats["eo:cloud_cover"],
        "proj:epsg": w.epsg,
        "proj:code": f"EPSG:{w.epsg}",
        "sat:orbit_state": "descending",
        "sat:relative_orbit": sc.orbit,
        "s2:mgrs_tile": w.tile,
        "s2:product_type": "S2MSI2A",
        "s2:processing_baseline": bl,
        "s2:product_uri": (
            f"{sat}_MSIL2A_{acq}_N{bl.replace('.', '')}_R{sc.orbit:03d}_T{w.tile}_{gen}.SAFE"
        ),
        "s2:granule_id": f"{sat}_OPER_MSI_L2A_TL_{ps}_{gen}_A{abs_orbit:06d}_T{w.tile}_N{bl}",
        "s2:datastrip_id": f"{sat}_OPER_MSI_L2A_DS_{ps}_{gen}_S{acq}_N{bl}",
        "s2:datatake_id": f"G{sat}_{acq}_{abs_orbit:06d}_N{bl}",
        "s2:datatake_type": "INS-NOBS",
        "s2:generation_time": f"{sc.generated:%Y-%m-%dT%H:%M:%S}.000000Z",
        "s2:degraded_msi_data_percentage": 0.0,
        "s2:reflectance_conversion_factor": round(
            1.0 / (1 - 0.01673 * math.cos(0.0172 * (doy - 4))) ** 2, 12
        ),
    }
    for k, v in stats.items():
        props.setdefault(k, v)
    assets: dict[str, Any] = {}
    for band in spec.bands:
        res = _band_res(band)
        n = spec.window_m // res
        tmpl = ia.get(band, {})
        a: dict[str, Any] = {
            "href": _rel_path(sc, band),
            "title": tmpl.get("title", band),
            "type": _COG_TYPE,
            "roles": ["data"],
            "proj:bbox": [w.left, w.bottom, w.right, w.top],
            "proj:shape": [n, n],
            "proj:transform": [float(res), 0.0, w.left, 0.0, -float(res), w.top],
            "gsd": float(res),
        }
        if "eo:bands" in tmpl:
            a["eo:bands"] = tmpl["eo:bands"]
        a["raster:bands"] = [
            {
                "nodata": 0,
                "data_type": "uint8" if band == "SCL" else "uint16",
                "spatial_resolution": float(res),
            }
        ]
        assets[band] = a
    base = f"{_PLACEHOLDER}/collections/sentinel-2-l2a"
    links = [
        {"href": base, "rel": "collection", "type": "application/json"},
        {"href": base, "rel": "parent", "type": "application/json"},
        {"href": f"{_PLACEHOLDER}/", "rel": "root", "type": "application/json"},
        {"href": f"{base}/items/{sc.item_id}", "rel": "self", "type": "application/geo+json"},
        {
            "href": "https://sentinel.esa.int/documents/247904/690755/Sentinel_Data_Legal_Notice",
            "rel": "license",
        },
    ]
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": list(_STAC_EXTENSIONS),
        "id": sc.item_id,
        "geometry": geom,
        "bbox": bbox,
        "properties": props,
        "links": links,
        "assets": assets,
        "collection": "sentinel-2-l2a",
    }


# --------------------------------------------------------------------------- writing


def _atomic_write_text(path: pathlib.Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`xsits.out.export.atomic_path`)."""
    from xsits.out.export import atomic_path

    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(text)


def _overview_count(n: int, blocksize: int) -> int:
    """Halvings until the overview fits one block (as GDAL's COG driver), at least one.

    Overviews smaller than a block are padded to a full block, so more would only cost time.
    """
    count = 1
    while (n >> count) > blocksize:
        count += 1
    return count


def _write_cog(path: pathlib.Path, arr: np.ndarray, w: _Window, res: int, spec: WorldSpec) -> None:
    import rasterio
    from affine import Affine

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp.tif")
    is_scl = arr.dtype == np.uint8
    with rasterio.open(
        tmp,
        "w",
        driver="COG",
        width=arr.shape[1],
        height=arr.shape[0],
        count=1,
        dtype=arr.dtype.name,
        crs=f"EPSG:{w.epsg}",
        transform=Affine(float(res), 0.0, w.left, 0.0, -float(res), w.top),
        nodata=0,
        blocksize=spec.blocksize,
        compress="DEFLATE",
        predictor=2,
        overview_count=_overview_count(arr.shape[0], spec.blocksize),
        overview_resampling="nearest" if is_scl else "average",
        num_threads=1,
    ) as ds:
        ds.write(arr, 1)
    os.replace(tmp, path)


def _make_window(
    w: _Window, scenes: list[_Scene], spec: WorldSpec, root: pathlib.Path, ia: dict
) -> list[dict]:
    land = _Landscape(w, spec)
    items = []
    for sc in scenes:
        arrays, stats = _scene_arrays(sc, land, spec)
        for band, arr in arrays.items():
            _write_cog(root / _rel_path(sc, band), arr, w, _band_res(band), spec)
        items.append(_item(sc, stats, spec, ia))
    return items


def _join(base: str, rel: str) -> str:
    return base + rel if base.endswith(("/", "\\")) else f"{base}/{rel}"


def _rehref(items: list[dict], base: str) -> list[dict]:
    out = json.loads(json.dumps(items))
    for it in out:
        for a in it["assets"].values():
            a["href"] = _join(base, a["href"])
    return out


# --------------------------------------------------------------------------- public


class World:
    """A generated synthetic world on disk: COGs under ``root`` and their STAC items.

    Do not build one directly; call :func:`make_world`.

    Attributes
    ----------
    root : pathlib.Path
        Directory holding the COGs (item hrefs are relative to it before rebasing).
    spec : WorldSpec
        The spec it was generated from.
    collection : dict
        The Planetary Computer ``sentinel-2-l2a`` collection document, extent updated,
        links pointing at a placeholder host.
    items_meta : list of dict
        One dict per item: ``id``, ``datetime``, ``solar_date``, ``platform``,
        ``relative_orbit``, ``partial_swath``, ``tile``, ``epsg``, ``bounds``
        (left, bottom, right, top in UTM), ``window``, ``points`` (indices into
        ``spec.points``), ``cloud_cover``, ``nodata_percentage``,
        ``processing_baseline``, ``offset`` (1000 or 0).
    windows : list of dict
        One dict per window: ``index``, ``epsg``, ``tile``, ``bounds``, ``points``,
        ``points_xy`` (UTM coordinates of those points), ``main_orbit``,
        ``partial_orbit``.

    Examples
    --------
    >>> import tempfile
    >>> spec = WorldSpec(points=((11.35, 48.05),), start="2024-06-01", end="2024-06-05")
    >>> world = make_world(tempfile.mkdtemp(), spec)
    >>> world.truth(world.items_meta[0]["id"], "B04").shape
    (256, 256)
    >>> world.windows[0]["epsg"], len(world.item_dicts("/data"))
    (32632, 1)
    """

    def __init__(self, root: pathlib.Path, spec: WorldSpec, items: list[dict]):
        self.root = pathlib.Path(root)
        self.spec = spec
        self._items = items
        windows = _plan_windows(spec)
        self.windows = [
            {
                "index": w.index,
                "epsg": w.epsg,
                "tile": w.tile,
                "bounds": (w.left, w.bottom, w.right, w.top),
                "points": w.points,
                "points_xy": w.points_xy,
                "main_orbit": w.main_orbit,
                "partial_orbit": w.partial_orbit,
            }
            for w in windows
        ]
        scenes = {s.item_id: s for s in _plan_scenes(spec, windows)}
        self.items_meta = []
        for it in items:
            sc = scenes[it["id"]]
            p = it["properties"]
            self.items_meta.append(
                {
                    "id": it["id"],
                    "datetime": p["datetime"],
                    "solar_date": sc.solar_date.isoformat(),
                    "platform": p["platform"],
                    "relative_orbit": p["sat:relative_orbit"],
                    "partial_swath": sc.partial,
                    "tile": p["s2:mgrs_tile"],
                    "epsg": p["proj:epsg"],
                    "bounds": (sc.window.left, sc.window.bottom, sc.window.right, sc.window.top),
                    "window": sc.window.index,
                    "points": sc.window.points,
                    "cloud_cover": p["eo:cloud_cover"],
                    "nodata_percentage": p["s2:nodata_pixel_percentage"],
                    "processing_baseline": p["s2:processing_baseline"],
                    "offset": sc.offset,
                }
            )
        coll = _collection_template()
        lons = [v for it in items for v in (it["bbox"][0], it["bbox"][2])]
        lats = [v for it in items for v in (it["bbox"][1], it["bbox"][3])]
        coll["extent"] = {
            "spatial": {"bbox": [[min(lons), min(lats), max(lons), max(lats)]]},
            "temporal": {
                "interval": [
                    [
                        min(m["datetime"] for m in self.items_meta),
                        max(m["datetime"] for m in self.items_meta),
                    ]
                ]
            },
        }
        base = f"{_PLACEHOLDER}/collections/sentinel-2-l2a"
        repl = {
            "items": f"{base}/items",
            "parent": f"{_PLACEHOLDER}/",
            "root": f"{_PLACEHOLDER}/",
            "self": base,
        }
        for link in coll.get("links", []):
            if link.get("rel") in repl:
                link["href"] = repl[link["rel"]]
        self.collection = coll

    def __repr__(self) -> str:
        return (
            f"World(root={str(self.root)!r}, windows={len(self.windows)}, items={len(self._items)})"
        )

    def item_dicts(self, href_base: str) -> list[dict]:
        """STAC item dicts with asset hrefs rebased on ``href_base``.

        Parameters
        ----------
        href_base
            Prefix of every asset href, e.g. ``"http://127.0.0.1:8123/"``, a directory
            path or a ``file://`` URI; a ``/`` is inserted if missing.

        Returns
        -------
        list of dict
            Fresh copies (safe to mutate), sorted by window then date.

        Examples
        --------
        >>> import tempfile
        >>> spec = WorldSpec(points=((11.35, 48.05),), start="2024-06-01", end="2024-06-05")
        >>> world = make_world(tempfile.mkdtemp(), spec)
        >>> world.item_dicts("http://127.0.0.1:8123")[0]["assets"]["SCL"]["href"][:39]
        'http://127.0.0.1:8123/32/U/PU/2024/06/0'
        """
        return _rehref(self._items, href_base)

    def write_item_collection(
        self, path: str | os.PathLike[str], href_base: str | None = None
    ) -> pathlib.Path:
        """Write the items as a GeoJSON FeatureCollection, atomically.

        Parameters
        ----------
        path
            Output ``.json`` / ``.geojson`` file.
        href_base
            Prefix of asset hrefs; default: absolute local paths under ``root``.
            The placeholder ``self`` links are dropped (pystac would otherwise resolve
            local paths against them).

        Returns
        -------
        pathlib.Path
            ``path``.

        Examples
        --------
        >>> import tempfile, pystac
        >>> spec = WorldSpec(points=((11.35, 48.05),), start="2024-06-01", end="2024-06-05")
        >>> d = tempfile.mkdtemp()
        >>> p = make_world(d, spec).write_item_collection(f"{d}/items.geojson")
        >>> len(pystac.ItemCollection.from_file(str(p)))
        1
        """
        path = pathlib.Path(path)
        base = href_base if href_base is not None else self.root.resolve().as_posix() + "/"
        features = self.item_dicts(base)
        for it in features:  # a static file has no self; pystac would resolve paths against it
            it["links"] = [ln for ln in it["links"] if ln["rel"] != "self"]
        fc = {"type": "FeatureCollection", "features": features}
        _atomic_write_text(path, json.dumps(fc))
        return path

    def asset_path(self, item_id: str, band: str) -> pathlib.Path:
        """Local path of one COG.

        Parameters
        ----------
        item_id
            An item id of this world.
        band
            An asset key in ``spec.bands``.

        Returns
        -------
        pathlib.Path

        Examples
        --------
        >>> import tempfile
        >>> spec = WorldSpec(points=((11.35, 48.05),), start="2024-06-01", end="2024-06-05")
        >>> world = make_world(tempfile.mkdtemp(), spec)
        >>> world.asset_path(world.items_meta[0]["id"], "SCL").name[-11:]
        'SCL_20m.tif'
        """
        for it in self._items:
            if it["id"] == item_id:
                if band not in it["assets"]:
                    raise KeyError(f"band {band!r} not in world bands {self.spec.bands}")
                return self.root / it["assets"][band]["href"]
        raise KeyError(f"item {item_id!r} is not in this world")

    def truth(self, item_id: str, band: str) -> np.ndarray:
        """The DN array written to one COG (read back with rasterio).

        Parameters
        ----------
        item_id
            An item id of this world.
        band
            An asset key in ``spec.bands``.

        Returns
        -------
        numpy.ndarray
            ``uint16`` (reflectance) or ``uint8`` (SCL), shape ``proj:shape``.

        Examples
        --------
        >>> import tempfile
        >>> spec = WorldSpec(points=((11.35, 48.05),), start="2024-06-01", end="2024-06-05")
        >>> world = make_world(tempfile.mkdtemp(), spec)
        >>> world.truth(world.items_meta[0]["id"], "SCL").dtype
        dtype('uint8')
        """
        import rasterio

        with rasterio.open(self.asset_path(item_id, band)) as ds:
            return ds.read(1)


def make_world(
    root: str | os.PathLike[str], spec: WorldSpec, *, workers: int | None = None
) -> World:
    """Generate (or reuse) a synthetic Sentinel-2 L2A world under ``root``.

    If ``root`` already holds a finished world of the identical spec (a manifest with
    the same :meth:`WorldSpec.key`, written last and atomically), nothing is rewritten.
    Otherwise all COGs are (re)written atomically and files of a previous, different
    world listed in its manifest are removed.

    Parameters
    ----------
    root
        Directory to write into (created if missing).
    spec
        What to generate.
    workers
        Threads writing windows in parallel; default ``min(8, os.cpu_count())``.

    Returns
    -------
    World

    Examples
    --------
    >>> import tempfile
    >>> spec = WorldSpec(points=((11.35, 48.05), (12.5, 41.9)), start="2024-06-01",
    ...                  end="2024-06-30", bands=("B04", "B08", "SCL"))
    >>> world = make_world(tempfile.mkdtemp(), spec)
    >>> len(world.items_meta), sorted({m["epsg"] for m in world.items_meta})
    (12, [32632, 32633])
    """
    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / _MANIFEST
    key = spec.key()
    old_files: list[str] = []
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            manifest = {}
        if manifest.get("key") == key and (root / _ITEMS).exists():
            try:
                items = json.loads((root / _ITEMS).read_text())
                return World(root, spec, items)
            except (OSError, ValueError, KeyError):
                pass
        old_files = list(manifest.get("files", []))
        manifest_path.unlink(missing_ok=True)

    windows = _plan_windows(spec)
    scenes = _plan_scenes(spec, windows)
    ia = _collection_template().get("item_assets", {})
    by_window: dict[int, list[_Scene]] = {}
    for sc in scenes:
        by_window.setdefault(sc.window.index, []).append(sc)
    n_workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        futures = [
            pool.submit(_make_window, w, by_window.get(w.index, []), spec, root, ia)
            for w in windows
        ]
        items = [it for f in futures for it in f.result()]

    files = sorted({a["href"] for it in items for a in it["assets"].values()})
    keep = set(files) | {_ITEMS, _MANIFEST}
    for rel in old_files:
        if rel not in keep and not os.path.isabs(rel) and ".." not in rel.split("/"):
            (root / rel).unlink(missing_ok=True)
    _atomic_write_text(root / _ITEMS, json.dumps(items))
    _atomic_write_text(
        manifest_path,
        json.dumps(
            {
                "key": key,
                "version": GENERATOR_VERSION,
                "spec": dataclasses.asdict(spec),
                "files": files,
            },
            indent=1,
        ),
    )
    return World(root, spec, items)
