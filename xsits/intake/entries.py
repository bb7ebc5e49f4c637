"""Catalog entries of the ``sits`` driver, made from the one spec; the packaged catalogs.

Owns: :class:`SitsEntry`, an Intake catalog entry whose user parameters are the fields of
:class:`xsits.CubeSpec` the command line offers (:data:`xsits.cube.spec.OPTIONS`: help text,
kind, the dataclass's default) and the source's own options (:data:`ENTRY_OPTIONS`), checked
before Intake sees them (:func:`check_entry_arguments`: unknown names, wrong types, values
outside ``allowed`` raise :class:`~xsits.errors.CatalogError`); the packaged catalogs
(``xsits/catalogs/*.yaml``, package data) as one catalog, :func:`packaged_catalog`, which the
``intake.catalogs`` entry point ``xsits`` names: ``intake.cat.xsits`` after a plain install.
Must not: patch Intake (entries subclass its ``LocalCatalogEntry``); hold a default of its own.

A YAML entry writes only what differs from the spec::

    sources:
      s2_earth_search:
        cls: xsits.intake.entries.SitsEntry
        kwargs:
          name: s2_earth_search
          description: Sentinel-2 L2A cubes per AOI feature from Earth Search
          args: {stac: earth-search, collection: sentinel-2-l2a}     # fixed
          parameters: {max_cloud: {default: 20}}                     # changed

Examples
--------
>>> src = packaged_catalog().demo(max_cloud=30)
>>> src.discover()["npartitions"]
6
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
from intake.catalog.local import LocalCatalogEntry, UserParameter, YAMLFilesCatalog

from xsits._common import redact
from xsits.cube.spec import OPTIONS, SPEC_ARGS, Option, default
from xsits.errors import CatalogError
from xsits.intake import SOURCE_ARGS, SitsSource
from xsits.ops.gapfill import METHODS as GAPFILL_METHODS
from xsits.ops.steps import StepOptions
from xsits.stac.collections import has_cloud_cover, lookup

__all__ = [
    "BUNDLED_AOI",
    "CATALOG_DIR",
    "ENTRY_OPTIONS",
    "SitsEntry",
    "check_entry_arguments",
    "entry_default",
    "entry_parameters",
    "offered_options",
    "packaged_catalog",
]

#: The packaged catalogs (package data): ``intake.cat.xsits`` opens every ``*.yaml`` here.
CATALOG_DIR = Path(__file__).resolve().parents[1] / "catalogs"
#: The 24 bundled points of the seed notebook: every packaged entry's default AOI.
BUNDLED_AOI = CATALOG_DIR / "data" / "rand_pts.geojson"

#: Intake parameter type of each kind of spec field (:class:`xsits.cube.spec.Option`).
_TYPES = {"text": "str", "bands": "mlist", "percent": "float", "json": "dict", "cql2": "other",
          "positive": "float", "metres": "float", "size": "other", "choice": "str", "flag": "bool"}
_STEP_DEFAULTS = {f.name: f.default for f in dataclasses.fields(StepOptions)}
#: The entry parameters of the source itself, after the spec's (:data:`OPTIONS`).
ENTRY_OPTIONS: tuple[Option, ...] = (
    Option("aoi", "AOI file: GeoJSON, GPKG, Shapefile, or CSV with lon/lat columns (default: "
                  "the 24 bundled points). For a GeoDataFrame use intake.open_sits(aoi=gdf)."),
    Option("id_column", "Column of the feature ids ('' = the feature_id or id column, else the "
                        "row number)."),
    Option("harmonize", "Undo the +1000 reflectance offset of processing baseline >= 04.00.",
           "flag"),
    Option("mask", "Mask clouds, shadows and nodata by the collection's rule (SCL classes, QA "
                   "bits) with NaN.", "flag"),
    Option("gapfill", "Fill masked pixels along time ('none' = no gap-filling).", "choice",
           ("none", *GAPFILL_METHODS)),
)


def entry_default(name: str) -> Any:
    """The default of an entry parameter, each written once: the spec's or the steps'.

    The steps' are :class:`xsits.ops.steps.StepOptions`' (``gapfill``: ``"none"`` for None).

    ``aoi`` defaults to the bundled points (:data:`BUNDLED_AOI`); ``size`` is one int for a
    square patch; a default of None means "the source's own".

    Examples
    --------
    >>> entry_default("size"), entry_default("bands"), entry_default("mask")
    (10, None, False)
    """
    if name == "aoi":
        return str(BUNDLED_AOI)
    if name == "gapfill":
        return _STEP_DEFAULTS["gapfill"] or "none"
    if name in _STEP_DEFAULTS:
        return _STEP_DEFAULTS[name]
    if name in SPEC_ARGS:
        value = default(name)
        if name == "size":  # one int: a square patch
            return value[0] if value[0] == value[1] else list(value)
        return list(value) if isinstance(value, tuple) else value
    return None


def _patch_size(value: Any) -> int | tuple[int, int]:
    """A patch size as :class:`~xsits.cube.grid.GridSpec` takes it: an int or ``(w, h)``.

    Takes an int (a square), ``[w, h]`` or ``"WxH"`` text; raises ValueError otherwise.

    Examples
    --------
    >>> _patch_size(10), _patch_size([12, 8]), _patch_size("12x8"), _patch_size("12")
    (10, (12, 8), (12, 8), (12, 12))
    """
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", value)
        value = (int(m.group(1)), int(m.group(2) or m.group(1))) if m else None
    pair = isinstance(value, list | tuple) and len(value) == 2
    parts = tuple(value) if pair else (value,)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in parts):
        raise ValueError("give whole numbers of pixels >= 1, e.g. 10, [12, 8] or '12x8'")
    return parts if pair else parts[0]


class _Parameter(UserParameter):
    """A :class:`~intake.catalog.local.UserParameter` whose absent default stays absent.

    Intake turns a default of None into its type's empty value (``0.0`` for a float):
    ``max_cloud`` would filter everything. Here None means "the source's own default".
    """

    def __init__(self, name: str, description: str, type: str, default: Any = None,
                 kind: str = "text", **limits: Any) -> None:
        super().__init__(name, description=description, type=type, default=default, **limits)
        self.kind = kind  # of its spec field (xsits.cube.spec.Option)
        if default is None:
            self.default = self.expanded_default = None

    def validate(self, value: Any) -> Any:
        """Intake's check, after splitting the text of a list on commas.

        ``"red, nir08"`` is ``["red", "nir08"]`` for a ``list`` or ``mlist``; a ``size`` is
        :func:`_patch_size`'s; another ``other`` value (CQL2 text or JSON) is the source's to
        check.
        """
        if self.kind == "size":
            return _patch_size(value)
        if self.type in ("list", "mlist") and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if self.type == "other":
            return value
        return super().validate(value)


def offered_options(args: Mapping[str, Any]) -> list[Option]:
    """The spec fields and source options an entry offers as parameters, in order.

    All of :data:`OPTIONS` and :data:`ENTRY_OPTIONS` but those fixed in ``args``; when
    ``args`` fix a collection of the registry, but what does not apply to it: ``max_cloud``
    when its items have no cloud cover (:func:`xsits.stac.collections.has_cloud_cover`),
    ``mask`` when it has no cloud mask (Sentinel-1 for both).

    Examples
    --------
    >>> names = [o.name for o in offered_options({"collection": "sentinel-1-rtc"})]
    >>> "max_cloud" in names, "mask" in names, "collection" in names, names[:2]
    (False, False, False, ['stac', 'bands'])
    """
    entry = lookup(args["collection"]) if "collection" in args else None
    skip = set(args)
    if entry is not None:
        skip |= {"max_cloud"} if not has_cloud_cover(entry.id) else set()
        skip |= {"mask"} if entry.mask is None else set()
    return [o for o in (*OPTIONS, *ENTRY_OPTIONS) if o.name not in skip]


def entry_parameters(
    args: Mapping[str, Any], overrides: Mapping[str, Mapping[str, Any]], name: str = "?"
) -> list[UserParameter]:
    """The user parameters of a ``sits`` entry, made from the spec (:data:`OPTIONS`).

    Every spec field the command line offers and the source's own options
    (:data:`ENTRY_OPTIONS`) are parameters, but those the entry fixes in ``args`` and those
    that do not apply to its collection (:func:`offered_options`); each takes
    its help text as description, its kind as type and its dataclass default. ``overrides``
    holds what an entry changes: ``{parameter: {"default": ..., "allowed": [...],
    "description": ..., "min": ..., "max": ...}}``. ``bands`` of an entry that fixes a
    collection of the registry (:mod:`xsits.stac.collections`) allow every name of its bands;
    of another collection, or where the user chooses it, any list
    (:class:`~xsits.stac.query.StacQuery` checks the names).

    Parameters
    ----------
    args
        The arguments the entry fixes (``stac``, ``collection``...).
    overrides
        What differs from the spec, per parameter.
    name
        The entry's name (for error messages).

    Returns
    -------
    list of intake.catalog.local.UserParameter

    Raises
    ------
    xsits.errors.CatalogError
        An override of no parameter, or of an unknown field.

    Examples
    --------
    >>> ps = {p.name: p for p in entry_parameters({"stac": "earth-search"}, {})}
    >>> ps["max_cloud"].type, ps["max_cloud"].max, ps["max_cloud"].default
    ('float', 100.0, None)
    >>> ps["mode"].allowed, ps["size"].default, "stac" in ps
    (['image', 'patch'], 10, False)
    """
    options = offered_options(args)
    fixed = lookup(args["collection"]) if "collection" in args else None
    names = {o.name for o in options}
    wrong = sorted(set(overrides) - names)
    if wrong:
        raise CatalogError(f"catalog entry {name!r}: parameters {wrong} cannot be set here: "
                           f"they are fixed in its args or unknown; its parameters are "
                           f"{sorted(names)}")
    out = []
    for opt in options:
        limits: dict[str, Any] = {}
        if opt.choices:
            limits["allowed"] = list(opt.choices)
        if opt.kind == "percent":
            limits.update(min=0, max=100)
        known = fixed if opt.name == "bands" else None
        if known is not None:  # every name of its bands (xsits.stac.collections)
            limits["allowed"] = list(dict.fromkeys(n for b in known.bands for n in b.names))
        given = dict(overrides.get(opt.name) or {})
        unknown = sorted(set(given) - {"default", "allowed", "description", "min", "max"})
        if unknown:
            raise CatalogError(f"catalog entry {name!r}: parameter {opt.name!r} has unknown "
                               f"keys {unknown}; use default, allowed, description, min, max")
        limits.update({k: v for k, v in given.items() if k in ("allowed", "min", "max")})
        kind = _TYPES[opt.kind]
        if kind == "mlist" and not limits.get("allowed"):
            kind = "list"
        out.append(_Parameter(opt.name, given.get("description", opt.help), kind,
                              given.get("default", entry_default(opt.name)), opt.kind,
                              **limits))
    return out


class SitsEntry(LocalCatalogEntry):
    """A catalog entry of the ``sits`` driver whose parameters are the spec's fields.

    A YAML catalog names it with ``cls: xsits.intake.entries.SitsEntry`` and gives only what
    differs from the spec (:func:`entry_parameters`); the entry checks the user's
    arguments with :func:`check_entry_arguments` before Intake merges them, so that bad
    input raises :class:`~xsits.errors.CatalogError`.

    Parameters
    ----------
    name
        The entry's name (its key in the YAML file).
    description
        One paragraph for users.
    args
        Fixed arguments of :class:`SitsSource` (``stac``, ``collection``...): not parameters.
    parameters
        What the entry changes of its parameters: ``{name: {"default": ..., "allowed":
        [...]}}``.
    metadata
        Intake metadata of the entry.

    Raises
    ------
    xsits.errors.CatalogError
        An argument or parameter override that :class:`SitsSource` does not know.

    Examples
    --------
    >>> entry = SitsEntry("s2", args={"stac": "earth-search"},
    ...                   parameters={"start": {"default": "2024-05-01"}})
    >>> src = entry(end="2024-06-30")
    >>> src.spec.query.start, src.spec.query.end, src.spec.query.stac
    ('2024-05-01', '2024-06-30', 'earth-search')
    >>> entry(stac="planetary-computer")
    Traceback (most recent call last):
    xsits.errors.CatalogError: catalog entry 's2': stac is fixed to 'earth-search' here; ...
    """

    def __init__(self, name: str, description: str = "", args: Mapping[str, Any] | None = None,
                 parameters: Mapping[str, Mapping[str, Any]] | None = None,
                 metadata: Mapping[str, Any] | None = None) -> None:
        args = dict(args or {})
        unknown = sorted(set(args) - set(SOURCE_ARGS))
        if unknown:
            raise CatalogError(f"catalog entry {name!r}: unknown args {unknown}; known are "
                               f"{sorted(SOURCE_ARGS)}")
        super().__init__(name, description, SitsSource, args=args,
                         parameters=entry_parameters(args, parameters or {}, name),
                         metadata=dict(metadata or {}))

    def _create_open_args(self, user_parameters: dict[str, Any]) -> tuple[type, dict[str, Any]]:
        """The source's arguments: the fixed args, then each parameter's value or default.

        The user's arguments are checked first (:func:`check_entry_arguments`); a parameter
        whose default is None is left out, so that the source applies its own.
        """
        check_entry_arguments(self, user_parameters)
        params = {p.name: p for p in self._user_parameters}
        args = dict(self._open_args)
        for name, p in params.items():
            value = user_parameters.get(name, p.default)
            if value is not None:
                args[name] = p.validate(value)
        args.update({k: v for k, v in user_parameters.items() if k not in params})
        args["metadata"] = {**self._metadata, "catalog_dir": self._catalog_dir}
        return SitsSource, args


def check_entry_arguments(entry: LocalCatalogEntry, user_inputs: Mapping[str, Any]) -> None:
    """Validate user arguments of a ``sits`` catalog entry; raise :class:`CatalogError`.

    Checks what Intake would otherwise report with a bare ``ValueError`` from deep inside:
    unknown parameter names, arguments the entry fixes, values of the wrong type, values
    outside ``allowed`` or ``min``/``max``. Messages quote values through
    :func:`xsits._common.redact`: a signed URL's secret never shows.

    Parameters
    ----------
    entry
        An Intake ``LocalCatalogEntry`` whose driver is ``sits`` (a :class:`SitsEntry`).
    user_inputs
        The keyword arguments given to the entry.

    Examples
    --------
    >>> import intake
    >>> cat = intake.open_catalog("catalogs/demo.yaml")
    >>> cat.demo(max_cloud="lots")
    Traceback (most recent call last):
    xsits.errors.CatalogError: catalog entry 'demo': max_cloud='lots' is not a number ...
    """
    params = {p.name: p for p in (entry._user_parameters or [])}
    name = entry.name
    fixed = dict(entry._open_args or {})
    for key in sorted(set(user_inputs) & set(fixed)):
        raise CatalogError(redact(f"catalog entry {name!r}: {key} is fixed to {fixed[key]!r} "
                                  f"here; choose another entry or use "
                                  f"intake.open_sits({key}=...)"))
    known = set(params) | set(SOURCE_ARGS)
    unknown = sorted(set(user_inputs) - known)
    if unknown:
        raise CatalogError(
            f"catalog entry {name!r}: unknown parameter(s) {unknown}; "
            f"its parameters are {sorted(params)}"
        )
    if isinstance(user_inputs.get("aoi"), gpd.GeoDataFrame):
        raise CatalogError(
            f"catalog entry {name!r}: aoi must be a file path here; for a GeoDataFrame use "
            "intake.open_sits(aoi=gdf, ...) or xsits.intake.SitsSource(aoi=gdf, ...)"
        )
    for key, value in user_inputs.items():
        p = params.get(key)
        if p is None or value is None:
            continue
        try:
            p.validate(value)
        except (ValueError, TypeError, SyntaxError, KeyError) as err:
            want = _WANT.get(getattr(p, "kind", ""), _WANT.get(p.type, f"a {p.type}"))
            if p.allowed:
                want += f" in {list(p.allowed)}"
            if p.min is not None or p.max is not None:
                want += f" within [{p.min}, {p.max}]"
            raise CatalogError(redact(
                f"catalog entry {name!r}: {key}={value!r} is not {want} ({err}); fix the value"
            )) from None


_WANT = {"size": "a patch size: an int, [w, h] or 'WxH' text",
         "mlist": "a list of values", "list": "a list", "int": "an int (whole number)",
         "float": "a number", "str": "a text", "dict": "a mapping", "bool": "true or false"}


@functools.cache
def packaged_catalog() -> YAMLFilesCatalog:
    """Every packaged catalog's entries as one Intake catalog: ``intake.cat.xsits``.

    The ``intake.catalogs`` entry point ``xsits`` names this catalog (the module attribute
    ``catalog``), so that it opens after a plain install, outside any clone.

    Examples
    --------
    >>> sorted(packaged_catalog())  # doctest: +NORMALIZE_WHITESPACE
    ['demo', 'hls_l30_nasa', 'hls_l30_planetary_computer', 'hls_s30_nasa',
     'hls_s30_planetary_computer', 'landsat_earth_search', 'landsat_planetary_computer',
     's1_planetary_computer', 's2_earth_search', 's2_planetary_computer', 's2_points']
    """
    return YAMLFilesCatalog(str(CATALOG_DIR / "*.yaml"), flatten=True, name="xsits",
                            description="xsits: satellite image time series per AOI feature")


def __getattr__(name: str) -> Any:
    """``xsits.intake.catalog``: :func:`packaged_catalog`, made on first use."""
    if name == "catalog":
        return packaged_catalog()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
