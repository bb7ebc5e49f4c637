"""Whether each item's reflectance DN still carry the +1000 offset: metadata checked by pixels.

Since processing baseline 04.00 ESA's Sentinel-2 L2A DN are ``reflectance * 10000 + 1000``.
Some providers remove that offset and say so with a flag, and the flags are known to be wrong:
Earth Search's ``earthsearch:boa_offset_applied`` is ``false`` on COGs whose offset was
already removed (Element84/earth-search#66 for 2022 scenes, #71 for 2025,
cirrus-geo/cirrus-earth-search#33). Trusting the flag alone shifts those items twice.

Owns: the per-item decision (:func:`item_offsets`), made **before** items are fused into a
date: the provider's metadata (:func:`xsits.stac.providers.offset_in_metadata`, per dialect), then
the **data guard** (:func:`guard_share`) on the items the metadata say still carry the offset;
and keeping the dates of a cube free of mixed decisions (:func:`consistent_dates`).
Must not: shift pixels (:func:`xsits.ops.harmonize.harmonize` does, per date) or choose grids.

The data guard
--------------
An item said to still carry the offset is read at low resolution (at most
:data:`GUARD_PIXELS` pixels a side, from the COG's overviews) in its blue, green and red
bands. With the offset, a valid DN below 1000 is a negative reflectance (rare: deep shadow or
dark water after over-correction); without it, every pixel darker than 10 % reflectance is
below 1000 (vegetation in red and blue, water, most soils in blue). When at least
:data:`GUARD_SHARE` (5 %) of the valid DN (not 0 = nodata) of the three bands are below 1000,
the offset was removed already: the item is not shifted and one
:class:`~xsits.errors.HarmonizeWarning` names it. Measured on the test worlds
(``tests/test_providers.py::test_guard_rates``, 18 items with the offset, the same 18 without):
no false alarm (the largest share among items that carry the offset: 0 %), every offset-free
item caught (the smallest share: 7 %, a cloudy scene). A scene (nearly) all cloud or snow has
no valid DN below 1000 and would be missed: then the metadata are trusted.

Which items are checked is the option ``offset_guard`` (:func:`xsits.set_options`):
``"flagged"`` (default) the items of dialects whose flag is known to lie (Earth Search v1
``sentinel-2-l2a`` and v0); ``"all"`` every item said to carry the offset (Planetary Computer
too: one small read per item); ``"off"`` none.

Examples
--------
>>> import datetime as dt, pystac
>>> it = pystac.Item("a", None, None, dt.datetime(2024, 5, 1), {
...     "s2:processing_baseline": "05.09", "earthsearch:boa_offset_applied": True},
...     collection="sentinel-2-l2a")
>>> item_offsets([it])
{'a': False}
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pystac
import rasterio
from rasterio.enums import Resampling

from xsits._common import ContextThreadPool, Lru
from xsits.errors import HarmonizeWarning
from xsits.io import retry, signing
from xsits.options import get_options
from xsits.stac import providers

#: Largest side, in pixels, of the low-resolution read of the data guard.
GUARD_PIXELS = 256
#: Share of valid blue / green / red DN below :data:`GUARD_DN` that proves the offset removed.
GUARD_SHARE = 0.05
#: The offset, in DN.
GUARD_DN = 1000
#: Dialects whose offset flag is known to be wrong (checked under ``offset_guard="flagged"``).
FLAGGED_DIALECTS = frozenset({"earth-search-v1", "earth-search-v0"})
#: Reads of the data guard at once (they wait on the network).
GUARD_THREADS = 8

_VISIBLE = ("B02", "B03", "B04")
log = logging.getLogger(__name__)
#: Decisions kept per process (the least recently used are forgotten).
KEEP_DECISIONS = 100_000
#: This process's data-guard decisions, by (item id, collection, lowest baseline with the
#: offset): True when the item's DN still carry the offset (:func:`clear_cache`).
DECISIONS: Lru[bool] = Lru(keep=KEEP_DECISIONS)


def _href(item: pystac.Item, key: str) -> str:
    asset = item.assets[key]
    return asset.get_absolute_href() or asset.href


def visible_hrefs(item: pystac.Item) -> list[str]:
    """The hrefs of an item's blue, green and red assets (either naming; never ``*-jp2``).

    Examples
    --------
    >>> import datetime as dt, pystac
    >>> it = pystac.Item("a", None, None, dt.datetime(2024, 5, 1), {})
    >>> for key in ("red", "red-jp2", "scl"):
    ...     it.add_asset(key, pystac.Asset(f"/data/{key}.tif"))
    >>> visible_hrefs(it)
    ['/data/red.tif']
    """
    return [_href(item, key) for key in item.assets if providers.band_id(key) in _VISIBLE]


def guard_share(hrefs: Sequence[str]) -> float:
    """Share of the valid DN (not 0) of ``hrefs`` below 1000, read at low resolution.

    Each file is read whole at most :data:`GUARD_PIXELS` pixels a side (GDAL picks the COG's
    overview), through the retry policy. NaN when no pixel is valid.

    Examples
    --------
    >>> import tempfile, numpy as np, rasterio
    >>> from rasterio.transform import from_origin
    >>> path = tempfile.mktemp(suffix=".tif")
    >>> with rasterio.open(path, "w", driver="GTiff", width=4, height=1, count=1,
    ...                    dtype="uint16", nodata=0, crs="EPSG:32632",
    ...                    transform=from_origin(0, 0, 10, 10)) as f:
    ...     f.write(np.array([[0, 400, 1400, 2000]], "uint16"), 1)
    >>> round(guard_share([path]), 3)
    0.333
    """
    below = valid = 0
    for href in hrefs:
        def read(href: str = href) -> np.ndarray:
            with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"), \
                    rasterio.open(href) as f:
                scale = max(1.0, max(f.height, f.width) / GUARD_PIXELS)
                shape = (max(1, int(f.height / scale)), max(1, int(f.width / scale)))
                return f.read(1, out_shape=shape, resampling=Resampling.nearest)

        data = retry.call(read, what=f"checking the offset of {href.split('?')[0]}")
        ok = data != 0
        valid += int(ok.sum())
        below += int((ok & (data < GUARD_DN)).sum())
    return below / valid if valid else float("nan")


def _share_or_nan(item: pystac.Item) -> float:
    """:func:`guard_share` of an item; NaN (trust the metadata) when its files cannot be read.

    The load reads them again and reports the failure where it belongs.
    """
    try:
        return guard_share([signing.sign(h) for h in visible_hrefs(item)])
    except Exception as err:  # noqa: BLE001 - the guard is advice, the load reports failures
        log.info("cannot check the offset of item %s: %s", item.id, err)
        return float("nan")


def _checked(item: pystac.Item, scope: str) -> bool:
    dialect = providers.item_dialect(item.properties, item.collection_id)
    return scope == "all" or (scope == "flagged" and dialect in FLAGGED_DIALECTS)


def item_offsets(items: Sequence[pystac.Item], min_baseline: str = "04.00") -> dict[str, bool]:
    """``{item id: whether its reflectance DN still carry the +1000 offset}``.

    The metadata decide (:func:`xsits.stac.providers.offset_in_metadata`); an item they say still
    carries the offset and that the data guard checks (option ``offset_guard``, see the
    module) is found free of it when :func:`guard_share` is at least :data:`GUARD_SHARE`:
    it then counts as offset-free, and one :class:`~xsits.errors.HarmonizeWarning` names it.
    Decisions are kept per process (an item is checked once for all features).

    Examples
    --------
    >>> import datetime as dt, pystac
    >>> it = pystac.Item("x", None, None, dt.datetime(2024, 5, 1),
    ...                  {"s2:processing_baseline": "05.11"}, collection="sentinel-2-l2a")
    >>> item_offsets([it])
    {'x': True}
    """
    scope = get_options().offset_guard
    out: dict[str, bool] = {}
    todo: list[pystac.Item] = []
    for item in items:
        said = providers.offset_in_metadata(item.properties, item.collection_id, min_baseline)
        key = (item.id, item.collection_id, min_baseline)
        if not said or not _checked(item, scope):
            out[item.id] = said
        elif (kept := DECISIONS.get(key)) is not None:
            out[item.id] = kept
        elif visible_hrefs(item):
            todo.append(item)
        else:
            out[item.id] = said
    if todo:
        with ContextThreadPool(min(GUARD_THREADS, len(todo))) as pool:
            shares = list(pool.map(_share_or_nan, todo))
        for item, share in zip(todo, shares, strict=True):
            removed = bool(share >= GUARD_SHARE)
            if removed:
                warnings.warn(
                    f"item {item.id!r} ({item.collection_id}) says its reflectance still "
                    f"carries the +1000 offset, but {share:.0%} of its valid blue/green/red "
                    f"DN are below {GUARD_DN}: the offset was removed already, so harmonize "
                    "leaves it as it is", HarmonizeWarning, stacklevel=2)
            DECISIONS.put((item.id, item.collection_id, min_baseline), not removed)
            out[item.id] = not removed
    return out


def consistent_dates(groups: list[list[pystac.Item]], offsets: dict[str, bool]
                     ) -> list[list[pystac.Item]]:
    """Solar-day groups whose items all agree on the offset: the others' minority dropped.

    A date fuses its items' pixels, so its offset must be one decision. When the items of one
    date disagree (e.g. two overlapping tiles, one of them with a wrong flag), the items of
    the decision shared by more of them are kept (on a tie, the first item's decision), the
    others are dropped with one :class:`~xsits.errors.HarmonizeWarning` naming them.

    Examples
    --------
    >>> import datetime as dt, pystac
    >>> a, b = (pystac.Item(i, None, None, dt.datetime(2024, 5, 1), {}) for i in "ab")
    >>> [[it.id for it in g] for g in consistent_dates([[a, b]], {"a": True, "b": False})]
    [['a']]
    """
    out = []
    for group in groups:
        decisions = [offsets[it.id] for it in group]
        if len(set(decisions)) <= 1:
            out.append(group)
            continue
        keep = decisions[0] if decisions.count(True) * 2 == len(decisions) else \
            decisions.count(True) * 2 > len(decisions)
        dropped = [it.id for it, d in zip(group, decisions, strict=True) if d != keep]
        warnings.warn(
            f"items {dropped} are dropped from the date {group[0].datetime:%Y-%m-%d}: their "
            f"offset decision differs from the other items of that date (one date is fused "
            "from its items, so it cannot be shifted for some of them only)",
            HarmonizeWarning, stacklevel=2)
        out.append([it for it, d in zip(group, decisions, strict=True) if d == keep])
    return out


def clear_cache() -> None:
    """Forget the decisions kept in this process.

    Examples
    --------
    >>> clear_cache()
    """
    DECISIONS.clear()
