"""The STAC APIs xsits knows, how each names the Sentinel-2 L2A bands, and its item dialect.

Owns: the presets (:data:`PRESETS`) and the registry of catalogs made on first use
(:func:`register_catalog`: ``xsits.demo`` registers ``stac="demo"``); recognising a
provider by its API root or its collection (:func:`naming`); the two naming schemes of
Sentinel-2 L2A bands, band ids (``B04``, ``SCL``: Planetary Computer, ESA, most catalogs)
and Earth Search's asset keys (``red``, ``scl``), and the translation of a band asked under
either name to the provider's asset key (:func:`asset_key`) or to the variable of a cube
(:func:`find_band`).
The Sentinel-2 tables here (:data:`EARTH_SEARCH_KEYS`, :data:`L2A_COLLECTIONS`,
:data:`REFLECTANCE_BANDS`) are read from the collection registry
(:mod:`xsits.stac.collections`), the one place a collection is described.
Band names are chosen by **collection**: only the Sentinel-2 L2A collections
(:data:`L2A_COLLECTIONS`) are translated; every other collection's bands keep the names
asked (Planetary Computer's ``landsat-c2-l2`` ``red`` stays ``red``).
Also owns the item *dialects* of the providers (:func:`item_dialect`): where each keeps the
processing baseline, the MGRS tile, the platform and the offset flag, and what its metadata
say about the +1000 reflectance offset (:func:`offset_in_metadata`).
Must not: make requests or read catalogs (:mod:`xsits.stac.search` does, and tells the naming of a
local catalog from its items with :func:`naming_of_assets`), or read pixels
(:mod:`xsits.cube.offset` checks the metadata against them).

Examples
--------
>>> naming("https://earth-search.aws.element84.com/v1/", "sentinel-2-l2a")
'earth-search'
>>> asset_key("B04", "earth-search"), asset_key("scl", "band-id")
('red', 'SCL')
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping
from typing import Literal
from urllib.parse import urlsplit

from xsits.errors import QueryError
from xsits.stac.collections import SENTINEL_2_L2A

#: Named STAC APIs (``stac="planetary-computer"``...).
PRESETS: dict[str, str] = {
    "planetary-computer": "https://planetarycomputer.microsoft.com/api/stac/v1",
    "earth-search": "https://earth-search.aws.element84.com/v1",
    "nasa-lpcloud": "https://cmr.earthdata.nasa.gov/stac/LPCLOUD",
}
#: Names of the embedded offline demo world (:func:`xsits.demo.demo_catalog_path`).
DEMO_NAMES = frozenset({"demo", "xsits-demo"})

#: Sentinel-2 L2A band ids -> Earth Search v1 asset keys (from the registry's entry).
EARTH_SEARCH_KEYS: dict[str, str] = {b.name: b.keys["earth-search"]
                                     for b in SENTINEL_2_L2A.bands}
#: Collections of Sentinel-2 L2A scenes (their bands are checked before searching).
L2A_COLLECTIONS = frozenset(SENTINEL_2_L2A.ids)
#: Sentinel-2 L2A surface-reflectance bands: the only bands carrying the +1000 offset of
#: baseline >= 04.00 (never AOT, WVP, SCL or any class / QA band). L2A has no B10.
REFLECTANCE_BANDS = SENTINEL_2_L2A.names("reflectance")

Naming = Literal["band-id", "earth-search"]
#: Item dialects: where a provider keeps the baseline, tile, platform and offset flag.
Dialect = Literal["planetary-computer", "earth-search-v1", "earth-search-c1", "earth-search-v0"]

_BAND_IDS = {band.lower(): band for band in EARTH_SEARCH_KEYS}
_BAND_IDS.update({key: band for band, key in EARTH_SEARCH_KEYS.items()})
_HOSTS: dict[str, Naming] = {
    "earth-search.aws.element84.com": "earth-search",
    "planetarycomputer.microsoft.com": "band-id",
}
#: Collections whose provider names the bands one way wherever they are served (an id
#: only one source of the registry serves).
_COLLECTIONS: dict[str, Naming] = {
    s.collection: s.naming for s in SENTINEL_2_L2A.sources.values()  # type: ignore[misc]
    if sum(o.collection == s.collection for o in SENTINEL_2_L2A.sources.values()) == 1}


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
    factory = CATALOGS.get(stac.strip().lower())
    if factory is not None:
        return str(factory())
    return PRESETS.get(stac, stac)


#: Catalogs made on first use, by name: ``{name: factory() -> path or URL}``. Layers above
#: this one add theirs with :func:`register_catalog` (``xsits.demo`` registers ``"demo"``).
CATALOGS: dict[str, Callable[[], str | os.PathLike]] = {}


def register_catalog(names: Iterable[str], factory: Callable[[], str | os.PathLike]) -> None:
    """Make ``stac=<name>`` resolve to the catalog ``factory()`` returns, on first use.

    Examples
    --------
    >>> register_catalog(["my-items"], lambda: "/data/items.json")
    >>> resolve_stac("my-items")
    '/data/items.json'
    >>> del CATALOGS["my-items"]
    """
    for name in names:
        CATALOGS[name.strip().lower()] = factory


def naming(stac: str, collection: str) -> Naming | None:
    """How the provider of ``stac`` / ``collection`` names the bands; None when unknown.

    Earth Search (``earth-search.aws.element84.com``, or its ``sentinel-2-c1-l2a``
    collection anywhere) uses its own asset keys (``red``, ``scl``); Planetary Computer
    band ids (``B04``, ``SCL``). Only Sentinel-2 L2A collections (:data:`L2A_COLLECTIONS`)
    have a scheme: any other collection (``landsat-c2-l2``...) gives None, its bands keep
    the names asked wherever it is served.

    Examples
    --------
    >>> naming("earth-search", "sentinel-2-l2a"), naming("planetary-computer", "sentinel-2-l2a")
    ('earth-search', 'band-id')
    >>> naming("planetary-computer", "landsat-c2-l2") is None
    True
    >>> naming("http://127.0.0.1:8080", "sentinel-2-c1-l2a")
    'earth-search'
    >>> naming("http://127.0.0.1:8080", "sentinel-2-l2a") is None
    True
    """
    if collection in _COLLECTIONS:
        return _COLLECTIONS[collection]
    if collection not in L2A_COLLECTIONS:
        return None  # another collection's bands are its own: never renamed
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


def is_reflectance(name: Hashable) -> bool:
    """Whether ``name`` is a Sentinel-2 L2A surface-reflectance band, under either name.

    Examples
    --------
    >>> [is_reflectance(b) for b in ("B04", "nir08", "AOT", "wvp", "SCL", "NDVI")]
    [True, True, False, False, False, False]
    """
    return band_id(name) in REFLECTANCE_BANDS


def item_dialect(properties: Mapping[str, object], collection: str | None) -> Dialect:
    """The dialect of a Sentinel-2 item's properties.

    ``earth-search-c1``: collection ``sentinel-2-c1-l2a``; ``earth-search-v0``: ``sentinel:*``
    properties (collection ``sentinel-s2-l2a-cogs``); ``earth-search-v1``: ``earthsearch:*``
    properties; else ``planetary-computer`` (``s2:*`` properties, ESA's DN).

    Examples
    --------
    >>> item_dialect({"earthsearch:boa_offset_applied": True}, "sentinel-2-l2a")
    'earth-search-v1'
    >>> item_dialect({"sentinel:processing_baseline": "05.11"}, "sentinel-s2-l2a-cogs")
    'earth-search-v0'
    >>> item_dialect({"s2:processing_baseline": "05.11"}, "sentinel-2-l2a")
    'planetary-computer'
    """
    if collection == "sentinel-2-c1-l2a":
        return "earth-search-c1"
    keys = list(properties)
    if collection == "sentinel-s2-l2a-cogs" or any(k.startswith("sentinel:") for k in keys):
        return "earth-search-v0"
    if any(k.startswith("earthsearch:") for k in keys):
        return "earth-search-v1"
    return "planetary-computer"


_PRODUCT_BASELINE = re.compile(r"_N(\d{2})(\d{2})_")


def item_baseline(properties: Mapping[str, object]) -> str:
    """The processing baseline of an item (``"05.11"``), ``""`` when it cannot be told.

    From ``s2:processing_baseline`` (Planetary Computer, Earth Search v1),
    ``sentinel:processing_baseline`` (Earth Search v0), else the ``N0214`` part of the
    product id (``s2:product_uri``, ``sentinel:product_id``: v0 items before 2022 have only
    that).

    Examples
    --------
    >>> item_baseline({"sentinel:product_id": "S2A_MSIL2A_20200714T112121_N0214_R037_T28QCH_X"})
    '02.14'
    >>> item_baseline({"s2:processing_baseline": "05.11"}), item_baseline({})
    ('05.11', '')
    """
    for key in ("s2:processing_baseline", "sentinel:processing_baseline"):
        value = properties.get(key)
        if value not in (None, ""):
            return str(value)
    for key in ("s2:product_uri", "sentinel:product_id"):
        match = _PRODUCT_BASELINE.search(str(properties.get(key) or ""))
        if match:
            return f"{match[1]}.{match[2]}"
    return ""


def item_mgrs_tile(properties: Mapping[str, object]) -> str:
    """The MGRS tile of an item (``"20EPT"``), ``""`` when absent.

    ``s2:mgrs_tile`` (Planetary Computer), ``grid:code`` ``MGRS-20EPT`` (Earth Search v1),
    ``sentinel:utm_zone`` / ``latitude_band`` / ``grid_square`` (v0; the zone from
    ``proj:epsg`` or ``proj:code`` when absent, as in v0 items before 2022).

    Examples
    --------
    >>> item_mgrs_tile({"grid:code": "MGRS-20EPT"})
    '20EPT'
    >>> item_mgrs_tile({"sentinel:utm_zone": 9, "sentinel:latitude_band": "U",
    ...                 "sentinel:grid_square": "WV"})
    '09UWV'
    >>> item_mgrs_tile({"proj:epsg": 32628, "sentinel:latitude_band": "Q",
    ...                 "sentinel:grid_square": "CH"})
    '28QCH'
    """
    if properties.get("s2:mgrs_tile"):
        return str(properties["s2:mgrs_tile"])
    code = str(properties.get("grid:code") or "")
    if code.startswith("MGRS-"):
        return code[5:]
    for prefix in ("mgrs:", "sentinel:"):
        zone = properties.get(f"{prefix}utm_zone")
        epsg = properties.get("proj:epsg") or str(properties.get("proj:code") or "")[5:]
        epsg = int(epsg) if str(epsg).isdigit() else None
        if zone is None and epsg is not None and 32601 <= epsg <= 32760:
            zone = epsg % 100  # v0 items before 2022 have no utm_zone
        if zone is not None and properties.get(f"{prefix}latitude_band"):
            return (f"{int(zone):02d}{properties.get(f'{prefix}latitude_band', '')}"
                    f"{properties.get(f'{prefix}grid_square', '')}")
    return ""


def item_platform(properties: Mapping[str, object]) -> str:
    """The platform, spelled ``Sentinel-2A`` whichever provider (Earth Search: ``sentinel-2a``).

    Examples
    --------
    >>> item_platform({"platform": "sentinel-2b"}), item_platform({"platform": "landsat-9"})
    ('Sentinel-2B', 'landsat-9')
    """
    value = str(properties.get("platform") or "")
    match = re.fullmatch(r"sentinel-2([a-z])", value, re.IGNORECASE)
    return f"Sentinel-2{match[1].upper()}" if match else value


def item_cloud_cover(properties: Mapping[str, object]) -> float:
    """``eo:cloud_cover`` as a float, NaN when absent.

    Examples
    --------
    >>> item_cloud_cover({"eo:cloud_cover": 26}), item_cloud_cover({})
    (26.0, nan)
    """
    value = properties.get("eo:cloud_cover")
    return float("nan") if value is None else float(value)  # type: ignore[arg-type]


def item_offset_flag(properties: Mapping[str, object]) -> bool:
    """Earth Search's "offset removed" flag (v1 ``earthsearch:``, v0 ``sentinel:``), else False.

    Examples
    --------
    >>> item_offset_flag({"sentinel:boa_offset_applied": True}), item_offset_flag({})
    (True, False)
    """
    for key in ("earthsearch:boa_offset_applied", "sentinel:boa_offset_applied"):
        if key in properties:
            return properties[key] is True
    return False


def baseline_key(value: object) -> tuple[int, ...] | None:
    """``"05.11"`` -> ``(5, 11)``; None for missing or unparseable baselines.

    Examples
    --------
    >>> baseline_key("04.00") > baseline_key("03.01"), baseline_key("")
    (True, None)
    """
    try:
        return tuple(int(part) for part in str(value).strip().split("."))
    except ValueError:
        return None


def offset_in_metadata(properties: Mapping[str, object], collection: str | None,
                       min_baseline: str = "04.00") -> bool:
    """Whether an item's metadata say its reflectance DN still carry the +1000 offset.

    Only items of baseline ``>= min_baseline`` ever carried it (:func:`item_baseline`; an
    unknown baseline counts as older). Then, per dialect:

    - ``planetary-computer``: yes (Planetary Computer serves ESA's DN as they are);
    - ``earth-search-v1``: unless ``earthsearch:boa_offset_applied`` is true;
    - ``earth-search-v0``: unless ``sentinel:boa_offset_applied`` is true;
    - ``earth-search-c1``: yes (Collection 1 keeps ESA's DN and declares the offset in
      ``raster:bands``, Element84/earth-search#41; it has no flag).

    Earth Search's flags are known to be false on COGs whose offset was removed
    (Element84/earth-search#66, #71): :mod:`xsits.cube.offset` checks such items' pixels.

    Examples
    --------
    >>> offset_in_metadata({"s2:processing_baseline": "05.11"}, "sentinel-2-l2a")
    True
    >>> offset_in_metadata({"s2:processing_baseline": "05.09",
    ...                     "earthsearch:boa_offset_applied": True}, "sentinel-2-l2a")
    False
    >>> offset_in_metadata({"sentinel:product_id": "S2A_MSIL2A_X_N0214_R037_T28QCH_Y"},
    ...                    "sentinel-s2-l2a-cogs")
    False
    """
    key = baseline_key(item_baseline(properties))
    if key is None or key < (baseline_key(min_baseline) or (4, 0)):
        return False
    flag = {"earth-search-v1": "earthsearch:boa_offset_applied",
            "earth-search-v0": "sentinel:boa_offset_applied"}.get(
                item_dialect(properties, collection))
    return not (flag is not None and properties.get(flag) is True)


def provider_dialect(stac: str, collection: str) -> Dialect | None:
    """The item dialect of a provider's Sentinel-2 collection, by preset or API root.

    None when the provider is unknown (a local catalog: :mod:`xsits.stac.search` asks its items).

    Examples
    --------
    >>> provider_dialect("earth-search", "sentinel-2-l2a")
    'earth-search-v1'
    >>> provider_dialect("https://earth-search.aws.element84.com/v0", "sentinel-s2-l2a-cogs")
    'earth-search-v0'
    >>> provider_dialect("planetary-computer", "sentinel-2-l2a")
    'planetary-computer'
    >>> provider_dialect("http://127.0.0.1:8080", "sentinel-2-l2a") is None
    True
    """
    if collection == "sentinel-2-c1-l2a":
        return "earth-search-c1"
    if collection == "sentinel-s2-l2a-cogs":
        return "earth-search-v0"
    if collection not in L2A_COLLECTIONS:
        return None
    scheme = naming(stac, collection)
    if scheme == "earth-search":
        return "earth-search-v1"
    return "planetary-computer" if scheme == "band-id" else None


def _platform_value(value: object, dialect: Dialect) -> object:
    if not isinstance(value, str):
        return value
    match = re.fullmatch(r"sentinel[-_ ]?2[-_ ]?([a-d])", value.strip(), re.IGNORECASE)
    if not match:
        return value
    sat = match[1]
    return f"sentinel-2{sat.lower()}" if dialect.startswith("earth-search") else \
        f"Sentinel-2{sat.upper()}"


def _constellation_value(value: object, dialect: Dialect) -> object:
    if not isinstance(value, str) or not re.fullmatch(r"sentinel[-_ ]?2", value.strip(),
                                                        re.IGNORECASE):
        return value
    return "sentinel-2" if dialect.startswith("earth-search") else "Sentinel 2"


def _values(args: list, fix: Callable[[object], object]) -> list:
    lhs, *rest = args
    out = [lhs]
    for value in rest:
        out.append([fix(v) for v in value] if isinstance(value, list) else fix(value))
    return out


def _either_spelling(expr: dict, prop: str) -> dict:
    """``=`` / ``<>`` / ``in`` on ``platform`` or ``constellation`` under both spellings."""
    fix = _platform_value if prop == "platform" else _constellation_value
    lhs, value = expr["args"][0], expr["args"][1]
    values = value if isinstance(value, list) else [value]
    both = list(dict.fromkeys(v for x in values for v in (
        fix(x, "planetary-computer"), fix(x, "earth-search-v1"))))
    test = {"op": "in", "args": [lhs, both]}
    return {"op": "not", "args": [test]} if expr["op"] == "<>" else test


def normalise_cql2(expr: object, dialect: Dialect | None) -> object:
    """A CQL2 JSON expression in a provider's own property names and values.

    The common properties mean the same on every provider: ``platform`` (Planetary Computer
    ``Sentinel-2A``, Earth Search ``sentinel-2a``: either spelling is accepted) and
    ``constellation`` values are respelled; ``s2:mgrs_tile`` becomes Earth Search v1's
    ``grid:code`` (``MGRS-`` + tile) and, for ``=``, v0's ``sentinel:utm_zone`` /
    ``latitude_band`` / ``grid_square``; ``s2:processing_baseline`` becomes v0's
    ``sentinel:processing_baseline``. Other properties pass as they are (None: no change).

    Raises
    ------
    xsits.errors.QueryError
        A comparison on ``s2:mgrs_tile`` other than ``=`` on Earth Search v0.

    Examples
    --------
    >>> normalise_cql2({"op": "=", "args": [{"property": "platform"}, "Sentinel-2A"]},
    ...                "earth-search-v1")
    {'op': '=', 'args': [{'property': 'platform'}, 'sentinel-2a']}
    >>> normalise_cql2({"op": "in", "args": [{"property": "s2:mgrs_tile"}, ["31UDQ"]]},
    ...                "earth-search-v1")
    {'op': 'in', 'args': [{'property': 'grid:code'}, ['MGRS-31UDQ']]}
    >>> normalise_cql2({"op": "=", "args": [{"property": "platform"}, "sentinel-2a"]}, None)
    {'op': 'in', 'args': [{'property': 'platform'}, ['Sentinel-2A', 'sentinel-2a']]}
    """
    if isinstance(expr, list):
        return [normalise_cql2(e, dialect) for e in expr]
    if not isinstance(expr, dict) or "op" not in expr:
        return expr
    args = list(expr.get("args") or [])
    prop = args[0].get("property") if args and isinstance(args[0], dict) else None
    op = expr["op"]
    if dialect is None:
        if prop in ("platform", "constellation") and op in ("=", "<>", "in"):
            return _either_spelling(expr, prop)
        return {**expr, "args": [normalise_cql2(a, None) for a in args]}
    if prop == "platform":
        return {**expr, "args": _values(args, lambda v: _platform_value(v, dialect))}
    if prop == "constellation":
        return {**expr, "args": _values(args, lambda v: _constellation_value(v, dialect))}
    if prop == "s2:processing_baseline" and dialect == "earth-search-v0":
        return {**expr, "args": [{"property": "sentinel:processing_baseline"}, *args[1:]]}
    if prop == "s2:mgrs_tile" and dialect in ("earth-search-v1", "earth-search-c1"):
        return {**expr, "args": [{"property": "grid:code"},
                                 *_values(args, lambda v: f"MGRS-{v}" if isinstance(v, str)
                                          else v)[1:]]}
    if prop == "s2:mgrs_tile" and dialect == "earth-search-v0":
        tile = args[1] if len(args) == 2 else None
        if op != "=" or not isinstance(tile, str) or not re.fullmatch(r"\d{2}[A-Z]{3}", tile):
            raise QueryError(
                f"s2:mgrs_tile {op} {args[1:]!r}: Earth Search v0 items have no tile property, "
                "only sentinel:utm_zone / latitude_band / grid_square; ask for one tile with "
                "'=' (e.g. query={'s2:mgrs_tile': {'eq': '31UDQ'}}) or filter on those three")
        return {"op": "and", "args": [
            {"op": "=", "args": [{"property": "sentinel:utm_zone"}, int(tile[:2])]},
            {"op": "=", "args": [{"property": "sentinel:latitude_band"}, tile[2]]},
            {"op": "=", "args": [{"property": "sentinel:grid_square"}, tile[3:]]}]}
    return {**expr, "args": [normalise_cql2(a, dialect) for a in args]}


def cql2_properties(expr: object) -> list[str]:
    """The property names a CQL2 JSON expression uses, in order of appearance.

    Examples
    --------
    >>> cql2_properties({"op": "and", "args": [
    ...     {"op": "<", "args": [{"property": "eo:cloud_cover"}, 10]},
    ...     {"op": "=", "args": [{"property": "platform"}, "x"]}]})
    ['eo:cloud_cover', 'platform']
    """
    out: list[str] = []
    if isinstance(expr, dict):
        if "property" in expr and isinstance(expr["property"], str):
            out.append(expr["property"])
        for value in expr.get("args") or []:
            out += [p for p in cql2_properties(value) if p not in out]
    elif isinstance(expr, list):
        for value in expr:
            out += [p for p in cql2_properties(value) if p not in out]
    return out
