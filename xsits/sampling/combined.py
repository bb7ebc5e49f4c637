"""Points of several collections as one time series: each collection's rows merged by date.

:func:`xsits.sample` with ``collections=[...]`` reads each collection's points on their own
(the fast point path where it can), each masked by its own rule, in surface reflectance and
with the cross-sensor band names (the step :class:`xsits.ops.steps.combine`); here each
point's rows of all collections become one series sorted by date (:func:`merge_rows`), as
:func:`xsits.ops.combine.combine` sorts a combined cube's dates, and the steps and indices
then run on it (:func:`series_rows`): the values of the point's pixel in
:func:`xsits.open_combined`'s cube.

Owns: :func:`merge_rows`, :func:`series_rows`.
Must not: read, search or check :func:`xsits.sample`'s arguments.

Examples
--------
>>> import numpy as np
>>> t = np.array(["2024-06-01", "2024-06-03"], "M8[ns]")
>>> s2 = Rows(t, {"red": np.array([0.1, np.nan], "f4")}, None,
...           {"sensor": np.array(["Sentinel-2 MSI"] * 2)})
>>> ls = Rows(t[:1] + np.timedelta64(1, "D"), {"red": np.array([0.2], "f4")}, None,
...           {"sensor": np.array(["Landsat OLI"])})
>>> got = merge_rows([{"p": s2}, {"p": ls}])["p"]
>>> got.values["red"].tolist(), got.per_date["sensor"].tolist()[1]
([0.10000000149011612, 0.20000000298023224, nan], 'Landsat OLI')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from xsits.ops.reflectance import REFLECTANCE_ATTR
from xsits.sampling.rows import Rows, batch_rows, keep_rows

__all__ = ["merge_rows", "series_rows"]


def _column(rows: Rows, name: str, per_date: bool) -> np.ndarray:
    """One column of a collection's rows; NaN (or ``""``) where it has none."""
    have = rows.per_date if per_date else rows.values
    if name in have:
        return np.asarray(have[name])
    return np.full(len(rows.time), np.nan, "float32")


def merge_rows(per_collection: Sequence[Mapping[str, Rows]]) -> dict[str, Rows]:
    """Each point's rows of every collection as one series, sorted by date (stably).

    Bands a collection lacks are NaN at its dates; ``masked`` is left to :func:`series_rows`.
    """
    out: dict[str, Rows] = {}
    fids = list(dict.fromkeys(f for rows in per_collection for f in rows))
    for fid in fids:
        parts = [rows[fid] for rows in per_collection if fid in rows]
        bands = list(dict.fromkeys(k for p in parts for k in p.values))
        coords = list(dict.fromkeys(k for p in parts for k in p.per_date))
        time = np.concatenate([p.time for p in parts])
        order = np.argsort(time, kind="stable")
        values = {b: np.concatenate([_column(p, b, False) for p in parts]
                                    ).astype("float32")[order] for b in bands}
        per_date = {c: np.concatenate([_column(p, c, True) for p in parts])[order]
                    for c in coords}
        out[fid] = Rows(time[order], values, None, per_date)
    return out


def _key(rows: Rows) -> tuple:
    """Points with equal keys have the same dates, per-date values and bands."""
    return (rows.time.tobytes(), tuple(rows.values),
            tuple((k, v.tobytes()) for k, v in rows.per_date.items()))


def series_rows(merged: Mapping[str, Rows], steps: Sequence[Callable], reduce: str,
                indices: Sequence[str], attrs: Mapping[str, Any]
                ) -> tuple[dict[str, Rows], dict[str, str]]:
    """The steps and indices on each point's merged series: its final rows, or why none.

    Points with the same dates run side by side as one ``(time, 1, n)`` cube (the steps are
    pixelwise on it: a series is a point's pixel, as in a combined cube of one pixel).
    """
    rows: dict[str, Rows] = {}
    missing: dict[str, str] = {}
    batches: dict[tuple, list[str]] = {}
    for fid, got in merged.items():
        batches.setdefault(_key(got), []).append(fid)
    for fids in batches.values():
        first = merged[fids[0]]
        data = {b: (("time", "y", "x"),
                    np.stack([merged[f].values[b] for f in fids], axis=1)[:, None, :],
                    {"nodata": float("nan"), "units": "1"}) for b in first.values}
        coords = {"time": first.time, **{k: ("time", v) for k, v in first.per_date.items()}}
        cube = xr.Dataset(data, coords=coords, attrs={**attrs, REFLECTANCE_ATTR: 1})
        keep_rows(fids, batch_rows(cube, len(fids), steps, 1, reduce, indices, ()), rows,
                  missing)
    return rows, missing
