"""One spec of the cubes a call asks for: what to search, on which grid, how to load.

Owns: :class:`CubeSpec` (a :class:`~xsits.stac.query.StacQuery`, a
:class:`~xsits.cube.grid.GridSpec` and a :class:`LoadSpec`), made from keyword arguments once,
at the public boundary (:meth:`CubeSpec.from_kwargs`: :func:`xsits.open_cubes`,
:func:`xsits.sample`, :class:`xsits.batch.AoiSource`, the Intake ``sits`` driver, the
``xsits`` command) and handed down whole to the loader and the manifest;
:data:`SPEC_ARGS`, the keyword names of its fields (each default is written once, in its
dataclass); :data:`OPTIONS`, the help text and kind of the fields the command line offers
(``xsits fetch`` / ``xsits sample`` build their options from it).
Must not: search, plan or read; know click or Intake.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from xsits.cube.grid import GridSpec, validate_resampling
from xsits.errors import XsitsError
from xsits.stac.collections import lookup
from xsits.stac.query import StacQuery

__all__ = ["OPTIONS", "SPEC_ARGS", "CubeSpec", "LoadSpec", "Option", "split_kwargs"]


@dataclass(frozen=True)
class LoadSpec:
    """How each feature's cube is loaded once its items and grid are known.

    Parameters
    ----------
    chunks
        Dask chunks; default :data:`xsits.cube.plan.CHUNKS` (see :func:`xsits.cube.load.load_cube`).
    resampling
        Resampling when the output grid is not the native one, for all bands or per band
        (``SCL`` is always nearest). Default ``"nearest"``.
    clip
        For polygon features: pixels outside the polygon set to NaN (float bands) or to the
        band's nodata (:func:`xsits.cube.clip.clip`). Default False.
    all_touched
        With ``clip``: keep every pixel the polygon touches. Default False.

    Examples
    --------
    >>> LoadSpec(resampling="bilinear").resampling
    'bilinear'
    """

    chunks: Mapping[str, int] | None = field(default=None, hash=False)
    resampling: str | Mapping[str, str] = field(default="nearest", hash=False)
    clip: bool = False
    all_touched: bool = False


#: Which part of a :class:`CubeSpec` each of its three dataclasses is.
PARTS: dict[str, type] = {"query": StacQuery, "grid": GridSpec, "load": LoadSpec}
#: ``{keyword: part}`` for every field of the three parts.
_PART_OF: dict[str, str] = {f.name: part for part, cls in PARTS.items()
                            for f in dataclasses.fields(cls)}
#: The keyword arguments a spec is made from (:meth:`CubeSpec.from_kwargs`), in order.
SPEC_ARGS: tuple[str, ...] = tuple(_PART_OF)


@dataclass(frozen=True)
class CubeSpec:
    """What cubes to make: the search, the pixel grid and the load, as one frozen value.

    Parameters
    ----------
    query
        What to search (:class:`~xsits.stac.query.StacQuery`).
    grid
        Each feature's pixel grid (:class:`~xsits.cube.grid.GridSpec`).
    load
        How cubes are loaded (:class:`LoadSpec`); its resampling is checked against the
        query's bands when the spec is made.

    Examples
    --------
    >>> spec = CubeSpec.from_kwargs(stac="earth-search", bands="B04,SCL", mode="patch", size=5)
    >>> spec.query.bands, spec.grid.size, spec.load.resampling
    (('B04', 'SCL'), (5, 5), 'nearest')
    >>> CubeSpec.from_kwargs(spec, start="2024-03-01").query.start
    '2024-03-01'
    """

    query: StacQuery = field(default_factory=StacQuery)
    grid: GridSpec = field(default_factory=GridSpec)
    load: LoadSpec = field(default_factory=LoadSpec)

    def __post_init__(self) -> None:
        resampling = validate_resampling(self.load.resampling, bands=self.query.bands)
        object.__setattr__(self, "load", dataclasses.replace(self.load, resampling=resampling))

    @classmethod
    def from_kwargs(cls, spec: CubeSpec | None = None, /, **kwargs: Any) -> CubeSpec:
        """``spec`` (default: the defaults) with the fields named in ``kwargs`` changed.

        Parameters
        ----------
        spec
            The spec to start from.
        **kwargs
            Fields of any part by name (:data:`SPEC_ARGS`: ``stac``, ``bands``, ``mode``,
            ``size``, ``resampling``...). A ``collection`` without ``bands`` loads that
            collection's default bands (:mod:`xsits.stac.collections`).

        Raises
        ------
        TypeError
            A keyword that is no field of a spec.
        xsits.errors.QueryError, xsits.errors.GridError
            A bad value (checked by each part when it is made).

        Examples
        --------
        >>> CubeSpec.from_kwargs(collection="landsat-c2-l2").query.bands
        ('green', 'red', 'nir08', 'qa_pixel')
        >>> CubeSpec.from_kwargs(stack=1)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: unknown argument(s) ['stack']; known: stac, collection, start, ...
        """
        unknown = [k for k in kwargs if k not in _PART_OF]
        if unknown:
            raise TypeError(f"unknown argument(s) {unknown}; known: {', '.join(SPEC_ARGS)}")
        entry = lookup(kwargs.get("collection")) if "bands" not in kwargs else None
        if entry is not None and (spec is None or spec.query.bands == StacQuery.bands):
            kwargs["bands"] = entry.default_bands  # the registry's default bands
        parts: dict[str, Any] = {}
        for part, part_cls in PARTS.items():
            given = {k: v for k, v in kwargs.items() if _PART_OF[k] == part}
            if spec is None:
                parts[part] = part_cls(**given)
            else:
                mine = getattr(spec, part)
                parts[part] = dataclasses.replace(mine, **given) if given else mine
        return cls(**parts)

    def kwargs(self) -> dict[str, Any]:
        """Every field as ``{keyword: value}``, what :meth:`from_kwargs` takes back.

        Examples
        --------
        >>> CubeSpec().kwargs()["bands"]
        ('B03', 'B04', 'B08', 'SCL')
        """
        return {f.name: getattr(getattr(self, part), f.name)
                for part, cls in PARTS.items() for f in dataclasses.fields(cls)}

    def describe(self) -> dict[str, Any]:
        """The spec for a manifest: every field, ``stac`` as its endpoint without a token.

        Examples
        --------
        >>> d = CubeSpec.from_kwargs(stac="earth-search").describe()
        >>> d["stac"], d["mode"], d["size"]
        ('https://earth-search.aws.element84.com/v1', 'image', (10, 10))
        """
        out = self.kwargs()
        try:
            out["stac"] = self.query.endpoint
        except XsitsError:
            pass
        return out


def split_kwargs(kwargs: Mapping[str, Any]) -> tuple[CubeSpec, dict[str, Any]]:
    """``open_cubes`` keyword arguments as ``(spec, the others)``; ``spec=`` is a base.

    Examples
    --------
    >>> spec, rest = split_kwargs({"mode": "patch", "id_column": "pt"})
    >>> spec.grid.mode, rest
    ('patch', {'id_column': 'pt'})
    """
    rest = {k: v for k, v in kwargs.items() if k not in _PART_OF and k != "spec"}
    mine = {k: v for k, v in kwargs.items() if k in _PART_OF}
    return CubeSpec.from_kwargs(kwargs.get("spec"), **mine), rest


class Option(NamedTuple):
    """One spec field the command line offers: its help text and the kind of its value.

    ``kind`` is one of ``"text"``, ``"bands"`` (comma-separated), ``"percent"`` (0..100),
    ``"json"`` (a JSON object), ``"cql2"`` (JSON or CQL2 text), ``"positive"`` (a number
    > 0), ``"metres"`` (a number), ``"size"`` (``WxH``), ``"choice"`` (``choices``).
    """

    name: str
    help: str
    kind: str = "text"
    choices: tuple[str, ...] = ()


#: The spec fields of the command line, in the order of its help (defaults: the dataclasses').
OPTIONS: tuple[Option, ...] = (
    Option("stac", "STAC API: preset (planetary-computer, earth-search), URL, or local "
                   "ItemCollection/catalog file."),
    Option("collection", "Collection id."),
    Option("bands", "Comma-separated asset keys.", "bands"),
    Option("start", "First date (YYYY-MM-DD)."),
    Option("end", "Last date, inclusive (YYYY-MM-DD)."),
    Option("max_cloud", "Keep items with eo:cloud_cover below this percentage.", "percent"),
    Option("query", 'STAC query extension as JSON, e.g. \'{"s2:mgrs_tile": {"eq": "32UMA"}}\'.',
           "json"),
    Option("filter", "CQL2 filter, JSON or text (e.g. \"eo:cloud_cover < 10\").", "cql2"),
    Option("resolution", "Pixel size in metres.", "positive"),
    Option("crs", "Cube CRS: 'utm' (per feature) or e.g. EPSG:3035."),
    Option("mode", "image: the feature's bounds (+buffer); patch: fixed size around its centre.",
           "choice", ("image", "patch")),
    Option("size", "Patch size WxH in pixels.", "size"),
    Option("buffer", "Buffer around features, metres.", "metres"),
)


def default(name: str) -> Any:
    """The default of spec field ``name``, as its dataclass writes it.

    Examples
    --------
    >>> default("bands"), default("size")
    (('B03', 'B04', 'B08', 'SCL'), (10, 10))
    """
    (f,) = [f for f in dataclasses.fields(PARTS[_PART_OF[name]]) if f.name == name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default
