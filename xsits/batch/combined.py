"""Open one combined cube per feature from several collections (Sentinel-2 + Landsat...).

Owns: :func:`open_combined`: for each collection, :func:`xsits.open_cubes` with the same grid
(so every feature's cubes share its pixel grid) and that collection's cross-sensor and mask
bands from the registry (:mod:`xsits.stac.collections`); then, per feature,
:func:`xsits.ops.combine.combine` (each sensor masked by its own rule, surface reflectance,
one time axis). The result is a :class:`~xsits.cube.load.Cubes` like ``open_cubes``':
:func:`xsits.compute_all` takes it unchanged.
Must not: read pixels (the cubes stay lazy).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import geopandas as gpd

from xsits.cube.aoi import read_aoi
from xsits.cube.load import Cubes, open_cubes
from xsits.errors import QueryError
from xsits.ops.combine import combine
from xsits.stac.collections import COMMON_BANDS, lookup
from xsits.stac.search import NoItems


def combined_bands(collection: str, bands: Sequence[str] = COMMON_BANDS) -> tuple[str, ...]:
    """The bands a collection's cube needs in a combined cube: cross-sensor bands, mask band.

    Examples
    --------
    >>> combined_bands("landsat-c2-l2")
    ('blue', 'green', 'red', 'nir08', 'swir16', 'swir22', 'qa_pixel')
    >>> combined_bands("sentinel-2-l2a", ["red", "nir"])
    ('B04', 'B8A', 'SCL')
    """
    entry = lookup(collection)
    if entry is None or entry.mask is None:
        raise QueryError(f"collection={collection!r} cannot be combined: it is not in "
                         "xsits.stac.collections with a mask rule; add its entry")
    unknown = [b for b in bands if b not in COMMON_BANDS]
    if unknown:
        raise QueryError(f"bands={list(bands)!r}: {unknown} are not cross-sensor bands; use "
                         f"{', '.join(COMMON_BANDS)}")
    return (*(entry.common_bands[n] for n in bands if n in entry.common_bands),
            entry.mask.band)


def open_combined(aoi: gpd.GeoDataFrame | str, collections: Sequence[str], *,
                  stac: str | Mapping[str, str] = "planetary-computer",
                  bands: Sequence[str] | None = None, bandpass: bool = False,
                  dilate: int = 0, **spec_kwargs: Any) -> Cubes:
    """One lazy cube per feature holding the clear dates of every collection, on one grid.

    Parameters
    ----------
    aoi
        As for :func:`xsits.open_cubes`.
    collections
        Collection ids of the registry, e.g. ``["sentinel-2-l2a", "landsat-c2-l2"]``.
    stac
        One STAC API / catalog for all, or ``{collection: stac}``.
    bands
        Cross-sensor bands to keep (default all: ``blue``, ``green``, ``red``, ``nir``,
        ``swir16``, ``swir22``).
    bandpass, dilate
        As for :func:`xsits.ops.combine.combine`.
    **spec_kwargs
        The other :func:`xsits.open_cubes` options (``start``, ``end``, ``max_cloud``,
        ``crs``, ``resolution``, ``mode``, ``size``...), the same for every collection.

    Returns
    -------
    xsits.cube.load.Cubes
        ``{feature_id: Dataset}`` with ``time``-sorted dates of all sensors (``sensor`` and
        ``platform`` per date); ``.missing`` holds the features no collection covers, and those
        a collection failed to search or read the headers of (never a partial series).

    Examples
    --------
    >>> from xsits.demo import demo_aoi, demo_catalog_path
    >>> cubes = open_combined(demo_aoi(), ["sentinel-2-l2a"], stac=str(demo_catalog_path()),
    ...                       bands=["green", "red"], start="2024-04-01", end="2024-04-30",
    ...                       mode="patch", size=(2, 2), resolution=30)
    >>> sorted(cubes["7"].data_vars), cubes["7"].attrs["collection"]
    (['green', 'red'], 'sentinel-2-l2a')
    """
    if isinstance(collections, str) or not collections:
        raise QueryError(f"collections={collections!r} must be a list of collection ids, e.g. "
                         "['sentinel-2-l2a', 'landsat-c2-l2']")
    if not isinstance(aoi, gpd.GeoDataFrame) or "feature_id" not in aoi.columns:
        aoi = read_aoi(aoi)
    per: dict[str, Cubes] = {}
    for collection in collections:
        where = stac[collection] if isinstance(stac, Mapping) else stac
        per[collection] = open_cubes(aoi, stac=where, collection=collection,
                                     bands=combined_bands(collection, bands or COMMON_BANDS),
                                     **spec_kwargs)
    out = Cubes(missing={})
    for fid in aoi["feature_id"]:
        cubes = [c[fid] for c in per.values() if fid in c]
        why = {k: c.missing.get(fid, NoItems("no item")) for k, c in per.items() if fid not in c}
        failed = {k: r for k, r in why.items() if not isinstance(r, NoItems)}
        if cubes and not failed:
            out[fid] = combine(cubes, bandpass=bandpass, dilate=dilate)
            continue
        # a collection that failed here leaves no partial series: the feature fails;
        # empty (not failed) when no collection has an item for it
        text = "; ".join(f"{k}: {r}" for k, r in (failed or why).items())
        out.missing[fid] = text if failed else NoItems(text)
    return out

