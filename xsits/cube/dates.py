"""The dates of a cube: items grouped by solar day, and each date's coordinates.

Owns: grouping items into dates (:func:`solar_groups`, odc-stac's rule) and the per-date
coordinates read from every item of a date (:data:`TIME_PROPERTIES`, :func:`time_coords`),
in every provider's dialect, plus ``offset_removed``.
Must not: load pixels or build cubes (:mod:`xsits.cube.load`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pystac

from xsits.cube.offset import item_offsets
from xsits.cube.plan import group_dates, plan_items
from xsits.stac import providers

__all__ = ["TIME_PROPERTIES", "solar_groups", "time_coords"]

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
    whole hours); its per-date coordinates (:data:`TIME_PROPERTIES`) come from every item
    of each group.

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
    if not items:
        return []
    plan = plan_items(items, [next(iter(items[0].assets))],
                      stac_cfg={"assets": {"*": {"data_type": "uint16"}}})
    return [[plan.items[i] for i in g] for g in group_dates(plan, range(len(items)), lon)]


def time_coords(groups: list[list[pystac.Item]]) -> dict[str, tuple[str, np.ndarray]]:
    """Per-date coordinates from every item of each date (:data:`TIME_PROPERTIES`).

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
