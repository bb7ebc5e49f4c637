"""The dates of a cube: items grouped into dates, and each date's coordinates.

Owns: :func:`solar_groups` (a list of items grouped as a cube groups them:
:func:`xsits.cube.plan.group_dates`, odc-stac's solar days, split by the collection's rule),
:func:`dated_groups` (the same with one distinct label per date)
and :func:`time_coords` (the per-date coordinates, :data:`TIME_PROPERTIES` read in every
provider's dialect, plus the collection's own from :func:`xsits.stac.collections.date_coords`
and the +1000 offset decision of :mod:`xsits.cube.offset`).
Must not: read pixels or files, or decide dates otherwise than :mod:`xsits.cube.plan`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pystac

from xsits.cube.offset import item_offsets
from xsits.cube.plan import date_key, group_dates, plan_items
from xsits.stac import providers
from xsits.stac.collections import date_coords

#: Per-date coordinates: ``{coordinate: (the value of one item's properties, default)}``,
#: read in every provider's dialect (:mod:`xsits.stac.providers`). A date's value is its items'
#: one value when they agree, else (items of several tiles fused) strings are joined with
#: ``"+"`` in sorted order, ``cloud_cover`` is the largest and booleans are True only when
#: every item's is. ``offset_removed`` (:mod:`xsits.cube.offset`) is added beside them.
TIME_PROPERTIES: dict[str, tuple[Callable[[Mapping[str, Any]], Any], Any]] = {
    "cloud_cover": (providers.item_cloud_cover, np.nan),
    "platform": (providers.item_platform, ""),
    "processing_baseline": (providers.item_baseline, ""),
    "mgrs_tile": (providers.item_mgrs_tile, ""),
    "boa_offset_applied": (providers.item_offset_flag, False),
}


def solar_groups(items: Sequence[pystac.Item], lon: float) -> list[list[pystac.Item]]:
    """Group items by solar day at longitude ``lon``, in date order (odc-stac's rule).

    The dates of a cube (:func:`xsits.cube.plan.group_dates`: the offset is ``lon`` snapped to
    whole hours; a collection that splits solar days, Sentinel-1 by orbit state, splits
    them); its per-date coordinates (:func:`time_coords`) come from every item of each
    group.

    Examples
    --------
    >>> import datetime as dt, pystac
    >>> def item(i, hour):
    ...     it = pystac.Item(i, None, None, dt.datetime(2024, 5, 1, hour), {})
    ...     it.add_asset("B04", pystac.Asset("/data/B04.tif"))
    ...     return it
    >>> [[it.id for it in g] for g in solar_groups([item("b", 23), item("a", 10)], lon=15)]
    [['a'], ['b']]
    """
    return list(dated_groups(items, lon).values())


def dated_groups(items: Sequence[pystac.Item], lon: float) -> dict[str, list[pystac.Item]]:
    """:func:`solar_groups` by a label per date, one per date: ``{label: items}``.

    The label is the ISO solar day, then the values splitting it when the collection splits
    solar days (:func:`xsits.cube.plan.date_key`): ``"2024-05-01"``, or for Sentinel-1
    ``"2024-05-01 descending"`` and ``"2024-05-01 ascending"``.

    Examples
    --------
    >>> import datetime as dt, pystac
    >>> def item(i, hour, state):
    ...     it = pystac.Item(i, None, None, dt.datetime(2024, 5, 1, hour),
    ...                      {"sat:orbit_state": state}, collection="sentinel-1-rtc")
    ...     it.add_asset("vv", pystac.Asset("/data/vv.tif"))
    ...     return it
    >>> list(dated_groups([item("e", 17, "ascending"), item("m", 5, "descending")], lon=6))
    ['2024-05-01 descending', '2024-05-01 ascending']
    """
    if not items:
        return {}
    plan = plan_items(items, [next(iter(items[0].assets))],
                      stac_cfg={"assets": {"*": {"data_type": "uint16"}}})
    out = {}
    for g in group_dates(plan, range(len(items)), lon):
        day, *split = date_key(plan, g[0], lon)
        out[" ".join([str(day), *(v for v in split if v)])] = [plan.items[i] for i in g]
    return out


def time_coords(groups: list[list[pystac.Item]]) -> dict[str, tuple[str, np.ndarray]]:
    """Per-date coordinates from every item of each date (:data:`TIME_PROPERTIES`).

    Plus the coordinates of the items' collection
    (:func:`xsits.stac.collections.date_coords`: Sentinel-1's ``orbit_state`` and
    ``relative_orbit``, -1 on a date whose items disagree).
    Plus ``offset_removed``: True where the date's reflectance DN carry no +1000 offset (never
    had it, or the provider removed it), per item by :func:`xsits.cube.offset.item_offsets`; the
    items of one date agree (:func:`xsits.cube.plan.consistent_groups`).

    Examples
    --------
    >>> import datetime as dt, pystac
    >>> it = pystac.Item("a", None, None, dt.datetime(2024, 1, 1), {"eo:cloud_cover": 3})
    >>> time_coords([[it]])["cloud_cover"][1].tolist()
    [3.0]
    """
    coords = {}
    collection = next((it.collection_id for g in groups for it in g), None)
    for name, (prop, default) in date_coords(collection).items():
        coords[name] = ("time", _per_date([[it.properties.get(prop) for it in g]
                                           for g in groups], default))
    for name, (read, default) in TIME_PROPERTIES.items():
        per_date = [[read(it.properties) for it in g] for g in groups]
        if isinstance(default, bool):
            arr = np.array([all(bool(v) for v in vs) for vs in per_date], dtype=bool)
        elif isinstance(default, float):
            arr = np.array([np.nan if all(np.isnan(vs)) else np.nanmax(vs) for vs in per_date],
                           dtype="float64")
        else:
            arr = np.array(["+".join(sorted({str(v) for v in vs})) for vs in per_date],
                           dtype=str)
        coords[name] = ("time", arr)
    offsets = item_offsets([it for g in groups for it in g])
    coords["offset_removed"] = ("time", np.array([not any(offsets[it.id] for it in g)
                                                  for g in groups], dtype=bool))
    return coords


def _per_date(per_date: list[list[Any]], default: Any) -> np.ndarray:
    """A collection's per-date coordinate from its items' values.

    An integer is the items' one value, ``default`` when absent or when they disagree; text
    is their values joined with ``"+"`` in sorted order.
    """
    if isinstance(default, int) and not isinstance(default, bool):
        one = [{int(v) for v in vs if v is not None} for vs in per_date]
        return np.array([next(iter(vs)) if len(vs) == 1 else default for vs in one],
                        dtype="int64")
    return np.array(["+".join(sorted({str(v) for v in vs if v is not None})) or default
                     for vs in per_date], dtype=str)


__all__ = ["TIME_PROPERTIES", "solar_groups", "time_coords"]
