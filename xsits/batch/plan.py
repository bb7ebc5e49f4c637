"""Which features, in which batches, written where: the plan of a :func:`compute_all` run.

Owns the inputs :func:`xsits.batch.compute_all` accepts (a dict of cubes, an
:class:`AoiSource` or Intake ``sits`` source, an object with ``to_cubes_batches``), their
order (features sharing files next to each other), the batches they are cut into (for
sources: cubes handed over group by group while the next groups are searched), and each
feature's output path, planned before anything is read so that a rerun skips it.

It must not read pixels or run steps (:mod:`xsits.batch.run` does) nor write anything.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import xarray as xr

from xsits._common import context_thread, redact
from xsits.batch.report import Row, Status, describe_kwargs, missing_row, row
from xsits.cube.load import open_cubes
from xsits.cube.spec import CubeSpec, split_kwargs
from xsits.errors import BatchError, XsitsError
from xsits.out.export import output_path
from xsits.stac.search import group_features

__all__ = ["AoiSource"]


# --------------------------------------------------------------------------- inputs


@dataclass
class AoiSource:
    """Features plus :func:`xsits.open_cubes` arguments; cubes are opened one batch at a time.

    What ``xsits fetch`` hands to :func:`compute_all`; any object with ``.aoi`` and
    ``.open_kwargs`` (such as the Intake ``sits`` source) works the same way. Features dropped
    by ``read_aoi(on_invalid="drop")`` (``aoi.attrs["dropped"]``) are reported ``failed``.

    Parameters
    ----------
    aoi
        A GeoDataFrame from :func:`xsits.read_aoi` (with a ``feature_id`` column).
    open_kwargs
        Keyword arguments of :func:`xsits.open_cubes`: a ``spec``
        (:class:`~xsits.cube.spec.CubeSpec`) and / or its fields (``stac``, ``bands``,
        ``start``...), made into one spec when the run is planned (:attr:`spec`).

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely.geometry import Point
    >>> from xsits import read_aoi
    >>> aoi = read_aoi(gpd.GeoDataFrame(geometry=[Point(8.4, 49.8)], crs=4326))
    >>> AoiSource(aoi, {"stac": "earth-search", "max_cloud": 10}).open_kwargs["max_cloud"]
    10
    """

    aoi: Any
    open_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> CubeSpec:
        """The :class:`~xsits.cube.spec.CubeSpec` of :attr:`open_kwargs`."""
        return split_kwargs(self.open_kwargs)[0]


NAME_ATTRS = ("feature_id", "mode", "start", "end")


def planned_path(attrs: Mapping[str, Any], steps: Sequence[Callable], out_dir: Path,
                  fmt: str | None) -> Path:
    """Where a feature is written, planned before anything is read.

    :func:`xsits.out.export.output_path` of the input cube's naming attributes as changed by the
    steps' ``output_attrs``, so a rerun finds the file without computing anything.
    """
    named = {k: attrs[k] for k in NAME_ATTRS if attrs.get(k) is not None}
    for step in steps:
        hook = getattr(step, "output_attrs", None)
        if callable(hook):
            named = dict(hook(named))
    return Path(output_path(xr.Dataset(attrs=named), out_dir, format=fmt))


def _source_attrs(fid: str, spec: CubeSpec, rest: Mapping[str, Any]) -> dict[str, Any]:
    """The naming attributes :func:`xsits.open_cubes` will give feature ``fid``'s cube."""
    result = rest.get("search_result")
    q = result.query if result is not None else spec.query
    return {"feature_id": fid, "mode": spec.grid.mode, "start": q.start, "end": q.end}


# --------------------------------------------------------------------------- batches


@dataclass
class Batch:
    cubes: Mapping[str, xr.Dataset]
    rows: list[Row]  # rows already decided (missing, dropped, skipped)


class Plan:
    """All feature ids (report order) and a generator of batches."""

    def __init__(self, ids: list[str], batches: Iterator[Batch], source_info: Any) -> None:
        self.ids = ids
        self.batches = batches
        self.source_info = source_info


def _chunks(seq: Sequence, n: int) -> Iterator[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def _locality_key(ds: xr.Dataset) -> tuple:
    """Sort key putting cubes that read the same files next to each other (same tile, near)."""
    tile = ds.coords["mgrs_tile"].values[0] if "mgrs_tile" in ds.coords and ds.sizes.get(
        "time") else ""
    return (str(ds.attrs.get("crs", "")), str(tile), float(ds.attrs.get("center_y", 0.0)),
            float(ds.attrs.get("center_x", 0.0)))


def _plan_mapping(cubes: Mapping[str, xr.Dataset], batch_size: int) -> Plan:
    missing = dict(getattr(cubes, "missing", None) or {})
    fids = [str(f) for f in cubes]
    ids = fids + [f for f in missing if f not in cubes]
    # features sharing files run one after the other: their bytes come from the reader's
    # cache (the report keeps the input order)
    keys = {f: _locality_key(ds) for f, ds in cubes.items()}
    order = sorted(cubes, key=lambda f: keys[f])

    def gen() -> Iterator[Batch]:
        yield Batch({}, [missing_row(f, r) for f, r in missing.items() if f not in cubes])
        for part in _chunks(order, batch_size):
            yield Batch({str(f): cubes[f] for f in part}, [])

    return Plan(ids, gen(), None)


def _spatial_order(aoi: Any) -> list[int]:
    """Row positions ordered so that nearby features share a batch (and a STAC search)."""
    if len(aoi) == 0:
        return []
    geoms = aoi.geometry.to_crs("EPSG:4326")
    fp = gpd.GeoSeries(geoms.values, index=range(len(aoi)), crs="EPSG:4326")
    return [int(i) for group in group_features(fp) for i in group]


def _plan_source(source: Any, batch_size: int, out_dir: Path, fmt: str | None,
                 overwrite: bool, steps: Sequence[Callable]) -> Plan:

    aoi = source.aoi
    spec, rest = split_kwargs(source.open_kwargs or {})  # the one spec of the run
    dropped = dict((getattr(aoi, "attrs", None) or {}).get("dropped", {}))
    fids = [str(f) for f in aoi["feature_id"]]
    ids = fids + [f for f in dropped if f not in set(fids)]

    def gen() -> Iterator[Batch]:
        yield Batch({}, [row(f, Status.FAILED, error=f"feature {f!r}: {redact(str(r))}")
                          for f, r in dropped.items() if f not in set(fids)])
        rows, subs = [], []
        for part in _chunks(_spatial_order(aoi), batch_size):
            todo = []
            for pos in part:
                fid = fids[pos]
                try:
                    path = planned_path(_source_attrs(fid, spec, rest), steps, out_dir, fmt)
                except XsitsError:  # reported with the cube (or its absence) below
                    path = None
                if path is not None and path.exists() and not overwrite:
                    rows.append(row(fid, Status.SKIPPED, path))
                else:
                    todo.append(pos)
            if todo:
                subs.append(aoi.iloc[sorted(todo)])
        yield Batch({}, rows)
        yield from _streamed_batches(subs, {**rest, "spec": spec}, batch_size)

    return Plan(ids, gen(), describe_kwargs({**rest, "spec": spec}))


_END = object()


def _streamed_batches(subs: Sequence[Any], kwargs: Mapping[str, Any],
                      batch_size: int) -> Iterator[Batch]:
    """Batches of cubes as their searches return: the next groups search while one computes.

    A thread opens the cubes of each part of the AOI in turn (:func:`xsits.open_cubes`, its
    ``on_group`` hook queueing each group's cubes); every batch takes what is queued (at
    least one group, at most ``batch_size`` features). The queue is bounded: the searches run
    at most a few groups ahead of the computing.
    """
    out: queue.Queue = queue.Queue(maxsize=16)
    stop = threading.Event()

    def put(item: Any) -> None:
        while not stop.is_set():
            try:
                return out.put(item, timeout=0.2)
            except queue.Full:
                continue

    def produce() -> None:
        sent: set[str] = set()

        def send(group: Mapping[str, xr.Dataset]) -> None:
            sent.update(group)
            put(group)

        try:
            for sub in subs:
                cubes = open_cubes(sub, on_group=send, **kwargs)
                ids = set(sub["feature_id"])
                if any(f not in sent for f in cubes):  # cubes not handed out by on_group
                    send({f: c for f, c in cubes.items() if f not in sent})
                put([missing_row(f, r) for f, r in cubes.missing.items()
                     if f in ids and f not in cubes])
        except BaseException as err:  # raised again by the consumer
            put(err)
        finally:
            put(_END)

    thread = context_thread(produce, "xsits-search")  # in the run's options
    thread.start()
    try:
        ended = False
        while not ended:
            got = [out.get()]
            n = len(got[0]) if isinstance(got[0], Mapping) else 0
            while n < batch_size:
                try:
                    got.append(out.get_nowait())
                except queue.Empty:
                    break
                n += len(got[-1]) if isinstance(got[-1], Mapping) else 0
            cubes: dict[str, xr.Dataset] = {}
            rows: list[Row] = []
            for item in got:
                if item is _END:
                    ended = True
                elif isinstance(item, BaseException):
                    raise item
                elif isinstance(item, list):
                    rows += item
                else:
                    cubes.update(item)
            yield Batch(cubes, rows)
    finally:
        stop.set()
        thread.join(timeout=5)


def _plan_batches_method(source: Any, batch_size: int) -> Plan:
    aoi = getattr(source, "aoi", None)
    ids = [] if aoi is None else [str(f) for f in aoi["feature_id"]]

    def gen() -> Iterator[Batch]:
        for cubes in source.to_cubes_batches(batch_size):
            missing = dict(getattr(cubes, "missing", None) or {})
            for f in [*cubes, *missing]:
                if f not in ids:
                    ids.append(f)
            yield Batch(cubes, [missing_row(f, r) for f, r in missing.items()
                                 if f not in cubes])

    return Plan(ids, gen(), None)


def plan_batches(obj: Any, batch_size: int, out_dir: Path, fmt: str | None, overwrite: bool,
                 steps: Sequence[Callable]) -> Plan:
    """The plan of a run over ``obj`` (cubes, a source, or ``to_cubes_batches``)."""
    if isinstance(obj, Mapping):
        bad = [f for f, v in obj.items() if not isinstance(v, xr.Dataset)]
        if bad:
            raise BatchError(f"cubes[{bad[0]!r}] is a {type(obj[bad[0]]).__name__}, not an "
                             "xarray.Dataset; pass the dict returned by xsits.open_cubes")
        return _plan_mapping(obj, batch_size)
    if hasattr(obj, "aoi") and hasattr(obj, "open_kwargs"):
        return _plan_source(obj, batch_size, out_dir, fmt, overwrite, steps)
    if callable(getattr(obj, "to_cubes_batches", None)):
        return _plan_batches_method(obj, batch_size)
    raise BatchError(
        f"compute_all got a {type(obj).__name__}; pass a dict of cubes (xsits.open_cubes), an "
        "Intake 'sits' source, or xsits.batch.AoiSource(aoi, open_kwargs)"
    )


