"""Where and when a synthetic Sentinel-2 L2A world's scenes are: its spec, windows and dates.

The world (:func:`xsits.testing.world.make_world`) covers a list of places (lon, lat).  Each
place gets a square window of a real-looking MGRS tile in its own UTM zone, and every
``revisit_days`` one scene per window; this module plans those windows and scenes, the
pixels are :mod:`xsits.testing.pixels`', the COGs and STAC items :mod:`xsits.testing.world`'s.

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
* every 4th date (index 3, 7, 11, ...) is acquired from a second, *partial-swath* relative
  orbit; dates on or after ``WorldSpec.baseline_switch`` get processing baseline >= 04.00
  and the +1000 DN offset.
* Not handled: windows crossing the antimeridian (bbox would wrap), polar regions.

Owns: :class:`WorldSpec` (and :data:`GENERATOR_VERSION`, part of its reuse key), the band
lists, the window plan (:func:`plan_windows`, :func:`footprint`) and the scene plan
(:func:`plan_scenes`, :func:`solar_angles`).
Must not: make pixel arrays (:mod:`xsits.testing.pixels`) or write files and item JSON
(:mod:`xsits.testing.world`).

Examples
--------
>>> spec = WorldSpec(points=((11.35, 48.05),), start="2024-06-01", end="2024-06-10")
>>> [w.tile for w in plan_windows(spec)]
['32UPU']
>>> [sc.item_id[:26] for sc in plan_scenes(spec, plan_windows(spec))]
['S2A_MSIL2A_20240601T094436', 'S2B_MSIL2A_20240606T094436']
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from pyproj import Transformer

__all__ = [
    "ALL_BANDS",
    "BANDS_10M",
    "BANDS_20M",
    "GENERATOR_VERSION",
    "Scene",
    "Window",
    "WorldSpec",
    "footprint",
    "plan_scenes",
    "plan_windows",
    "solar_angles",
]

#: Bumped whenever the generator's output changes; part of the reuse key.
GENERATOR_VERSION = "2"

BANDS_10M = ("B02", "B03", "B04", "B08")
BANDS_20M = ("B05", "B06", "B07", "B8A", "B11", "B12", "SCL")
ALL_BANDS = BANDS_10M + BANDS_20M

_LAT_BANDS = "CDEFGHJKLMNPQRSTUVWX"
_COL_SETS = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")
_ROW_LETTERS = "ABCDEFGHJKLMNPQRSTUV"


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
class Window:
    """One place's square UTM window on a real-looking MGRS tile (see :func:`plan_windows`).

    ``left, bottom, right, top`` are UTM metres in ``epsg``; ``points`` index
    ``WorldSpec.points`` (``points_xy``: their UTM coordinates); ``main_orbit`` /
    ``partial_orbit`` are the relative orbits of its full and partial-swath dates.
    """

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


def plan_windows(spec: WorldSpec) -> list[Window]:
    """The windows of a spec's places, in order; nearby places share one.

    Parameters
    ----------
    spec
        The world's spec.

    Returns
    -------
    list of Window

    Examples
    --------
    >>> ws = plan_windows(WorldSpec(points=((11.35, 48.05), (11.351, 48.05), (-105.1, 40.0))))
    >>> [(w.tile, w.epsg, w.points) for w in ws]
    [('32UPU', 32632, (0, 1)), ('13TDE', 32613, (2,))]
    """
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
            Window(
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


def footprint(w: Window) -> tuple[dict[str, Any], list[float]]:
    """A window's GeoJSON polygon (4 points per side) and bbox in EPSG:4326.

    Parameters
    ----------
    w
        A window of :func:`plan_windows`.

    Returns
    -------
    tuple of (dict, list of float)

    Examples
    --------
    >>> geom, bbox = footprint(plan_windows(WorldSpec(points=((11.35, 48.05),)))[0])
    >>> len(geom["coordinates"][0]), bbox[0] < 11.35 < bbox[2]
    (17, True)
    """
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
class Scene:
    """One acquisition of one window (see :func:`plan_scenes`): date, ids, baseline, offset."""

    window: Window
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


def plan_scenes(spec: WorldSpec, windows: list[Window]) -> list[Scene]:
    """Every scene of every window: one per ``revisit_days`` from ``start`` to ``end``.

    Parameters
    ----------
    spec
        The world's spec.
    windows
        Its windows (:func:`plan_windows`).

    Returns
    -------
    list of Scene
        Window by window, then by date; item ids are unique.

    Examples
    --------
    >>> spec = WorldSpec(points=((11.35, 48.05),), start="2022-01-20", end="2022-02-04")
    >>> [(sc.partial, sc.baseline, sc.offset) for sc in plan_scenes(spec, plan_windows(spec))]
    [(False, '03.01', 0), (False, '04.00', 1000), (False, '04.00', 1000), (True, '04.00', 1000)]
    """
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
                Scene(
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


def solar_angles(lat: float, day: dt.date) -> tuple[float, float]:
    """Approximate solar zenith and azimuth (degrees) at ~10:30 local solar time.

    Parameters
    ----------
    lat
        Latitude, degrees.
    day
        The date.

    Returns
    -------
    tuple of float
        ``(zenith, azimuth)``.

    Examples
    --------
    >>> import datetime as dt
    >>> zen, az = solar_angles(48.05, dt.date(2024, 6, 21))
    >>> 20 < zen < 40, 100 < az < 180
    (True, True)
    """
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
