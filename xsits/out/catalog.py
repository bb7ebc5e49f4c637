"""The Intake catalog of a run's outputs: one entry per feature, beside the files.

Owns: :data:`RESULTS_DRIVERS` (each output suffix's Intake driver) and
:func:`write_results_catalog` (``catalog.yaml``, written atomically, paths relative to
``{{ CATALOG_DIR }}`` so the folder can be moved).
Must not: write the outputs themselves (:mod:`xsits.out.export`) or import Intake.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from xsits._version import __version__
from xsits.errors import ExportError
from xsits.out.atomic import atomic_path, ensure_dir

__all__ = ["RESULTS_DRIVERS", "write_results_catalog"]

#: Output suffix -> (Intake driver, extra ``args``) used by :func:`write_results_catalog`.
#: ``engine: netcdf4``: intake-xarray 2.0 would otherwise pick scipy (NetCDF3 only).
RESULTS_DRIVERS: dict[str, tuple[str, dict[str, Any]]] = {
    # mask_and_scale=False: integer bands come back as written (their _FillValue is nodata)
    ".nc": ("netcdf", {"xarray_kwargs": {"engine": "netcdf4", "mask_and_scale": False}}),
    ".zarr": ("zarr", {}),
    ".csv": ("csv", {}),
    # intake-parquet's driver (Intake V1 and intake-xarray have none for Parquet)
    ".parquet": ("parquet", {}),
}


def write_results_catalog(
    paths: Mapping[str, str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    name: str = "catalog.yaml",
    description: str = "xsits batch outputs, one entry per feature",
) -> Path:
    """Write an Intake V1 catalog of per-feature outputs beside them, atomically.

    Written without importing Intake (the batch engine writes one after every run); read it
    with ``intake.open_catalog`` (see :mod:`xsits.intake`).

    One entry per feature id, named by the id, with intake-xarray's ``netcdf`` driver for
    ``.nc`` files and ``zarr`` for ``.zarr`` stores (Intake's ``csv`` for ``.csv``). Paths inside
    ``out_dir`` are written relative to ``{{ CATALOG_DIR }}``, so the folder can be moved.

    Parameters
    ----------
    paths
        ``{feature_id: output path}`` (e.g. the ``path`` column of the batch report).
    out_dir
        Directory of the outputs; the catalog is written there.
    name
        File name of the catalog. Default ``catalog.yaml``.
    description
        Catalog description.

    Returns
    -------
    pathlib.Path
        The catalog path.

    Raises
    ------
    xsits.errors.ExportError
        An output has a suffix without an Intake driver (e.g. ``.gif``).

    Examples
    --------
    >>> import tempfile, intake, xarray as xr
    >>> d = Path(tempfile.mkdtemp())
    >>> xr.Dataset({"B04": ("time", [1.0, 2.0])}).to_netcdf(d / "7.nc")
    >>> cat = intake.open_catalog(str(write_results_catalog({"7": d / "7.nc"}, d)))
    >>> cat["7"].read()["B04"].values.tolist()
    [1.0, 2.0]
    """
    out_dir = Path(out_dir)
    out_dir = ensure_dir(out_dir)
    root = out_dir.resolve()
    sources: dict[str, Any] = {}
    for fid, p in paths.items():
        p = Path(p)
        suffix = p.suffix.lower()
        if suffix not in RESULTS_DRIVERS:
            raise ExportError(
                f"feature {fid!r}: output '{p}' has no Intake driver for {suffix!r}; catalogue "
                f"only {sorted(RESULTS_DRIVERS)} outputs"
            )
        driver, extra = RESULTS_DRIVERS[suffix]
        full = (out_dir / p).resolve() if not p.is_absolute() else p.resolve()
        try:
            url = "{{ CATALOG_DIR }}/" + full.relative_to(root).as_posix()
        except ValueError:
            url = full.as_posix()
        sources[str(fid)] = {
            "description": f"feature {fid}",
            "driver": driver,
            "args": {"urlpath": url, **extra},
            "metadata": {"feature_id": str(fid)},
        }
    doc = {
        "metadata": {"version": 1, "description": description, "creator": f"xsits {__version__}"},
        "sources": sources,
    }

    target = out_dir / name
    with atomic_path(target, overwrite=True) as tmp:
        tmp.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
    return target
