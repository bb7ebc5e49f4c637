"""The items and files of a generated world, shared by the worlds made in other shapes.

Owns: :class:`ItemFiles`, what a world whose items point at files under ``root`` (by
relative hrefs) offers: the items rebased on a server, an asset's local file, the array in it.
Must not: be imported by library code; generate scenes.

Examples
--------
>>> import pathlib
>>> class Tiny(ItemFiles):
...     root = pathlib.Path("/w")
...     items = [{"id": "a", "assets": {"vv": {"href": "a/vv.tif"},
...                                     "preview": {"href": "https://x/a.png"}}}]
>>> [a["href"] for a in Tiny().item_dicts("http://127.0.0.1:8000")[0]["assets"].values()]
['http://127.0.0.1:8000/a/vv.tif', 'https://x/a.png']
>>> Tiny().asset_path("a", "vv").as_posix()
'/w/a/vv.tif'
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
from typing import Any

import numpy as np
import rasterio


class ItemFiles:
    """Methods of a world with item dicts whose local asset hrefs are relative to ``root``.

    A subclass (a dataclass) has the attributes ``root`` (:class:`pathlib.Path`) and
    ``items`` (item dicts); hrefs starting with ``http`` or ``s3:`` are not files of the world
    and stay as they are.
    """

    root: pathlib.Path
    items: list[dict[str, Any]]

    def item_dicts(self, href_base: str) -> list[dict[str, Any]]:
        """Item dicts with hrefs rebased on ``href_base`` (a ``/`` is added if missing)."""
        base = href_base if href_base.endswith("/") else href_base + "/"
        out = copy.deepcopy(self.items)
        for it in out:
            for asset in it["assets"].values():
                if not asset["href"].startswith(("http", "s3:")):
                    asset["href"] = base + asset["href"]
        return out

    def write_item_collection(self, path: str | os.PathLike, href_base: str) -> pathlib.Path:
        """Write the items (rebased on ``href_base``) as a FeatureCollection file."""
        path = pathlib.Path(path)
        path.write_text(json.dumps({"type": "FeatureCollection",
                                    "features": self.item_dicts(href_base)}))
        return path

    def asset_path(self, item_id: str, key: str) -> pathlib.Path:
        """The local file of one asset."""
        item = next(it for it in self.items if it["id"] == item_id)
        return self.root / item["assets"][key]["href"]

    def truth(self, item_id: str, key: str) -> np.ndarray:
        """The array written to one asset's file (read back with rasterio)."""
        with rasterio.open(self.asset_path(item_id, key)) as f:
            return f.read(1)
