"""The pixels of a synthetic Sentinel-2 L2A scene: its window's landscape and its band arrays.

What the pixels look like
-------------------------
* a landscape of rotated crop parcels (summer crops, winter crops, grassland, forest,
  bare soil) with a seasonal vegetation curve per parcel (hemisphere aware), plus a lake;
  the window centre always lies in a summer-crop parcel;
* per scene: cloud blobs (SCL 8/9, bright), their shadows (SCL 3, dark, cast away from
  the sun), thin cirrus (SCL 10), snow patches on some winter scenes (SCL 11), a few
  unclassified (7) and, rarely, saturated (1) pixels;
* a partial-swath scene (:attr:`xsits.testing.scenes.Scene.partial`) has its swath edge cut
  a corner of the window diagonally: SCL 0 and reflectance 0 there (the window centre is
  always valid);
* reflectance DN = round(reflectance * 10000) + 1000 for processing baseline >= 04.00
  (:attr:`xsits.testing.scenes.Scene.offset`), without the offset before.

``eo:cloud_cover`` and every ``s2:*_percentage`` are computed from the SCL array made here:
class percentages are relative to the valid (non-zero) SCL pixels,
``s2:nodata_pixel_percentage`` is relative to all pixels of the window.

Owns: :class:`Landscape` (a window's static surface) and :func:`scene_arrays` (one
scene's band arrays and SCL statistics), deterministic from ``WorldSpec.seed``.
Must not: plan windows or dates (:mod:`xsits.testing.scenes`), write files or item JSON
(:mod:`xsits.testing.world`).

Examples
--------
>>> from xsits.testing.scenes import WorldSpec, plan_scenes, plan_windows
>>> spec = WorldSpec(points=((11.35, 48.05),), start="2024-06-01", end="2024-06-01")
>>> window = plan_windows(spec)[0]
>>> arrays, stats = scene_arrays(plan_scenes(spec, [window])[0], Landscape(window, spec), spec)
>>> arrays["B04"].shape, arrays["SCL"].shape, arrays["SCL"].dtype.name
((256, 256), (128, 128), 'uint8')
>>> 0 <= stats["eo:cloud_cover"] <= 100
True
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np

from xsits.testing.scenes import BANDS_10M, Scene, Window, WorldSpec, solar_angles

__all__ = ["Landscape", "scene_arrays", "scl_properties"]

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
_K = 4096  # size of the parcel parameter table (parcels are hashed into it)

# parcel types
_SUMMER, _WINTER, _GRASS, _FOREST, _BARE = 0, 1, 2, 3, 4


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


class Landscape:
    """Static per-window surface, evaluated at 10 m and 20 m pixel centres."""

    def __init__(self, w: Window, spec: WorldSpec):
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
        """Vegetation fraction (0..0.95) of every parcel on ``day``, by parcel id."""
        doy = day.timetuple().tm_yday + (182 if self.south else 0)
        d = (doy - self.peak + 182.5) % 365.0 - 182.5
        f = self.fmin + (self.fmax - self.fmin) * np.exp(-0.5 * (d / self.width) ** 2)
        return np.clip(f, 0.0, 0.95).astype(np.float32)


def scene_arrays(
    sc: Scene, land: Landscape, spec: WorldSpec
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """All band arrays of one scene and the SCL statistics."""
    w = sc.window
    rng = np.random.default_rng([spec.seed, 2, w.index, sc.index])
    m = float(spec.window_m)
    n20 = spec.window_m // 20
    doy = sc.solar_date.timetuple().tm_yday + (182 if w.lat < 0 else 0)
    winter = (doy % 365) < 60 or (doy % 365) > 335
    zen, az = solar_angles(w.lat, sc.solar_date)

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

    stats = scl_properties(scl, zen, az)
    return out, stats


# --------------------------------------------------------------------------- items


def scl_properties(scl: np.ndarray, zen: float, az: float) -> dict[str, float]:
    """A Sentinel-2 item's SCL statistics (``eo:cloud_cover``, ``s2:*_percentage``) and sun.

    Class percentages are relative to the valid (non-zero) SCL pixels, as ESA's; the nodata
    percentage to all pixels.

    Examples
    --------
    >>> scl = np.array([[0, 4], [9, 4]], dtype="uint8")
    >>> p = scl_properties(scl, 30.0, 150.0)
    >>> [round(p[k], 2) for k in ("eo:cloud_cover", "s2:nodata_pixel_percentage",
    ...                           "s2:vegetation_percentage")]
    [33.33, 25.0, 66.67]
    """
    counts = np.bincount(scl.ravel(), minlength=12)
    total = int(scl.size)
    valid = total - int(counts[0])

    def pct(*classes: int) -> float:
        return 100.0 * float(sum(int(counts[c]) for c in classes)) / valid if valid else 0.0

    return {
        "eo:cloud_cover": pct(8, 9, 10),
        "s2:nodata_pixel_percentage": 100.0 * float(counts[0]) / total,
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
