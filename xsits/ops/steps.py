"""Picklable processing steps for the batch engine (:func:`xsits.compute_all`).

A step is a small frozen dataclass that remembers the parameters of one operation and applies
it when called on a cube: ``steps.gapfill("linear")(ds)`` is ``xsits.ops.gapfill.gapfill(ds,
method="linear")``. Steps travel to dask workers (they pickle by reference to this module),
and :func:`describe` gives the one-line text recorded in the batch manifest. The operation
modules are imported inside ``__call__``, so building a step is free.

Any other callable ``Dataset -> Dataset`` is accepted by :func:`xsits.compute_all` too (it must
be picklable to run on ``"processes"`` or a distributed cluster).

Examples
--------
>>> from xsits.ops import steps
>>> pipeline = [steps.harmonize(), steps.scl_mask(), steps.gapfill("linear")]
>>> [steps.describe(s) for s in pipeline]
['harmonize()', 'scl_mask()', "gapfill(method='linear')"]
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import xarray as xr

from xsits.cube import clip as _clip
from xsits.ops import combine as _combine
from xsits.ops import composite as _composite
from xsits.ops import gapfill as _gapfill
from xsits.ops import harmonize as _harmonize
from xsits.ops import mask as _mask
from xsits.ops import patch as _patch
from xsits.ops import reflectance as _reflectance
from xsits.ops import sar as _sar
from xsits.ops import smooth as _smooth

__all__ = [
    "Step",
    "StepOptions",
    "build_steps",
    "clip",
    "cloud_mask",
    "combine",
    "composite",
    "describe",
    "drop_cloudy",
    "gapfill",
    "harmonize",
    "scl_mask",
    "smooth",
    "to_db",
    "to_patch",
    "to_reflectance",
]


def _tuple_or_none(value: Iterable[int] | None) -> tuple[int, ...] | None:
    return None if value is None else tuple(int(v) for v in value)


class Step:
    """Base class: a readable ``repr`` (only non-default parameters) and :meth:`describe`.

    ``pixelwise`` is True for steps whose result at a pixel depends only on that pixel's
    series and the per-date coordinates (not on its neighbours, the grid or the cube's
    attributes): cubes with the same dates may then run them side by side, as one wider
    cube (:func:`xsits.sample.sample` does).

    Examples
    --------
    >>> from xsits.ops import steps
    >>> step = steps.gapfill("linear")
    >>> isinstance(step, steps.Step), step.pixelwise
    (True, True)
    """

    pixelwise: ClassVar[bool] = False

    def describe(self) -> str:
        """One-line call text, e.g. ``"gapfill(method='linear')"``; defaults are left out."""
        args = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.default is not dataclasses.MISSING and value == f.default:
                continue
            args.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(args)})"

    def __repr__(self) -> str:
        return f"xsits.ops.steps.{self.describe()}"

    def output_attrs(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """How the step changes the attributes naming output files (``mode``, ``start``...).

        The batch engine plans each output path from the input cube's attributes passed
        through this method of every step (other callables are assumed to keep them).
        """
        return attrs

    def _kwargs(self) -> dict[str, Any]:
        """Parameters to pass on: those left at ``None`` use the operation's own default."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)  # type: ignore
                if getattr(self, f.name) is not None}

    def __call__(self, ds: xr.Dataset) -> xr.Dataset:  # pragma: no cover - abstract
        """Apply the step to ``ds``."""
        raise NotImplementedError


@dataclass(frozen=True, repr=False)
class harmonize(Step):  # noqa: N801 - named like the function it applies
    """Step applying :func:`xsits.ops.harmonize.harmonize` (undo the +1000 offset).

    Examples
    --------
    >>> from xsits.testing.cubes import make_cube
    >>> ds = make_cube(n_times=2, shape=(2, 2))
    >>> int(harmonize()(ds).B04[0, 1, 1]) == int(ds.B04[0, 1, 1]) - 1000
    True
    """

    pixelwise: ClassVar[bool] = True

    offset: int = 1000
    min_baseline: str = "04.00"

    def __call__(self, ds: xr.Dataset) -> xr.Dataset:
        """Apply the operation to ``ds`` (lazily on dask input)."""
        return _harmonize.harmonize(ds, **self._kwargs())


@dataclass(frozen=True, repr=False)
class scl_mask(Step):  # noqa: N801
    """Step applying :func:`xsits.ops.mask.scl_mask`; ``classes=None`` uses its default classes.

    Examples
    --------
    >>> scl_mask(classes=[8, 9])
    xsits.ops.steps.scl_mask(classes=(8, 9))
    """

    pixelwise: ClassVar[bool] = True

    classes: tuple[int, ...] | None = None
    keep_band: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", _tuple_or_none(self.classes))

    def __call__(self, ds: xr.Dataset) -> xr.Dataset:
        """Apply the operation to ``ds`` (lazily on dask input)."""
        return _mask.scl_mask(ds, **self._kwargs())


@dataclass(frozen=True, repr=False)
class cloud_mask(Step):  # noqa: N801
    """Step applying :func:`xsits.ops.mask.cloud_mask` (the rule of the cube's collection).

    Pixelwise unless it dilates (then a pixel depends on its neighbours).

    Examples
    --------
    >>> cloud_mask(dilate=2), cloud_mask().pixelwise, cloud_mask(dilate=2).pixelwise
    (xsits.ops.steps.cloud_mask(dilate=2), True, False)
    """

    dilate: int = 0
    keep_band: bool = True

    @property
    def pixelwise(self) -> bool:  # type: ignore[override]
        """True when it does not dilate."""
        return self.dilate == 0

    def __call__(self, ds: xr.Dataset) -> xr.Dataset:
        """Apply the operation to ``ds`` (lazily on dask input)."""
        return _mask.cloud_mask(ds, **self._kwargs())


@dataclass(frozen=True, repr=False)
class to_reflectance(Step):  # noqa: N801
    """Step applying :func:`xsits.ops.reflectance.to_reflectance` (physical values).

    Examples
    --------
    >>> from xsits.testing.cubes import make_cube
    >>> str(to_reflectance()(make_cube(n_times=1, shape=(1, 1))).B04.dtype)
    'float32'
    """

    pixelwise: ClassVar[bool] = True

    def __call__(self, ds: xr.Dataset) -> xr.Dataset:
        """Apply the operation to ``ds`` (lazily on dask input)."""
        return _reflectance.to_reflectance(ds)


@dataclass(frozen=True, repr=False)
class combine(Step):  # noqa: N801
    """Step applying :func:`xsits.ops.combine.combine` to one cube: its share of a combined series.

    The cube masked by its collection's rule, in surface reflectance, its cross-sensor bands
    renamed (``red``, ``nir``...) with ``sensor`` per date: what :func:`xsits.sample` reads
    per collection before merging the collections' dates. Pixelwise unless it dilates.

    Examples
    --------
    >>> from xsits.testing.cubes import make_cube
    >>> out = combine()(make_cube(n_times=2, shape=(2, 2), bands=("B04", "B8A", "SCL")))
    >>> sorted(out.data_vars), out.sensor.values.tolist(), combine(dilate=1).pixelwise
    (['nir', 'red'], ['Sentinel-2 MSI', 'Sentinel-2 MSI'], False)
    """

    bandpass: bool = False
    dilate: int = 0

    @property
    def pixelwise(self) -> bool:  # type: ignore[override]
        """True when it does not dilate."""
        return self.dilate == 0

    def __call__(self, ds: xr.Dataset) -> xr.Dataset:
        """Apply the operation to ``ds`` (lazily on dask input)."""
        return _combine.combine([ds], bandpass=self.bandpass, dilate=self.dilate)


@dataclass(frozen=True, repr=False)
class drop_cloudy(Step):  # noqa: N801
    """Step applying :func:`xsits.ops.mask.drop_cloudy` (drop dates masked above ``max_fraction``).

    Examples
    --------
    >>> drop_cloudy(0.3).describe()
    'drop_cloudy(max_fraction=0.3)'
    """

    max_fraction: float = 0.5
    classes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", _tuple_or_none(self.classes))

    def __call__(self, ds: xr.Dataset) -> xr.Dataset:
        """Apply the operation to ``ds``."""
        return _mask.drop_cloudy(ds, **self._kwargs())


@dataclass(frozen=True, repr=False)
class gapfill(Step):  # noqa: N801
    """Step applying :func:`xsits.ops.gapfill.gapfill` (temporal interpolation of NaNs).

    Examples
    --------
    >>> gapfill("nearest", max_gap="20D").describe()
    "gapfill(method='nearest', max_gap='20D')"
    """

    pixelwise: ClassVar[bool] = True

    method: str = "linear"
    max_gap: Any = None

    def describe(self) -> str:
        """One-line call text; the method is always shown."""
        gap = "" if self.max_gap is None else f", max_gap={self.max_gap!r}"
        return f"gapfill(method={self.method!r}{gap})"

    def __call__(self, ds: xr.Dataset) -> xr.Dataset:
        """Apply the operation to ``ds`` (lazily on dask input)."""
        return _gapfill.gapfill(ds, **self._kwargs())


@dataclass(frozen=True, repr=False)
class to_patch(Step):  # noqa: N801
    """Step applying :func:`xsits.ops.patch.to_patch` (``width`` x ``height`` pixels).

    Examples
    --------
    >>> to_patch(10, 10)
    xsits.ops.steps.to_patch(width=10, height=10)
    """

    width: int
    height: int | None = None

    def output_attrs(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """A patch cube has ``mode="patch"``."""
        return {**attrs, "mode": "patch"}

    def describe(self) -> str:
        """One-line call text with both sizes."""
        return f"to_patch(width={self.width!r}, height={self.height or self.width!r})"

    def __call__(self, ds: xr.Dataset) -> xr.Dataset:
        """Apply the operation to ``ds`` (lazily on dask input)."""
        return _patch.to_patch(ds, self.width, self.height)


@dataclass(frozen=True, repr=False)
class composite(Step):  # noqa: N801
    """Step applying :func:`xsits.ops.composite.composite` (regular time axis).

    Examples
    --------
    >>> composite("1MS", "median").describe()
    "composite(freq='1MS', how='median')"
    """

    pixelwise: ClassVar[bool] = True

    freq: str = "1MS"
    how: str = "median"

    def describe(self) -> str:
        """One-line call text with both parameters."""
        return f"composite(freq={self.freq!r}, how={self.how!r})"

    def __call__(self, ds: xr.Dataset) -> xr.Dataset:
        """Apply the operation to ``ds`` (lazily on dask input)."""
        return _composite.composite(ds, freq=self.freq, how=self.how)


@dataclass(frozen=True, repr=False)
class smooth(Step):  # noqa: N801
    """Step applying :func:`xsits.ops.smooth.smooth` (Savitzky-Golay or Whittaker along time).

    Examples
    --------
    >>> smooth("whittaker", lam=2.0)
    xsits.ops.steps.smooth(method='whittaker', lam=2.0)
    """

    pixelwise: ClassVar[bool] = True

    method: str = "savgol"
    window: int = 5
    polyorder: int = 3
    mode: str = "interp"
    lam: float = 0.5
    order: int = 2

    def describe(self) -> str:
        """One-line call text; the method is always shown."""
        text = super().describe()  # the default method is left out there
        if self.method != "savgol":
            return text
        rest = text[len("smooth("):-1]
        return f"smooth(method='savgol'{', ' + rest if rest else ''})"

    def __call__(self, ds: xr.Dataset) -> xr.Dataset:
        """Apply the operation to ``ds`` (lazily on dask input)."""
        return _smooth.smooth(ds, **self._kwargs())


@dataclass(frozen=True, repr=False)
class clip(Step):  # noqa: N801
    """Step applying :func:`xsits.cube.clip.clip` to each cube's own polygon, ``attrs["geometry"]``.

    The polygon travels with its cube (:func:`xsits.cube.clip.with_geometry`); a cube without
    it raises :class:`~xsits.errors.AOIError` (a ``failed`` feature in a batch).

    Examples
    --------
    >>> from shapely.geometry import box
    >>> from xsits.cube.clip import with_geometry
    >>> from xsits.ops.mask import scl_mask
    >>> from xsits.testing.cubes import make_cube
    >>> ds = with_geometry(scl_mask(make_cube(n_times=2, shape=(2, 2))),
    ...                    box(500000, 5499980, 500020, 5500000))   # the top-left pixel
    >>> clip()(ds).B04[0].isnull().values.tolist()
    [[False, True], [True, True]]
    """

    all_touched: bool = False

    def __call__(self, ds: xr.Dataset) -> xr.Dataset:
        """Apply the operation to ``ds`` (lazily on dask input)."""
        return _clip.clip(ds, all_touched=self.all_touched)


@dataclass(frozen=True, repr=False)
class to_db(Step):  # noqa: N801
    """Step applying :func:`xsits.ops.sar.to_db` (backscatter in decibels).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"vh": ("time", np.array([0.1], "float32"))})
    >>> to_db()(ds).vh.values.tolist(), to_db(bands=["vh"]).describe()
    ([-10.0], "to_db(bands=('vh',))")
    """

    pixelwise: ClassVar[bool] = True

    bands: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.bands is not None:
            object.__setattr__(self, "bands", tuple(self.bands))

    def __call__(self, ds: xr.Dataset) -> xr.Dataset:
        """Apply the operation to ``ds`` (lazily on dask input)."""
        return _sar.to_db(ds, **self._kwargs())


def describe(step: Callable[[xr.Dataset], xr.Dataset]) -> str:
    """One line naming a step: its ``describe()``, else its qualified name or repr.

    Parameters
    ----------
    step
        A step object from this module, or any callable ``Dataset -> Dataset``.

    Returns
    -------
    str
        E.g. ``"scl_mask(keep_band=False)"``, ``"mymodule.my_step"``,
        ``"functools.partial(xsits.ops.gapfill.gapfill, method='nearest')"``.

    Examples
    --------
    >>> import functools
    >>> from xsits.ops.gapfill import gapfill as gf
    >>> describe(scl_mask(keep_band=False)), describe(gf)
    ('scl_mask(keep_band=False)', 'xsits.ops.gapfill.gapfill')
    >>> describe(functools.partial(gf, method="nearest"))
    "functools.partial(xsits.ops.gapfill.gapfill, method='nearest')"
    """
    if isinstance(step, Step) or callable(getattr(step, "describe", None)):
        return str(step.describe())
    if isinstance(step, functools.partial):
        args = [describe(step.func), *map(repr, step.args),
                *(f"{k}={v!r}" for k, v in step.keywords.items())]
        return f"functools.partial({', '.join(args)})"
    name = getattr(step, "__qualname__", None)
    module = getattr(step, "__module__", None)
    if name and module:
        return f"{module}.{name}"
    return repr(step)


# the flags of build_steps shadow these class names
_HARMONIZE, _DROP_CLOUDY, _GAPFILL = harmonize, drop_cloudy, gapfill
_COMPOSITE, _SMOOTH = composite, smooth


@dataclass(frozen=True)
class StepOptions:
    """The optional steps a catalog entry offers, with their defaults (written here only).

    :func:`build_steps`, :func:`xsits.intake.postprocess`, :class:`xsits.intake.SitsSource`
    and the Intake entries' parameters take their defaults from here.

    Examples
    --------
    >>> StepOptions()
    StepOptions(harmonize=False, mask=False, gapfill=None)
    >>> build_steps(**dataclasses.asdict(StepOptions(mask=True)))
    [xsits.ops.steps.cloud_mask()]
    """

    harmonize: bool = False
    mask: bool = False
    gapfill: str | None = None


def build_steps(*, harmonize: bool = StepOptions.harmonize, mask: bool = StepOptions.mask,
                dilate: int = 0, drop_cloudy: float | None = None,
                gapfill: str | None = StepOptions.gapfill, composite: str | None = None,
                smooth: str | None = None) -> list[Step]:
    """The usual pipeline from flags, in order: harmonize, mask, drop cloudy, gap-fill...

    ``mask`` is the cloud mask of each cube's collection (:class:`cloud_mask`, clouds and
    shadows grown by ``dilate`` pixels). Then a composite (median over periods of
    ``composite``) and smoothing (method ``smooth``).
    What ``xsits fetch --harmonize --mask --gapfill``, ``xsits sample`` and the Intake
    entries' ``harmonize`` / ``mask`` / ``gapfill`` parameters run.

    Examples
    --------
    >>> build_steps(harmonize=True, mask=True, gapfill="linear")
    [xsits.ops.steps.harmonize(), xsits.ops.steps.cloud_mask(),
     xsits.ops.steps.gapfill(method='linear')]
    >>> build_steps(composite="10D", smooth="whittaker")
    [xsits.ops.steps.composite(freq='10D', how='median'),
     xsits.ops.steps.smooth(method='whittaker')]
    """
    out: list[Step] = []
    if harmonize:
        out.append(_HARMONIZE())
    if mask:
        out.append(cloud_mask(dilate=dilate))
    if drop_cloudy is not None:
        out.append(_DROP_CLOUDY(max_fraction=drop_cloudy))
    if gapfill:
        out.append(_GAPFILL(method=gapfill))
    if composite:
        out.append(_COMPOSITE(freq=composite))
    if smooth:
        out.append(_SMOOTH(method=smooth))
    return out
