"""The ``xsits`` command line: ``xsits fetch`` (the batch engine), ``sample`` and ``demo``.

``xsits fetch AOI`` reads the AOI (invalid geometries are reported, not fatal), builds the
steps from the flags, and runs :func:`xsits.compute_all` on an
:class:`xsits.batch.AoiSource` (cubes are searched and opened batch by batch). It prints one
summary line (``written 22, skipped 0, empty 1, failed 1 → out/manifest.json``) and exits with
0 when every feature was written or skipped (or is empty), 1 when any failed. ``xsits sample
AOI --out table.parquet`` writes the points' time series as one table
(:func:`xsits.sample.sample`). Errors in the arguments and :class:`xsits.errors.XsitsError`
give a one-line ``Error: ...``, no traceback.

Examples
--------
>>> from click.testing import CliRunner
>>> result = CliRunner().invoke(main, ["--help"])
>>> result.exit_code, "fetch" in result.output
(0, True)
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import click

from xsits._common import one_line
from xsits.batch import AoiSource, compute_all, summary_line
from xsits.batch.combined import combined_bands, open_combined
from xsits.cube.aoi import read_aoi
from xsits.cube.load import dry_run as run_dry
from xsits.cube.spec import OPTIONS, SPEC_ARGS, CubeSpec, default
from xsits.demo import run_demo
from xsits.errors import XsitsError
from xsits.ops.smooth import METHODS as SMOOTH_METHODS
from xsits.ops.steps import build_steps
from xsits.sample import POINT_GRID, REDUCES, SCHEDULERS, point_spec
from xsits.sample import sample as run_sample
from xsits.sampling.read import ReadFailed
from xsits.stac.collections import COMMON_BANDS

#: Interpolation methods offered by ``--gapfill`` (see :func:`xsits.ops.gapfill.gapfill`).
GAPFILL_METHODS = ("linear", "nearest", "slinear", "quadratic", "cubic", "pchip", "akima")
#: Export formats offered by ``--format``.
FORMATS = ("netcdf", "zarr", "csv", "parquet")
_MAX_LISTED = 10


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int]:
    """``"10x12"`` -> ``(10, 12)``; ``"10"`` -> ``(10, 10)``."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX*]\s*(\d+))?\s*", value)
    if not m or int(m.group(1)) < 1 or (m.group(2) and int(m.group(2)) < 1):
        raise click.BadParameter(f"{value!r} is not a size WxH such as 10x10 (pixels)")
    w = int(m.group(1))
    return (w, int(m.group(2) or w))


def _json_dict(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        doc = json.loads(value)
    except json.JSONDecodeError as err:
        raise click.BadParameter(f"not valid JSON ({err.msg} at char {err.pos})") from err
    if not isinstance(doc, dict):
        raise click.BadParameter('must be a JSON object such as \'{"eo:cloud_cover": {"lt": 10}}\'')
    return doc


def _cql2(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """A CQL2 filter: JSON when it parses as a JSON object, CQL2 text otherwise."""
    if value is None:
        return None
    try:
        doc = json.loads(value)
    except json.JSONDecodeError:
        return value
    return doc if isinstance(doc, dict) else value


def _bands(ctx: click.Context, param: click.Parameter,
           value: str | None) -> tuple[str, ...] | None:
    if value is None:  # the collection's default bands (xsits.stac.collections)
        return None
    bands = tuple(b.strip() for b in value.split(",") if b.strip())
    if not bands:
        raise click.BadParameter("give at least one band, e.g. --bands B04,B08,SCL")
    return bands


def _list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    """A comma-separated list (None when not given)."""
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise click.BadParameter("give at least one value, e.g. sentinel-2-l2a,landsat-c2-l2")
    return items


def _scheduler(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if value in ("threads", "processes", "synchronous") or re.match(
            r"^[a-z+]+://\S+$|^[\w.-]+:\d+$", value):
        return value
    raise click.BadParameter(
        f"{value!r}: use threads, processes, synchronous or a dask scheduler address "
        "such as tcp://127.0.0.1:8786"
    )


#: How each kind of spec field (:data:`xsits.cube.spec.OPTIONS`) is read from the command line.
_KINDS: dict[str, dict[str, Any]] = {
    "text": {},
    "bands": {"callback": _bands},
    "percent": {"type": click.FloatRange(0, 100)},
    "json": {"callback": _json_dict},
    "cql2": {"callback": _cql2},
    "positive": {"type": click.FloatRange(min=0, min_open=True)},
    "metres": {"type": float},
    "size": {"callback": _size},
}


def _shown(value: Any) -> Any:
    """A spec default as its command-line text (``("B03", "B04")`` -> ``"B03,B04"``)."""
    if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
        return "x".join(map(str, value))
    if isinstance(value, tuple):
        return ",".join(value)
    return value


def spec_options(*, skip: tuple[str, ...] = ()) -> Any:
    """Click options of the spec fields (:data:`xsits.cube.spec.OPTIONS`) but ``skip``.

    Each option's default is the spec's own (:func:`xsits.cube.spec.default`); the command
    gets the values by field name, for :meth:`xsits.CubeSpec.from_kwargs`.
    """
    def decorate(func: Any) -> Any:
        for opt in reversed([o for o in OPTIONS if o.name not in skip]):
            extra = dict(_KINDS.get(opt.kind, {}))
            if opt.kind == "choice":
                extra["type"] = click.Choice(opt.choices)
            flag = "--" + opt.name.replace("_", "-")
            func = click.option(flag, opt.name, default=_shown(default(opt.name)),
                                help=opt.help, **extra)(func)
        return func

    return decorate


def several_options(func: Any) -> Any:
    """Click options of several collections as one series (:func:`xsits.open_combined`)."""
    for option in reversed([
        click.option("--collections", default=None, callback=_list, metavar="IDS",
                     help="Several collections as one series (e.g. sentinel-2-l2a,"
                          "landsat-c2-l2): each masked by its rule, in reflectance; --bands "
                          "are then cross-sensor names (blue, green, red, nir, swir16, "
                          "swir22)."),
        click.option("--bandpass", is_flag=True,
                     help="With --collections: Sentinel-2 reflectance made OLI-like (HLS)."),
        click.option("--dilate", type=click.IntRange(min=0), default=0,
                     help="With --collections: grow clouds and shadows by this many pixels."),
    ]):
        func = option(func)
    return func


def _several(collections: list[str] | None, bandpass: bool, dilate: int, harmonize: bool,
             mask: bool, spec_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The arguments of several collections (``bands`` taken out of ``spec_kwargs``)."""
    if not collections:
        return {}
    if harmonize or mask:
        raise click.UsageError("--collections masks and scales each collection by its own "
                               "rule; drop --harmonize and --mask")
    return {"collections": collections, "bands": spec_kwargs.pop("bands"),
            "bandpass": bandpass, "dilate": dilate}


def _dry_runs(gdf: Any, spec: CubeSpec, several: dict[str, Any]) -> None:
    """Print the cost of the search and reads (of each collection, when several)."""
    for c in several.get("collections") or [None]:
        each = spec if c is None else CubeSpec.from_kwargs(
            spec, collection=c, bands=combined_bands(c, several["bands"] or COMMON_BANDS))
        click.echo(("" if c is None else f"{c}: ") + str(run_dry(gdf, spec=each)))


def step_options(*, per_point: bool = False) -> Any:
    """Click options of the cleaning steps (:func:`xsits.ops.steps.build_steps`' arguments).

    ``per_point`` (``xsits sample``): masked fractions are of each point's window, and the
    composite and smoothing steps are offered too.
    """
    where = " in the window" if per_point else ""
    options = [
        click.option("--harmonize/--no-harmonize", default=False,
                     help="Undo the +1000 offset of processing baseline >= 04.00."),
        click.option("--mask/--no-mask", default=False,
                     help="Mask clouds/shadows/nodata by the collection's rule (SCL, QA bits)."),
        click.option("--drop-cloudy", type=click.FloatRange(0, 1), default=None,
                     metavar="FRACTION",
                     help=f"Drop dates with more than this fraction of masked pixels{where}."),
        click.option("--gapfill", type=click.Choice(GAPFILL_METHODS), is_flag=False,
                     flag_value="linear", default=None,
                     help="Fill masked values along time (alone: linear)."),
    ]
    if per_point:
        options += [
            click.option("--composite", "composite_freq", default=None, metavar="FREQ",
                         help="Median composites on a regular axis (pandas alias: 1MS, 10D...)."),
            click.option("--smooth", type=click.Choice(SMOOTH_METHODS), default=None,
                         help="Smooth each series (R sits' defaults), after the other steps."),
        ]
    return _all_of(options)


def run_options() -> Any:
    """Click options every command that reads an AOI has: ids, progress, logging, dry run."""
    return _all_of([
        click.option("--id-column", default=None,
                     help="AOI column with the feature ids (default: feature_id, id, or row "
                          "number)."),
        click.option("--no-progress", is_flag=True, help="No progress bar."),
        click.option("-v", "--verbose", is_flag=True,
                     help="Log retries and failures as they happen."),
        click.option("--dry-run", is_flag=True,
                     help="Search and plan, read the files' headers, print the cost; read no "
                          "pixel."),
    ])


def _all_of(options: list[Any]) -> Any:
    """One decorator applying click ``options`` in their order (as if stacked in it)."""
    def decorate(func: Any) -> Any:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def _spec_of(kwargs: dict[str, Any], **fixed: Any) -> CubeSpec:
    """The :class:`~xsits.CubeSpec` of the spec options in ``kwargs`` (taken out of it)."""
    return CubeSpec.from_kwargs(**{k: kwargs.pop(k) for k in SPEC_ARGS if k in kwargs}, **fixed)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="xsits", prog_name="xsits")
def main() -> None:
    """xsits: Sentinel-2 time series for many places at once (lazy xarray cubes)."""


@main.command(context_settings={"show_default": True})
@click.argument("aoi", type=click.Path(exists=True, dir_okay=False))
@spec_options()
@step_options()
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="netcdf",
              help="Output format.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out",
              help="Output directory (manifest.json goes there too).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Threads/processes (default: one per core).")
@click.option("--scheduler", default="threads", callback=_scheduler,
              help="threads, processes, synchronous, or a dask scheduler address.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256,
              help="Features per dask.compute call.")
@click.option("--retries", type=click.IntRange(min=0), default=4,
              help="Retries of each failed read (network error, truncated data).")
@click.option("--overwrite", is_flag=True, help="Recompute features already written.")
@click.option("--compress", is_flag=True,
              help="Compress NetCDF outputs (zlib: ~3x smaller, ~3x slower to write).")
@run_options()
@several_options
def fetch(aoi: str, harmonize: bool, mask: bool, drop_cloudy: float | None,
          gapfill: str | None, fmt: str, out_dir: str, workers: int | None, scheduler: str,
          batch_size: int, retries: int, overwrite: bool, compress: bool, id_column: str | None,
          no_progress: bool, verbose: bool, dry_run: bool, collections: list[str] | None,
          bandpass: bool, dilate: int, **spec_kwargs: Any) -> None:
    """Fetch, process and export one Sentinel-2 time series per feature of AOI.

    AOI is a GeoJSON / GPKG / Shapefile, or a CSV with lon/lat columns. Rerun the same
    command to finish an interrupted run: features already written are skipped.

    \b
    Example:
      xsits fetch points.geojson --stac planetary-computer --bands B03,B04,B08,SCL \\
        --start 2024-01-01 --end 2025-02-01 --max-cloud 10 --resolution 20 \\
        --crs EPSG:3035 --mode patch --size 10x10 --mask --gapfill --out out/
    """  # noqa: D301 - click needs a real backspace before the example
    logging.getLogger("xsits").setLevel(logging.INFO if verbose else logging.ERROR)
    try:
        gdf = read_aoi(aoi, id_column=id_column, on_invalid="drop")
        several = _several(collections, bandpass, dilate, harmonize, mask, spec_kwargs)
        spec = _spec_of(spec_kwargs)
        if dry_run:
            _dry_runs(gdf, spec, several)
            return
        steps = build_steps(harmonize=harmonize, mask=mask, drop_cloudy=drop_cloudy,
                            gapfill=gapfill)
        source = (open_combined(gdf, several.pop("collections"), spec=spec,
                                stac=spec.query.stac, **several)
                  if several else AoiSource(gdf, {"spec": spec}))
        report = compute_all(
            source, steps, out_dir=out_dir, format=fmt,
            scheduler=scheduler, batch_size=batch_size, progress=False if no_progress else None,
            overwrite=overwrite, workers=workers, retries=retries, compress=compress,
        )
    except XsitsError as err:
        raise click.ClickException(one_line(err)) from err
    failed = report[report.status == "failed"]
    for fid, error in list(zip(failed.feature_id, failed.error, strict=True))[:_MAX_LISTED]:
        click.echo(f"failed {fid}: {error}", err=True)
    if len(failed) > _MAX_LISTED:
        click.echo(f"... and {len(failed) - _MAX_LISTED} more failed (see the manifest)",
                   err=True)
    click.echo(summary_line(report))
    if len(failed):
        raise SystemExit(1)


@main.command(context_settings={"show_default": True})
@click.argument("aoi", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True,
              help="Output table, a .parquet file (GeoParquet with --geometry).")
@spec_options(skip=POINT_GRID)
@click.option("--window", type=click.IntRange(min=1), default=1,
              help="Odd window size in pixels around each point (1: the point's pixel).")
@click.option("--reduce", type=click.Choice(REDUCES), default=REDUCES[0],
              help="Reduction of the window's valid pixels.")
@step_options(per_point=True)
@click.option("--indices", default="", help="Comma-separated spectral indices (e.g. NDVI).")
@click.option("--geometry", is_flag=True, help="Keep the points as a geometry column.")
@click.option("--scheduler", type=click.Choice(SCHEDULERS), default=SCHEDULERS[0],
              help="Read the points in this process, or in a pool of processes.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes, with --scheduler processes only (default: one per core).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@run_options()
@several_options
def sample(aoi: str, out_path: str, window: int, reduce: str, harmonize: bool, mask: bool,
           drop_cloudy: float | None, gapfill: str | None, composite_freq: str | None,
           smooth: str | None, indices: str, geometry: bool, scheduler: str,
           workers: int | None, overwrite: bool, id_column: str | None, no_progress: bool,
           verbose: bool, dry_run: bool, collections: list[str] | None, bandpass: bool,
           dilate: int, **spec_kwargs: Any) -> None:
    """Sample the time series of the points of AOI into one table (Parquet).

    One row per (point, date): feature_id, the AOI's columns (labels), time, one column per
    band (and index), lon, lat, masked. Exits with 1 when a point could not be read.

    \b
    Example:
      xsits sample labels.geojson --out train.parquet --stac earth-search \\
        --bands B04,B08,SCL --start 2024-03-01 --end 2024-10-31 --harmonize --mask \\
        --gapfill --composite 10D --indices NDVI
    """  # noqa: D301 - click needs a real backspace before the example
    logging.getLogger("xsits").setLevel(logging.INFO if verbose else logging.ERROR)
    try:
        gdf = read_aoi(aoi, id_column=id_column)
        several = _several(collections, bandpass, dilate, harmonize, mask, spec_kwargs)
        spec = point_spec(_spec_of(spec_kwargs), window)
        if dry_run:
            _dry_runs(gdf, spec, several)
            return
        steps = build_steps(harmonize=harmonize, mask=mask, drop_cloudy=drop_cloudy,
                            gapfill=gapfill, composite=composite_freq, smooth=smooth)
        table = run_sample(
            gdf, steps=steps, window=window, reduce=reduce, geometry=geometry,
            indices=[i.strip() for i in indices.split(",") if i.strip()], out=out_path,
            overwrite=overwrite, progress=False if no_progress else None,
            scheduler=scheduler, workers=workers, spec=spec, **several)
    except XsitsError as err:
        raise click.ClickException(one_line(err)) from err
    missing = table.attrs["missing"]
    failed = {f: r for f, r in missing.items() if isinstance(r, ReadFailed)}
    for fid, reason in list(missing.items())[:_MAX_LISTED]:
        click.echo(f"no row for {fid}: {reason}", err=True)
    if len(missing) > _MAX_LISTED:
        click.echo(f"... and {len(missing) - _MAX_LISTED} more without rows", err=True)
    click.echo(f"{len(table)} rows, {table['feature_id'].nunique()} points "
               f"({len(missing)} without rows) → {out_path}")
    if failed:
        raise SystemExit(1)


@main.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output directory (default: a temporary directory).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def demo(out_dir: str | None, no_progress: bool) -> None:
    """Run the offline demo: a synthetic world served locally, fetched like real data."""
    try:
        report = run_demo(out_dir=out_dir, progress=not no_progress)
    except XsitsError as err:
        raise click.ClickException(one_line(err)) from err
    status = getattr(report, "get", lambda *_: None)("status")
    if status is not None and bool((status == "failed").any()):
        raise SystemExit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
