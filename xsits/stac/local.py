"""Local STAC catalogs: the items of an ItemCollection or static catalog file, read once.

``stac=`` may be the path of a local ItemCollection (``.json`` / ``.geojson``) or static
catalog (``catalog.json``); :mod:`xsits.stac.search` filters its items in-process like a STAC
API would. A file is read again only when its modification time changes.

Owns: reading a local catalog's item dicts (:func:`catalog_items`) and telling, from its
first item of a collection, the band naming (:func:`catalog_naming`) and item dialect
(:func:`catalog_dialect`) of the provider whose items it holds.
Must not: filter items, search or make requests (:mod:`xsits.stac.search`).

Examples
--------
>>> import json, tempfile
>>> path = tempfile.mkstemp(suffix=".json")[1]
>>> item = {"type": "Feature", "collection": "sentinel-2-l2a", "properties": {},
...         "assets": {"red": {}, "scl": {}}}
>>> _ = open(path, "w").write(json.dumps({"type": "FeatureCollection", "features": [item]}))
>>> len(catalog_items(path)), catalog_naming(path, "sentinel-2-l2a")
(1, 'earth-search')
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pystac

from xsits._common import one_line
from xsits.errors import QueryError
from xsits.stac import providers

__all__ = ["catalog_dialect", "catalog_items", "catalog_naming", "clear"]

#: Local catalogs kept read per process (by path and modification time).
KEEP_CATALOGS = 8


def catalog_items(path: str) -> tuple[dict, ...]:
    """Item dicts of the local ItemCollection or static catalog at ``path``.

    Parameters
    ----------
    path
        An existing local file.

    Returns
    -------
    tuple of dict
        Shared between calls while the file is unchanged: do not mutate them.

    Raises
    ------
    xsits.errors.QueryError
        The file is not readable JSON, or neither an ItemCollection nor a catalog.
    """
    return _items(path, os.path.getmtime(path))


def catalog_naming(path: str, collection: str) -> providers.Naming | None:
    """The band naming of the catalog at ``path``: its first ``collection`` item's, or None.

    As :func:`xsits.stac.providers.naming_of_assets` tells it from the item's asset keys.
    """
    return _naming(path, os.path.getmtime(path), collection)


def catalog_dialect(path: str, collection: str) -> providers.Dialect | None:
    """The item dialect of the catalog at ``path``: its first ``collection`` item's, or None.

    As :func:`xsits.stac.providers.item_dialect` tells it (Sentinel-2 L2A collections only).
    """
    return _dialect(path, os.path.getmtime(path), collection)


@functools.lru_cache(maxsize=KEEP_CATALOGS)
def _items(path: str, mtime: float) -> tuple[dict, ...]:
    """Item dicts of a local ItemCollection or static catalog (cached while unchanged)."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise QueryError(
            f"stac='{p}' is not a readable JSON file ({one_line(err)}); fix the path"
        ) from err
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind == "FeatureCollection":
        return tuple(doc.get("features") or ())
    if kind in ("Catalog", "Collection"):
        cat = pystac.read_file(str(p))
        return tuple(item.to_dict() for item in cat.get_items(recursive=True))
    raise QueryError(f"stac='{p}' is neither a STAC ItemCollection nor a catalog (its type "
                     f"is {kind!r}); give an ItemCollection, a catalog.json or an API URL")


@functools.lru_cache(maxsize=KEEP_CATALOGS)
def _naming(path: str, mtime: float, collection: str) -> providers.Naming | None:
    """The band naming of a local catalog: that of its first item of ``collection``."""
    for d in _items(path, mtime):
        if d.get("collection", collection) == collection:
            return providers.naming_of_assets(list(d.get("assets") or ()))
    return None


@functools.lru_cache(maxsize=KEEP_CATALOGS)
def _dialect(path: str, mtime: float, collection: str) -> providers.Dialect | None:
    """The item dialect of a local catalog: that of its first item of ``collection``."""
    if collection not in providers.L2A_COLLECTIONS:
        return None
    for d in _items(path, mtime):
        if d.get("collection", collection) == collection:
            return providers.item_dialect(d.get("properties") or {}, collection)
    return None


def clear() -> None:
    """Forget the local catalogs read by this process (their items, naming and dialect).

    Examples
    --------
    >>> clear()
    """
    for cached in (_items, _naming, _dialect):
        cached.cache_clear()
