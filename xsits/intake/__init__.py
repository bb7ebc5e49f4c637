"""Intake V1 driver ``sits``: one lazy cube per AOI feature, from the one spec.

Owns: :class:`SitsSource`, the driver: a facade over :func:`xsits.search` and
:func:`xsits.open_cubes` that takes the same arguments, makes one partition per feature (the
features that have at least one item, in AOI order) and holds no logic of its own;
:func:`postprocess`, the optional steps of an entry. The catalog entries and the packaged
catalogs (``intake.cat.xsits``) are :mod:`xsits.intake.entries`.
Must not: search, load or compute itself (the layers below do); patch Intake.

- ``discover()`` reads the AOI and runs the STAC search only (no pixel is read): number of
  features, dates and cube shape per feature, bands and dtypes, and why features are missing.
  A date is its ISO solar day, followed by the orbit state where a collection splits days
  (Sentinel-1: ``"2024-05-01 descending"``, ``"2024-05-01 ascending"``;
  :func:`xsits.cube.dates.dated_groups`).
- ``read_partition(i)`` (``i`` a partition number or a feature id) returns one lazy,
  dask-backed ``xarray.Dataset``; ``to_dask()`` returns every cube as a :class:`xsits.Cubes`
  (``{feature_id: lazy Dataset}`` plus ``.missing`` and ``.search``), the container every xsits
  operation and :func:`xsits.batch.compute_all` take; ``read()`` is the same dict computed.
- Optional post-processing, applied in this order: ``harmonize: true``
  (:func:`xsits.ops.harmonize.harmonize`), ``mask: true`` (:func:`xsits.ops.mask.cloud_mask`),
  ``gapfill: linear`` (:func:`xsits.ops.gapfill.gapfill`).

Bad input (unknown parameter, missing AOI file, unknown preset) raises
:class:`xsits.errors.CatalogError` (or the library's own typed error, e.g.
:class:`~xsits.errors.AOIError`), not an Intake traceback; catalog entries check their
parameters' types and allowed values first (:class:`xsits.intake.entries.SitsEntry`).

Examples
--------
>>> import intake
>>> from xsits.demo import demo_aoi
>>> src = intake.open_sits(aoi=demo_aoi(), stac="demo", start="2024-04-01", end="2024-09-30",
...                        max_cloud=30)
>>> src.discover()["npartitions"]
6
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask
import geopandas as gpd
from intake.source.base import DataSource, Schema

from xsits._version import __version__
from xsits.cube.aoi import read_aoi
from xsits.cube.dates import dated_groups
from xsits.cube.grid import feature_geoboxes, footprints_4326
from xsits.cube.load import Cubes, open_cubes
from xsits.cube.spec import SPEC_ARGS, CubeSpec, default
from xsits.errors import AOIError, CatalogError
from xsits.ops.steps import StepOptions, build_steps
from xsits.stac.collections import lookup
from xsits.stac.providers import is_demo, resolve_stac
from xsits.stac.query import StacQuery
from xsits.stac.search import SearchResult, search

__all__ = ["SitsSource", "postprocess"]

#: Keyword arguments of :class:`SitsSource`: the spec's fields and its own (Intake also
#: passes ``metadata``).
SOURCE_ARGS = ("aoi", *SPEC_ARGS, "id_column", "harmonize", "mask", "gapfill", "metadata",
               "storage_options")


def _none_if_empty(value: Any) -> Any:
    """Intake coerces an absent ``str``/``dict`` parameter to ``""``/``{}``: treat as None."""
    if value is None or (isinstance(value, str | Mapping | list | tuple) and len(value) == 0):
        return None
    if isinstance(value, str) and value.strip().lower() in {"none", "null"}:
        return None
    return value


def postprocess(
    ds,
    *,
    harmonize: bool = StepOptions.harmonize,
    mask: bool = StepOptions.mask,
    gapfill: str | None = StepOptions.gapfill,
):
    """Apply the optional steps of a catalog entry: harmonize, then cloud mask, then gap-fill.

    Parameters
    ----------
    ds
        A cube from :func:`xsits.open_cubes` (lazy or not).
    harmonize
        Call :func:`xsits.ops.harmonize.harmonize` (undo the +1000 offset of baseline >= 04.00).
    mask
        Call :func:`xsits.ops.mask.cloud_mask` (the rule of the cube's collection).
    gapfill
        Interpolation method for :func:`xsits.ops.gapfill.gapfill` (``"linear"``...), or None.

    Returns
    -------
    xarray.Dataset
        Still lazy on dask input.

    Examples
    --------
    >>> from xsits.testing.cubes import make_cube
    >>> out = postprocess(make_cube(n_times=3), mask=True, gapfill="linear")
    >>> str(out.B04.dtype)
    'float32'
    """
    for step in build_steps(harmonize=harmonize, mask=mask, gapfill=gapfill):
        ds = step(ds)
    return ds


class SitsSource(DataSource):
    """Intake V1 driver ``sits``: one lazy time-series cube per AOI feature.

    Parameters
    ----------
    aoi
        AOI file path (GeoJSON, GPKG, CSV...) or GeoDataFrame, see :func:`xsits.read_aoi`.
    id_column
        The AOI's id column (:func:`xsits.read_aoi`).
    **kwargs
        The fields of the :class:`~xsits.cube.spec.CubeSpec`, as for
        :func:`xsits.open_cubes`: the search ``stac, collection, bands, start, end, query,
        filter, max_cloud`` (:class:`xsits.StacQuery`; ``stac="demo"`` is the embedded
        offline demo world, :func:`xsits.demo.demo_catalog_path`), the grid ``resolution,
        crs, mode, buffer, size`` (:class:`xsits.GridSpec`; ``size``: one int for a square
        patch), the load ``chunks, resampling, clip, all_touched``.
    harmonize, mask, gapfill
        Optional post-processing, see :func:`postprocess`.
    metadata
        Intake metadata (merged with what ``discover()`` finds).

    Attributes
    ----------
    feature_ids
        Partition order: ids of the features with at least one item, in AOI order
        (available after ``discover()``).

    Raises
    ------
    xsits.errors.CatalogError
        Unknown argument, missing ``aoi``, or ``mask=True`` for a collection without a cloud
        mask (Sentinel-1).
    xsits.errors.AOIError, xsits.errors.QueryError, xsits.errors.GridError
        From the library's own validation (missing AOI file, bad dates, bad mode...).

    Examples
    --------
    >>> from xsits.demo import demo_aoi
    >>> from xsits.intake import SitsSource
    >>> src = SitsSource(aoi=demo_aoi(), stac="demo", start="2024-04-01", end="2024-09-30",
    ...                  mask=True)
    >>> src.discover()["metadata"]["n_dates"]["1"]
    37
    >>> src.read_partition(0).attrs["feature_id"]
    '1'
    >>> sorted(src.to_dask())
    ['1', '10', '3', '4', '5', '7']
    """

    name = "sits"
    container = "xarray"
    version = __version__
    partition_access = True

    def __init__(
        self,
        aoi: str | os.PathLike | gpd.GeoDataFrame | None = None,
        *,
        id_column: str | None = None,
        harmonize: bool = StepOptions.harmonize,
        mask: bool = StepOptions.mask,
        gapfill: str | bool | None = StepOptions.gapfill,
        metadata: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("storage_options", None)  # Intake may pass it; nothing remote to open
        unknown = [k for k in kwargs if k not in SPEC_ARGS]
        if unknown:
            raise CatalogError(
                f"sits driver: unknown parameter(s) {sorted(unknown)}; known parameters are "
                f"{sorted(a for a in SOURCE_ARGS if a not in ('metadata', 'storage_options'))}"
            )
        if aoi is None or (isinstance(aoi, str) and not aoi.strip()):
            raise CatalogError("sits driver: aoi is required; give an AOI file path or a "
                               "GeoDataFrame, e.g. aoi='notebooks/data/rand_pts.geojson'")
        if not isinstance(aoi, gpd.GeoDataFrame):
            aoi = os.fspath(aoi)
            if not Path(aoi).exists():
                raise AOIError(f"AOI file '{aoi}' does not exist; check the path")
        super().__init__(metadata=dict(metadata or {}))
        if gapfill is True:
            gapfill = "linear"
        self._aoi_arg = aoi
        self._id_column = _none_if_empty(id_column)
        # Intake gives dates as dates and absent optional values as "" / {}
        self._spec = CubeSpec.from_kwargs(**{  # validates now; "demo" resolved when searching
            k: str(v) if k in ("stac", "start", "end") and v is not None else
            _none_if_empty(v) if default(k) is None else v for k, v in kwargs.items()})
        self._query, self._grid = self._spec.query, self._spec.grid
        self._post = {"harmonize": bool(harmonize), "mask": bool(mask),
                      "gapfill": _none_if_empty(gapfill) or None}
        entry = lookup(self._query.collection)
        if mask and entry is not None and entry.mask is None:
            raise CatalogError(f"sits driver: mask=True, but collection "
                               f"{self._query.collection!r} ({entry.title}) has no cloud mask; "
                               "leave mask out")
        self._aoi: gpd.GeoDataFrame | None = None
        self._search: SearchResult | None = None
        self.feature_ids: list[str] = []

    def _resolved_query(self) -> StacQuery:
        """The query with ``stac="demo"`` replaced by the demo ItemCollection path."""
        stac = _resolve_stac(self._query.stac)
        if stac == self._query.stac:
            return self._query
        return dataclasses.replace(self._query, stac=stac)

    @property
    def spec(self) -> CubeSpec:
        """The source's :class:`~xsits.cube.spec.CubeSpec` (``stac="demo"`` resolved)."""
        return dataclasses.replace(self._spec, query=self._resolved_query())

    # ------------------------------------------------------------------ batch engine view

    @property
    def aoi(self) -> gpd.GeoDataFrame:
        """The AOI as read by :func:`xsits.read_aoi` (what :func:`xsits.compute_all` batches)."""
        return self._read_aoi()

    @property
    def open_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`xsits.open_cubes` equivalent to this source."""
        return self.spec.kwargs()

    @property
    def steps(self) -> list:
        """The post-processing as :mod:`xsits.ops.steps` objects, for :func:`xsits.compute_all`."""
        return build_steps(**self._post)

    # ------------------------------------------------------------------ discovery

    def _read_aoi(self) -> gpd.GeoDataFrame:
        if self._aoi is None:
            self._aoi = read_aoi(self._aoi_arg, id_column=self._id_column)
        return self._aoi

    def _get_schema(self) -> Schema:
        """Read the AOI and search STAC once; no pixel is read."""
        aoi = self._read_aoi()
        geoboxes = feature_geoboxes(aoi, self._grid)
        if self._search is None:
            self._search = search(aoi, self._resolved_query(),
                                  footprints=footprints_4326(geoboxes))
        res = self._search
        self.feature_ids = [f for f in aoi["feature_id"] if res.items.get(f)]
        dates, shapes, crss = {}, {}, {}
        for fid in self.feature_ids:
            gbox = geoboxes[fid]
            ((lon, _),) = gbox.extent.centroid.to_crs("EPSG:4326").points
            groups = dated_groups(res.items[fid], lon)
            dates[fid] = list(groups)
            shapes[fid] = (len(groups), *gbox.shape)
            crss[fid] = str(gbox.crs)
        dtypes = self._dtypes()
        meta = {
            "n_features": int(len(aoi)),
            "feature_ids": list(self.feature_ids),
            "missing": dict(res.missing),
            "n_dates": {f: len(d) for f, d in dates.items()},
            "dates": dates,
            "shape": {f: list(s) for f, s in shapes.items()},
            "crs": crss,
            "bands": list(self._query.bands),
            "dims": ["time", "y", "x"],
            "stac": res.query.endpoint,
            "collection": self._query.collection,
            "query": self._query.describe(),
            "n_searches": res.n_searches,
            "postprocess": dict(self._post),
        }
        return Schema(datashape=None, dtype=dtypes, shape=None,
                      npartitions=len(self.feature_ids), extra_metadata=meta)

    def _dtypes(self) -> dict[str, str]:
        """Band dtypes of the cubes: the registry's (its files'); float32 once masked or filled.

        Mask and QA bands keep theirs; a collection outside the registry: SCL uint8, other
        bands uint16.
        """
        masked = self._post["mask"] or bool(self._post["gapfill"])
        entry = lookup(self._query.collection)
        out = {}
        for name in self._query.bands:
            band = entry.band(name) if entry is not None else None
            dtype, keep = ((band.dtype, band.role in ("mask", "qa")) if band is not None else
                           ("uint8", True) if name.upper() == "SCL" else ("uint16", False))
            out[name] = dtype if keep or not masked or dtype.startswith("float") else "float32"
        return out

    # ------------------------------------------------------------------ data

    def _cubes(self, aoi: gpd.GeoDataFrame) -> Cubes:
        cubes = open_cubes(aoi, spec=self.spec, search_result=self._search)
        out = Cubes({f: postprocess(ds, **self._post) for f, ds in cubes.items()},
                    missing=cubes.missing, search=cubes.search)
        return out

    def _get_partition(self, i: int):
        fid = self.feature_ids[i]
        aoi = self._read_aoi()
        return self._cubes(aoi[aoi["feature_id"] == fid])[fid]

    def read_partition(self, i: int | str):
        """One feature's lazy cube: ``i`` is a partition number or a feature id.

        Examples
        --------
        >>> from xsits.demo import demo_aoi
        >>> src = SitsSource(aoi=demo_aoi(), stac="demo", start="2024-04-01",
        ...                  end="2024-05-31")
        >>> src.read_partition("7").attrs["feature_id"]
        '7'
        """
        self._load_metadata()
        if isinstance(i, str):
            if i not in self.feature_ids:
                raise CatalogError(
                    f"feature {i!r} has no partition: "
                    f"{self._search.missing.get(i, 'not in the AOI')}; "
                    f"partitions are {self.feature_ids}"
                )
            i = self.feature_ids.index(i)
        return super().read_partition(i)

    def to_dask(self) -> Cubes:
        """All features as lazy cubes: :class:`xsits.Cubes` ``{feature_id: Dataset}``.

        The dict follows the partition order; ``.missing`` says why the other features have
        no cube. Nothing is read.

        Examples
        --------
        >>> from xsits.demo import demo_aoi
        >>> src = SitsSource(aoi=demo_aoi(), stac="demo", start="2024-04-01",
        ...                  end="2024-05-31", bands=["B04"])
        >>> cubes = src.to_dask()
        >>> sorted(cubes), cubes["7"].B04.chunks is not None
        (['1', '10', '3', '4', '5', '7'], True)
        """
        self._load_metadata()
        return self._cubes(self._read_aoi())

    def read(self) -> Cubes:
        """All features computed in one ``dask.compute``: :class:`xsits.Cubes` of in-memory cubes.

        Examples
        --------
        >>> from xsits.demo import demo_aoi
        >>> src = SitsSource(aoi=demo_aoi(), stac="demo", start="2024-04-01",
        ...                  end="2024-05-31", bands=["B04"])
        >>> cubes = src.read()
        >>> cubes["7"].B04.chunks is None  # in memory
        True
        """
        lazy = self.to_dask()
        (computed,) = dask.compute(dict(lazy))
        return Cubes({f: computed[f] for f in lazy}, missing=lazy.missing, search=lazy.search)

    def _close(self) -> None:
        self._aoi = None
        self._search = None
        self._schema = None


def _resolve_stac(stac: str) -> str:
    """``"demo"`` -> the embedded demo ItemCollection (generated on first use)."""
    return resolve_stac(stac) if is_demo(stac) else stac
