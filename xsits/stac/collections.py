"""The collection registry: the one place a collection is described.

Each :class:`Collection` entry says, once, what xsits knows of a collection: its bands
(:class:`Band`: name, provider asset keys, common name, dtype, nodata, scale / offset,
role), the providers serving it (:class:`Source`: API, collection id there, band naming,
requester-pays, credentials), its mask band and rule (:class:`MaskRule`: SCL classes, or
QA bits as in the items' ``classification:bitfields``), its harmonization rule, its
date-grouping key and the bands standing for the cross-sensor names (``blue`` ... ``swir22``)
when sensors are combined. A new collection is one entry in :data:`COLLECTIONS` (and its
test world, see CONTRIBUTING.md).

Owns: the entries (:data:`COLLECTIONS`), finding an entry by any of its collection ids at any
provider (:func:`lookup`), a band by any of its names (:meth:`Collection.band`), an asset's
own scale / offset (:func:`asset_scale`, from its items' ``raster:bands``), whether its items
say how cloudy they are (:func:`has_cloud_cover`).
Must not: make requests or read pixels (:mod:`xsits.stac.providers` reads item
dialects, :mod:`xsits.ops.mask` applies the mask rules).

Examples
--------
>>> s2 = lookup("sentinel-2-c1-l2a")
>>> s2.id, s2.band("red").name, s2.band("B04").keys["earth-search"]
('sentinel-2-l2a', 'B04', 'red')
>>> ls = lookup("landsat-c2-l2")
>>> ls.band("red").scale, ls.band("red").offset, ls.mask.band
(2.75e-05, -0.2, 'qa_pixel')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

Role = Literal["reflectance", "atmosphere", "mask", "qa", "temperature", "angle",
               "backscatter"]
#: Cross-sensor band names of a combined cube (:func:`xsits.ops.combine.combine`).
COMMON_BANDS = ("blue", "green", "red", "nir", "swir16", "swir22")
#: The keys a :attr:`Collection.group_by` may add to the solar day, and the item property
#: each reads (STAC ``sat`` extension).
GROUP_KEYS = {"orbit_state": "sat:orbit_state", "relative_orbit": "sat:relative_orbit"}


def _frozen(mapping: Mapping | None = None) -> Mapping:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Band:
    """One band of a collection.

    Attributes
    ----------
    name
        Its name in xsits (the asset key of the collection's first naming scheme: ``B04``,
        ``red``, ``qa_pixel``, ``Fmask``).
    common
        Its STAC ``eo:bands`` common name (``red``, ``nir08``), or None.
    dtype, nodata
        The files' data type and nodata value.
    scale, offset
        Physical value = DN * scale + offset (surface reflectance 0..1, temperature, degrees),
        used when the items' ``raster:bands`` say nothing.
    role
        ``reflectance`` (scaled and masked), ``mask`` (the mask band, never converted),
        ``qa`` (other bit / class bands, never converted), ``atmosphere``, ``temperature``,
        ``angle``, ``backscatter``.
    keys
        ``{naming scheme: asset key}`` where a provider names it otherwise (Earth Search's
        ``red`` for Sentinel-2's ``B04``).

    Examples
    --------
    >>> Band("B04", "red", scale=1e-4).keys
    mappingproxy({})
    """

    name: str
    common: str | None = None
    dtype: str = "uint16"
    nodata: float | int | None = 0
    scale: float = 1.0
    offset: float = 0.0
    role: Role = "reflectance"
    keys: Mapping[str, str] = field(default_factory=_frozen)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", _frozen(self.keys))

    def key(self, naming: str | None) -> str:
        """The asset key under a naming scheme (its name when the scheme has no other)."""
        return self.keys.get(naming or "", self.name)

    @property
    def names(self) -> tuple[str, ...]:
        """Every name it answers to: its name and asset keys (any case)."""
        return (self.name, *self.keys.values())


@dataclass(frozen=True)
class BitFlag:
    """A field of a QA band (``classification:bitfields``) and the values that mask a pixel.

    Examples
    --------
    >>> BitFlag("cloud", 3).masks(0b1000), BitFlag("cloud_confidence", 8, 2, (3,)).masks(0)
    (True, False)
    """

    name: str
    offset: int
    length: int = 1
    values: tuple[int, ...] = (1,)

    def masks(self, value: int) -> bool:
        """Whether this flag masks a pixel of QA ``value`` (one integer)."""
        return ((int(value) >> self.offset) & ((1 << self.length) - 1)) in self.values


@dataclass(frozen=True)
class MaskRule:
    """How a collection's mask band says a pixel is unusable.

    ``classes``: the pixel's class is one of ``classes`` (Sentinel-2 SCL). ``bits``: any of
    ``flags`` masks it (Landsat ``qa_pixel``, HLS ``Fmask``); ``fill`` is the band's fill value
    (masked too). ``buffer`` names the flags :func:`xsits.ops.mask.cloud_mask`'s ``dilate=``
    grows (clouds and their shadows).
    """

    band: str
    kind: Literal["classes", "bits"]
    classes: tuple[int, ...] = ()
    flags: tuple[BitFlag, ...] = ()
    fill: int | None = None
    buffer: tuple = ()

    def describe(self) -> str:
        """One line for the history attribute.

        Examples
        --------
        >>> lookup("landsat-c2-l2").mask.describe()[:40]
        'qa_pixel bits fill, dilated_cloud, cirru'
        """
        if self.kind == "classes":
            return f"{self.band} in {self.classes}"
        return f"{self.band} bits {', '.join(f.name for f in self.flags)}"


@dataclass(frozen=True)
class Source:
    """Where a provider serves a collection.

    Attributes
    ----------
    stac
        The STAC API: a preset of :data:`xsits.stac.providers.PRESETS`.
    collection
        The collection id at that provider.
    naming
        The band naming scheme of its asset keys (a key of :attr:`Band.keys`, else the
        band names).
    requester_pays
        Its files are in requester-pays S3 buckets (the AWS credentials pay).
    auth
        The credentials its files need: ``"pc-sas"`` (Planetary Computer SAS tokens, signed
        when read), ``"earthdata"`` (a bearer token from ``$EARTHDATA_TOKEN``), or None.
    """

    stac: str
    collection: str
    naming: str = ""
    requester_pays: bool = False
    auth: str | None = None


@dataclass(frozen=True)
class Collection:
    """One collection: its bands, providers, mask, harmonization, date grouping.

    Attributes
    ----------
    id
        The preset name (``collection="landsat-c2-l2"``).
    title
        Platform / sensor label of its dates in a combined cube (``sensor`` coordinate).
    bands
        Its bands (:class:`Band`).
    default_bands
        The bands loaded when none are asked.
    sources
        ``{provider: Source}``.
    aliases
        Other ids of the same product (older or other providers' ids).
    mask
        Its cloud-mask rule, or None.
    harmonize
        ``"s2-boa-offset"`` (the +1000 DN offset of processing baseline >= 04.00,
        :mod:`xsits.ops.harmonize`) or None.
    group_by
        Date grouping: ``"solar_day"``, or ``"solar_day+orbit_state"`` (never fuse ascending
        and descending passes): the solar day, then the item properties of
        :data:`GROUP_KEYS` (:attr:`split_by`).
    common_bands
        ``{cross-sensor name: band name}`` (``nir``: the band matching Landsat OLI band 5).
    date_coords
        Per-date coordinates of its own: ``{coordinate: (item property, default)}``; the
        default's type is the coordinate's (``-1``: an integer, on dates whose items
        disagree or lack it), see :func:`xsits.cube.dates.time_coords`.
    cloud_cover
        Its items carry ``eo:cloud_cover`` (what ``max_cloud`` filters on); False for
        radar, whose items have none (:func:`has_cloud_cover`).
    sensors
        ``{platform (lower case): sensor label}`` where one collection holds several sensors
        (Landsat TM, ETM+, OLI); other platforms' dates are labelled :attr:`title`.
    """

    id: str
    title: str
    bands: tuple[Band, ...]
    default_bands: tuple[str, ...]
    sources: Mapping[str, Source] = field(default_factory=_frozen)
    aliases: tuple[str, ...] = ()
    mask: MaskRule | None = None
    harmonize: str | None = None
    group_by: str = "solar_day"
    common_bands: Mapping[str, str] = field(default_factory=_frozen)
    date_coords: Mapping[str, tuple[str, object]] = field(default_factory=_frozen)
    cloud_cover: bool = True
    sensors: Mapping[str, str] = field(default_factory=_frozen)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", _frozen(self.sources))
        object.__setattr__(self, "sensors", _frozen(self.sensors))
        object.__setattr__(self, "common_bands", _frozen(self.common_bands))
        object.__setattr__(self, "date_coords", _frozen(self.date_coords))
        first, *keys = self.group_by.split("+")
        if first != "solar_day" or any(k not in GROUP_KEYS for k in keys):
            raise ValueError(f"collection {self.id!r}: group_by {self.group_by!r} is not "
                             f"'solar_day' followed by '+' and any of {sorted(GROUP_KEYS)}")
        index: dict[str, Band] = {}
        for band in self.bands:
            for name in band.names:
                index.setdefault(name.lower(), band)
        object.__setattr__(self, "_index", index)

    @property
    def ids(self) -> tuple[str, ...]:
        """Every collection id it is known by (its own, its providers', its aliases)."""
        own = (self.id, *(s.collection for s in self.sources.values()), *self.aliases)
        return tuple(dict.fromkeys(own))

    def band(self, name: object) -> Band | None:
        """The band named ``name`` under any of its names (any case), else None."""
        return self._index.get(str(name).lower())  # type: ignore[attr-defined]

    def names(self, role: Role) -> frozenset[str]:
        """The names of its bands of ``role``."""
        return frozenset(b.name for b in self.bands if b.role == role)

    @property
    def split_by(self) -> tuple[str, ...]:
        """The item properties that split a solar day into dates (from :attr:`group_by`).

        Examples
        --------
        >>> SENTINEL_1_RTC.split_by, SENTINEL_2_L2A.split_by
        (('sat:orbit_state',), ())
        """
        return tuple(GROUP_KEYS[k] for k in self.group_by.split("+")[1:])


# --------------------------------------------------------------------------- Sentinel-2

def _s2(name: str, es: str, common: str | None, role: Role = "reflectance",
        dtype: str = "uint16", scale: float = 1e-4) -> Band:
    return Band(name, common, dtype, 0, scale, 0.0, role, {"earth-search": es})


#: Sentinel-2 L2A: ESA's band ids, Earth Search's asset keys. Reflectance scale after
#: harmonization (:mod:`xsits.ops.harmonize` removes the +1000 offset first).
SENTINEL_2_L2A = Collection(
    id="sentinel-2-l2a",
    title="Sentinel-2 MSI",
    bands=(
        _s2("B01", "coastal", "coastal"), _s2("B02", "blue", "blue"),
        _s2("B03", "green", "green"), _s2("B04", "red", "red"),
        _s2("B05", "rededge1", "rededge"), _s2("B06", "rededge2", "rededge"),
        _s2("B07", "rededge3", "rededge"), _s2("B08", "nir", "nir"),
        _s2("B8A", "nir08", "nir08"), _s2("B09", "nir09", "nir09"),
        _s2("B11", "swir16", "swir16"), _s2("B12", "swir22", "swir22"),
        _s2("SCL", "scl", None, "mask", "uint8", 1.0),
        _s2("AOT", "aot", None, "atmosphere", scale=1e-3),
        _s2("WVP", "wvp", None, "atmosphere", scale=1e-3),
    ),
    default_bands=("B03", "B04", "B08", "SCL"),
    sources={
        "planetary-computer": Source("planetary-computer", "sentinel-2-l2a", "band-id",
                                     auth="pc-sas"),
        "earth-search": Source("earth-search", "sentinel-2-l2a", "earth-search"),
        "earth-search-c1": Source("earth-search", "sentinel-2-c1-l2a", "earth-search"),
        "earth-search-v0": Source("https://earth-search.aws.element84.com/v0",
                                  "sentinel-s2-l2a-cogs", "band-id"),
    },
    mask=MaskRule("SCL", "classes", classes=(0, 1, 3, 8, 9, 10), buffer=(3, 8, 9, 10)),
    harmonize="s2-boa-offset",
    common_bands={"blue": "B02", "green": "B03", "red": "B04", "nir": "B8A",
                  "swir16": "B11", "swir22": "B12"},
)

# --------------------------------------------------------------------------- Landsat

_L_SR = dict(scale=2.75e-05, offset=-0.2)
#: Landsat Collection 2 ``QA_PIXEL`` as in the items' ``classification:bitfields``; the
#: values masking a pixel: the flags set, high confidence (cloud: medium or high).
LANDSAT_QA_PIXEL = (
    BitFlag("fill", 0), BitFlag("dilated_cloud", 1), BitFlag("cirrus", 2),
    BitFlag("cloud", 3), BitFlag("cloud_shadow", 4), BitFlag("snow", 5),
    BitFlag("cloud_confidence", 8, 2, (2, 3)), BitFlag("cloud_shadow_confidence", 10, 2, (3,)),
    BitFlag("snow_confidence", 12, 2, (3,)), BitFlag("cirrus_confidence", 14, 2, (3,)),
)

LANDSAT_C2_L2 = Collection(
    id="landsat-c2-l2",
    title="Landsat OLI",
    sensors={"landsat-4": "Landsat TM", "landsat-5": "Landsat TM",
             "landsat-7": "Landsat ETM+"},
    bands=(
        Band("coastal", "coastal", **_L_SR), Band("blue", "blue", **_L_SR),
        Band("green", "green", **_L_SR), Band("red", "red", **_L_SR),
        Band("nir08", "nir08", **_L_SR), Band("swir16", "swir16", **_L_SR),
        Band("swir22", "swir22", **_L_SR),
        Band("lwir11", "lwir11", scale=0.00341802, offset=149.0, role="temperature"),
        Band("qa_pixel", None, nodata=1, role="mask"),
        Band("qa_radsat", None, nodata=None, role="qa"),
        Band("qa_aerosol", None, dtype="uint8", nodata=1, role="qa"),
    ),
    default_bands=("green", "red", "nir08", "qa_pixel"),
    sources={
        "planetary-computer": Source("planetary-computer", "landsat-c2-l2", auth="pc-sas"),
        "earth-search": Source("earth-search", "landsat-c2-l2", requester_pays=True),
    },
    mask=MaskRule("qa_pixel", "bits", flags=LANDSAT_QA_PIXEL, fill=1,
                  buffer=("dilated_cloud", "cirrus", "cloud", "cloud_shadow",
                          "cloud_confidence")),
    common_bands={"blue": "blue", "green": "green", "red": "red", "nir": "nir08",
                  "swir16": "swir16", "swir22": "swir22"},
)

# --------------------------------------------------------------------------- HLS

_H_SR = dict(dtype="int16", nodata=-9999, scale=1e-4)
_H_ANGLE = dict(nodata=40000, scale=0.01, role="angle")
#: HLS v2.0 ``Fmask`` (HLS v2.0 User Guide, table 9): bit 0 cirrus (reserved), 1 cloud,
#: 2 adjacent to cloud / shadow, 3 cloud shadow, 4 snow / ice, 5 water, 6-7 aerosol level.
HLS_FMASK = (BitFlag("cirrus", 0), BitFlag("cloud", 1), BitFlag("adjacent", 2),
             BitFlag("cloud_shadow", 3), BitFlag("snow", 4))
_HLS_MASK = MaskRule("Fmask", "bits", flags=HLS_FMASK, fill=255,
                     buffer=("cirrus", "cloud", "adjacent", "cloud_shadow"))
_HLS_QA = (Band("Fmask", None, "uint8", 255, role="mask"),
           Band("SZA", None, **_H_ANGLE), Band("SAA", None, **_H_ANGLE),
           Band("VZA", None, **_H_ANGLE), Band("VAA", None, **_H_ANGLE))

HLS2_S30 = Collection(
    id="hls2-s30",
    title="HLS Sentinel-2 MSI",
    bands=(
        Band("B01", "coastal", **_H_SR), Band("B02", "blue", **_H_SR),
        Band("B03", "green", **_H_SR), Band("B04", "red", **_H_SR),
        Band("B05", "rededge", **_H_SR), Band("B06", "rededge", **_H_SR),
        Band("B07", "rededge", **_H_SR), Band("B08", "nir", **_H_SR),
        Band("B8A", "nir08", **_H_SR), Band("B09", "nir09", **_H_SR),
        Band("B10", "cirrus", **_H_SR), Band("B11", "swir16", **_H_SR),
        Band("B12", "swir22", **_H_SR), *_HLS_QA,
    ),
    default_bands=("B03", "B04", "B8A", "Fmask"),
    sources={
        "planetary-computer": Source("planetary-computer", "hls2-s30", auth="pc-sas"),
        "nasa": Source("nasa-lpcloud", "HLSS30_2.0", auth="earthdata"),
    },
    aliases=("HLSS30.v2.0",),
    mask=_HLS_MASK,
    common_bands={"blue": "B02", "green": "B03", "red": "B04", "nir": "B8A",
                  "swir16": "B11", "swir22": "B12"},
)

HLS2_L30 = Collection(
    id="hls2-l30",
    title="HLS Landsat OLI",
    bands=(
        Band("B01", "coastal", **_H_SR), Band("B02", "blue", **_H_SR),
        Band("B03", "green", **_H_SR), Band("B04", "red", **_H_SR),
        Band("B05", "nir08", **_H_SR), Band("B06", "swir16", **_H_SR),
        Band("B07", "swir22", **_H_SR), Band("B09", "cirrus", **_H_SR),
        Band("B10", "lwir11", "int16", -9999, 0.01, role="temperature"),
        Band("B11", "lwir12", "int16", -9999, 0.01, role="temperature"), *_HLS_QA,
    ),
    default_bands=("B03", "B04", "B05", "Fmask"),
    sources={
        "planetary-computer": Source("planetary-computer", "hls2-l30", auth="pc-sas"),
        "nasa": Source("nasa-lpcloud", "HLSL30_2.0", auth="earthdata"),
    },
    aliases=("HLSL30.v2.0",),
    mask=_HLS_MASK,
    common_bands={"blue": "B02", "green": "B03", "red": "B04", "nir": "B05",
                  "swir16": "B06", "swir22": "B07"},
)

# --------------------------------------------------------------------------- Sentinel-1

#: Sentinel-1 RTC (Planetary Computer): radiometrically terrain-corrected gamma naught,
#: linear power, float32 with nodata -32768 (loaded as NaN, :func:`xsits.cube.plan.nan_fill`);
#: no cloud mask and no ``eo:cloud_cover`` (radar sees through clouds). An ascending and a
#: descending pass over a place on one solar day are two dates, each with its orbit state
#: and relative orbit.
SENTINEL_1_RTC = Collection(
    id="sentinel-1-rtc",
    title="Sentinel-1 C-SAR",
    bands=(Band("vv", None, "float32", -32768, role="backscatter"),
           Band("vh", None, "float32", -32768, role="backscatter")),
    default_bands=("vv", "vh"),
    sources={"planetary-computer": Source("planetary-computer", "sentinel-1-rtc",
                                          auth="pc-sas")},
    mask=None,
    group_by="solar_day+orbit_state",
    date_coords={"orbit_state": ("sat:orbit_state", ""),
                 "relative_orbit": ("sat:relative_orbit", -1)},
    cloud_cover=False,
)

#: Every collection xsits knows, by preset name.
COLLECTIONS: dict[str, Collection] = {
    c.id: c for c in (SENTINEL_2_L2A, LANDSAT_C2_L2, HLS2_S30, HLS2_L30, SENTINEL_1_RTC)
}


def register(entry: Collection) -> None:
    """Add (or replace) a collection entry.

    Examples
    --------
    >>> register(Collection("my-l2", "My sensor", (Band("red", "red"),), ("red",)))
    >>> lookup("my-l2").default_bands
    ('red',)
    >>> del COLLECTIONS["my-l2"]
    """
    COLLECTIONS[entry.id] = entry


#: Bands that hold classes or flags, never reflectance: never scaled, masked or harmonized.
#: Every collection's mask and QA bands (each of their names, as written and lower case) and
#: the label bands.
CLASS_BANDS: frozenset[str] = frozenset(
    {n for c in COLLECTIONS.values() for b in c.bands if b.role in ("mask", "qa")
     for name in b.names for n in (name, name.lower())} | {"mask", "label", "labels"})


def lookup(collection: str | None) -> Collection | None:
    """The entry of a collection id at any provider (``HLSS30_2.0`` -> ``hls2-s30``), else None.

    Examples
    --------
    >>> lookup("sentinel-s2-l2a-cogs").id, lookup("HLSS30.v2.0").id, lookup("other") is None
    ('sentinel-2-l2a', 'hls2-s30', True)
    """
    if not collection:
        return None
    if collection in COLLECTIONS:
        return COLLECTIONS[collection]
    return next((c for c in COLLECTIONS.values() if collection in c.ids), None)


def source_of(entry: Collection, stac: str, collection: str) -> Source | None:
    """The source of ``entry`` at API ``stac`` (a preset) serving id ``collection``, else None.

    Examples
    --------
    >>> source_of(SENTINEL_2_L2A, "earth-search", "sentinel-2-c1-l2a").naming
    'earth-search'
    """
    return next((s for s in entry.sources.values()
                 if s.stac == stac and s.collection == collection), None)


def asset_scale(items: Sequence, asset: str) -> dict[str, float]:
    """``scale`` / ``offset`` of an asset's ``raster:bands`` (the first item that has it).

    Examples
    --------
    >>> import datetime as dt, pystac
    >>> it = pystac.Item("a", None, None, dt.datetime(2024, 1, 1), {})
    >>> it.add_asset("red", pystac.Asset("/r.tif", extra_fields={"raster:bands": [
    ...     {"scale": 2.75e-05, "offset": -0.2, "nodata": 0}]}))
    >>> asset_scale([it], "red"), asset_scale([it], "nir")
    ({'scale': 2.75e-05, 'offset': -0.2}, {})
    """
    key = asset.split(".")[0]
    for it in items:
        if key in it.assets:
            bands = it.assets[key].extra_fields.get("raster:bands") or [{}]
            return {k: float(bands[0][k]) for k in ("scale", "offset") if k in bands[0]}
    return {}


def date_split(collection: str | None) -> tuple[str, ...]:
    """The item properties splitting a solar day into dates for ``collection`` (any id).

    Examples
    --------
    >>> date_split("sentinel-1-rtc"), date_split("sentinel-2-l2a"), date_split(None)
    (('sat:orbit_state',), (), ())
    """
    entry = lookup(collection)
    return entry.split_by if entry is not None else ()


def date_coords(collection: str | None) -> Mapping[str, tuple[str, object]]:
    """The per-date coordinates of ``collection`` (any id) beyond every cube's.

    Examples
    --------
    >>> dict(date_coords("sentinel-1-rtc"))["relative_orbit"], dict(date_coords("other"))
    (('sat:relative_orbit', -1), {})
    """
    entry = lookup(collection)
    return entry.date_coords if entry is not None else _frozen()


def has_cloud_cover(collection: str | None) -> bool:
    """Whether the items of ``collection`` (any id) may carry ``eo:cloud_cover``.

    False only for a registry collection whose items have none (Sentinel-1 RTC); a
    collection outside the registry may have it.

    Examples
    --------
    >>> has_cloud_cover("sentinel-1-rtc"), has_cloud_cover("HLSS30.v2.0"), has_cloud_cover("x")
    (False, True, True)
    """
    entry = lookup(collection)
    return entry is None or entry.cloud_cover
