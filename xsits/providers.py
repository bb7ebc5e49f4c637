"""The STAC APIs xsits knows, and how each names the Sentinel-2 L2A bands.

Owns: the presets (:data:`PRESETS`) and ``stac="demo"``; recognising a provider by its API
root or its collection (:func:`naming`); the two naming schemes of Sentinel-2 L2A bands,
band ids (``B04``, ``SCL``: Planetary Computer, ESA, most catalogs) and Earth Search's asset
keys (``red``, ``scl``), and the translation of a band asked under either name to the
provider's asset key (:func:`asset_key`) or to the variable of a cube (:func:`find_band`).
Must not: make requests or read catalogs (:mod:`xsits.stac` does, and tells the naming of a
local catalog from its items with :func:`naming_of_assets`).

Examples
--------
>>> naming("https://earth-search.aws.element84.com/v1/", "sentinel-2-l2a")
'earth-search'
>>> asset_key("B04", "earth-search"), asset_key("scl", "band-id")
('red', 'SCL')
"""

from __future__ import annotations

import re
from collections.abc import Collection, Hashable, Mapping
from typing import Literal
from urllib.parse import urlsplit

#: Named STAC APIs (``stac="planetary-computer"``...).
PRESETS: dict[str, str] = {
    "planetary-computer": "https://planetarycomputer.microsoft.com/api/stac/v1",
    "earth-search": "https://earth-search.aws.element84.com/v1",
}
#: Names of the embedded offline demo world (:func:`xsits.demo.demo_catalog_path`).
DEMO_NAMES = frozenset({"demo", "xsits-demo"})

#: Sentinel-2 L2A band ids -> Earth Search v1 asset keys.
EARTH_SEARCH_KEYS: dict[str, str] = {
    "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1",
    "B06": "rededge2", "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09",
    "B11": "swir16", "B12": "swir22", "SCL": "scl", "AOT": "aot", "WVP": "wvp",
}
#: Collections of Sentinel-2 L2A scenes (their bands are checked before searching).
L2A_COLLECTIONS = frozenset({"sentinel-2-l2a", "sentinel-2-c1-l2a", "sentinel-s2-l2a-cogs"})

Naming = Literal["band-id", "earth-search"]

_BAND_IDS = {band.lower(): band for band in EARTH_SEARCH_KEYS}
_BAND_IDS.update({key: band for band, key in EARTH_SEARCH_KEYS.items()})
_HOSTS: dict[str, Naming] = {
    "earth-search.aws.element84.com": "earth-search",
    "planetarycomputer.microsoft.com": "band-id",
}
#: Collections whose provider names the bands one way wherever they are served.
_COLLECTIONS: dict[str, Naming] = {"sentinel-2-c1-l2a": "earth-search",
                                   "sentinel-s2-l2a-cogs": "band-id"}


def band_id(name: Hashable) -> str | None:
    """The Sentinel-2 band id of a band name in either scheme (any case), else None.

    Examples
    --------
    >>> band_id("red"), band_id("b8a"), band_id("SCL"), band_id("NDVI")
    ('B04', 'B8A', 'SCL', None)
    """
    return _BAND_IDS.get(str(name).lower())


def is_demo(stac: str) -> bool:
    """Whether ``stac`` names the embedded offline demo world.

    Examples
    --------
    >>> is_demo("demo"), is_demo("earth-search")
    (True, False)
    """
    return stac.strip().lower() in DEMO_NAMES


def resolve_stac(stac: str) -> str:
    """A preset's URL; the demo world's ItemCollection (generated on first use); else ``stac``.

    Examples
    --------
    >>> resolve_stac("earth-search")
    'https://earth-search.aws.element84.com/v1'
    >>> resolve_stac("http://127.0.0.1:8080/")
    'http://127.0.0.1:8080/'
    """
    if is_demo(stac):
        from xsits.demo import demo_catalog_path

        return str(demo_catalog_path())
    return PRESETS.get(stac, stac)


def naming(stac: str, collection: str) -> Naming | None:
    """How the provider of ``stac`` / ``collection`` names the bands; None when unknown.

    Earth Search (``earth-search.aws.element84.com``, or its ``sentinel-2-c1-l2a``
    collection anywhere) uses its own asset keys (``red``, ``scl``); Planetary Computer
    band ids (``B04``, ``SCL``). Recognised by preset, by API root or by collection.

    Examples
    --------
    >>> naming("earth-search", "sentinel-2-l2a"), naming("planetary-computer", "x")
    ('earth-search', 'band-id')
    >>> naming("http://127.0.0.1:8080", "sentinel-2-c1-l2a")
    'earth-search'
    >>> naming("http://127.0.0.1:8080", "sentinel-2-l2a") is None
    True
    """
    if collection in _COLLECTIONS:
        return _COLLECTIONS[collection]
    url = PRESETS.get(stac, stac)
    if not re.match(r"^https?://", url, re.IGNORECASE):
        return None
    host = (urlsplit(url).hostname or "").lower()
    return next((n for h, n in _HOSTS.items() if host == h or host.endswith("." + h)), None)


def naming_of_assets(keys: Collection[str]) -> Naming | None:
    """The naming scheme of an item's asset keys (a local catalog), None when neither.

    Examples
    --------
    >>> naming_of_assets(["red", "nir", "scl", "thumbnail"])
    'earth-search'
    >>> naming_of_assets(["B04", "SCL"]), naming_of_assets(["visual"])
    ('band-id', None)
    """
    ids = sum(k in EARTH_SEARCH_KEYS for k in keys)
    earth_search = sum(k in _BAND_IDS and k not in EARTH_SEARCH_KEYS and k.islower()
                       for k in keys)
    if not ids and not earth_search:
        return None
    return "earth-search" if earth_search > ids else "band-id"


def asset_key(band: str, scheme: Naming | None) -> str:
    """The asset key of ``band`` (asked under either name) at a provider naming ``scheme``.

    Bands that are not Sentinel-2 L2A bands, and every band of an unknown provider
    (``scheme=None``), keep the name asked.

    Examples
    --------
    >>> [asset_key(b, "earth-search") for b in ("B04", "red", "SCL")]
    ['red', 'red', 'scl']
    >>> [asset_key(b, "band-id") for b in ("nir", "scl", "visual")]
    ['B08', 'SCL', 'visual']
    >>> asset_key("scl", None)
    'scl'
    """
    bid = band_id(band)
    if bid is None or scheme is None:
        return band
    return EARTH_SEARCH_KEYS[bid] if scheme == "earth-search" else bid


def check_bands(bands: tuple[str, ...], collection: str) -> str | None:
    """Why ``bands`` cannot be asked of a Sentinel-2 L2A ``collection`` (None when they can).

    Examples
    --------
    >>> check_bands(("B04", "scl"), "sentinel-2-l2a") is None
    True
    >>> check_bands(("B99",), "sentinel-2-l2a")  # doctest: +ELLIPSIS
    "band 'B99' is not a Sentinel-2 L2A band; use B01..B12, B8A, SCL, AOT, WVP or ..."
    >>> check_bands(("B04", "red"), "sentinel-2-l2a")
    "bands 'B04' and 'red' are the same band (B04); ask for it once"
    """
    seen: dict[str, str] = {}
    for band in bands:
        bid = band_id(band)
        if bid is None:
            if collection not in L2A_COLLECTIONS:
                continue
            return (f"band {band!r} is not a Sentinel-2 L2A band; use B01..B12, B8A, SCL, AOT, "
                    "WVP or their Earth Search names (coastal, blue, green, red, nir, scl...)")
        if bid in seen:
            return f"bands {seen[bid]!r} and {band!r} are the same band ({bid}); ask for it once"
        seen[bid] = band
    return None


def find_band(ds: Mapping[Hashable, object], name: Hashable) -> Hashable | None:
    """The variable of ``ds`` holding band ``name`` under either name (``SCL``/``scl``...).

    Examples
    --------
    >>> from xsits.testing.cubes import make_cube
    >>> ds = make_cube(n_times=1, shape=(2, 2)).rename({"SCL": "scl", "B04": "red"})
    >>> find_band(ds, "SCL"), find_band(ds, "B04"), find_band(ds, "B11") is None
    ('scl', 'red', True)
    """
    variables = getattr(ds, "data_vars", ds)
    if name in variables:
        return name
    bid = band_id(name)
    if bid is None:
        return None
    return next((v for v in variables if band_id(v) == bid), None)
