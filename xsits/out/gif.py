"""Timelapses of a cube: animated GIF, PNG frames and MP4 video, drawn with Pillow.

Owns: :class:`FrameStyle` (how every frame is drawn: bands, stretch, colormap, date label,
size; made from keywords once by each public function, each default written once) and the
one rendering path of :func:`to_gif`, :func:`frames`, :func:`to_png` and :func:`to_video`.
Must not: compute a cube outside the one delayed render; import ``batch`` or anything above.

One rendering path: the bands are picked and stacked (:func:`_stack`), small patches are
enlarged with nearest-neighbour sampling, stretched to 8 bits (robust percentiles or
``vmin``/``vmax``; one band through a matplotlib colormap), labelled with their date and
written as GIF bytes by Pillow (:func:`_render`; on dask input inside one delayed call).
:func:`to_gif` writes those bytes; :func:`frames` decodes them into Pillow images, which
:func:`to_png` and :func:`to_video` write. PNG and MP4 frames therefore look exactly like the
GIF's (same stretch, date label and 256-colour palette). The frames are those geogif drew
(the same stretch, label font, position and timing), without its ``numpy<2`` pin.

Pixels that are NaN (masked) or equal to an integer band's ``attrs["nodata"]`` are black
(a GIF palette keeps no alpha channel, so they are not transparent).
Pillow merges identical consecutive GIF frames into one frame of summed duration (the
animation timing is unchanged); :func:`frames` undoes that, so it always gives one image per
date.

Examples
--------
>>> from xsits.testing.cubes import make_cube
>>> ds = make_cube(n_times=3, shape=(10, 10), bands=("B02", "B03", "B04"))
>>> imgs = frames(ds)
>>> len(imgs), imgs[0].size
(3, (260, 260))
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as dsa
import numpy as np
import xarray as xr
from PIL import Image, ImageDraw, ImageFont, ImageSequence

from xsits._common import as_float
from xsits.errors import BandError, ExportError, MissingDependencyError
from xsits.out.atomic import atomic_path
from xsits.stac.providers import find_band

#: Long side (pixels) small rasters are enlarged to, at least, when ``size`` is None.
MIN_SIDE = 256

#: Frames per second of :func:`to_gif` and :func:`to_video`.
FPS = 8

Bands = str | Sequence[Hashable]


@dataclass(frozen=True)
class FrameStyle:
    """How each frame of a timelapse is drawn, as one frozen value.

    Every output (:func:`to_gif`, :func:`frames`, :func:`to_png`, :func:`to_video`) takes one
    as ``style=`` and its fields as keywords (:meth:`from_kwargs`).

    Parameters
    ----------
    bands
        Three bands for RGB, or one band name (rendered with ``cmap``). Ignored for a
        DataArray (its ``band`` dimension, or the array itself, is drawn).
    robust
        Stretch between the 2nd and 98th percentiles of all frames (else min/max).
    date_labels
        Print the date (``%Y-%m-%d``) in the upper-left corner of each frame.
    vmin, vmax
        Fixed stretch (data values mapped to black / white), overriding ``robust``.
    cmap
        Matplotlib colormap (name or object) for a single band (None: ``"viridis"``);
        ignored for RGB.
    size
        Long side of the frames in pixels (nearest-neighbour). None: small rasters are
        enlarged by a whole factor until the long side is at least :data:`MIN_SIDE` pixels.

    Raises
    ------
    ExportError
        ``size`` is not a positive number of pixels.

    Examples
    --------
    >>> FrameStyle(bands=["B08"], size=64).bands
    ('B08',)
    >>> FrameStyle(size=0)
    Traceback (most recent call last):
    ...
    xsits.errors.ExportError: size=0 must be a positive number of pixels, e.g. size=512
    """

    bands: Bands = ("B04", "B03", "B02")
    robust: bool = True
    date_labels: bool = True
    vmin: float | None = None
    vmax: float | None = None
    cmap: Any = None
    size: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.bands, str):
            object.__setattr__(self, "bands", tuple(self.bands))
        if self.size is not None and self.size < 1:
            raise ExportError(f"size={self.size} must be a positive number of pixels, "
                              "e.g. size=512")

    @classmethod
    def from_kwargs(cls, style: FrameStyle | None = None, /, **kwargs: Any) -> FrameStyle:
        """``style`` (default: the defaults) with the fields named in ``kwargs`` changed.

        Raises
        ------
        TypeError
            A keyword that is no field of :class:`FrameStyle`.

        Examples
        --------
        >>> FrameStyle.from_kwargs(FrameStyle(size=64), cmap="Greens")
        FrameStyle(bands=('B04', 'B03', 'B02'), robust=True, date_labels=True, vmin=None, \
vmax=None, cmap='Greens', size=64)
        >>> FrameStyle.from_kwargs(fsp=4)
        Traceback (most recent call last):
        ...
        TypeError: unknown argument(s) ['fsp']; known: bands, robust, date_labels, vmin, \
vmax, cmap, size
        """
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in kwargs if k not in known]
        if unknown:
            raise TypeError(f"unknown argument(s) {unknown}; known: {', '.join(known)}")
        return dataclasses.replace(style or cls(), **kwargs)


def _fid(obj: xr.Dataset | xr.DataArray) -> str:
    return repr(obj.attrs.get("feature_id", "?"))


def _band(ds: xr.Dataset, name: Hashable) -> xr.DataArray:
    """Band ``name`` of ``ds``, under either Sentinel-2 name (``B04`` / ``red``)."""
    found = find_band(ds, name)
    if found is None:
        raise BandError(
            f"band {name!r} is not in the cube of feature {_fid(ds)} "
            f"(it has {', '.join(map(str, ds.data_vars))}); pass bands= with names from these"
        )
    return ds[found]


def _stack(obj: xr.Dataset | xr.DataArray, bands: Bands) -> xr.DataArray:
    """A float32 ``(time, band, y, x)`` stack of 1 or 3 bands, lazy if ``obj`` is."""
    if isinstance(obj, xr.DataArray):
        if "band" in obj.dims:
            layers = [obj.isel(band=i) for i in range(obj.sizes["band"])]
        else:
            layers = [obj]
    else:
        names = [bands] if isinstance(bands, str) else list(bands)
        layers = [_band(obj, name) for name in names]
    if len(layers) not in (1, 3):
        raise BandError(
            f"need 1 band (colormap) or 3 bands (RGB) to render feature {_fid(obj)}, "
            f"got {len(layers)}; pass bands='B08' or bands=('B04', 'B03', 'B02')"
        )
    for layer in layers:
        if set(layer.dims) != {"time", "y", "x"}:
            raise ExportError(
                f"cannot render {layer.name!r} of feature {_fid(obj)} with dims {layer.dims}; "
                "a timelapse needs (time, y, x)"
            )
    floats = [as_float(layer).astype("float32") for layer in layers]  # nodata -> NaN
    for layer in floats:
        layer.attrs = {}
    stack = xr.concat(floats, dim="band", coords="minimal", compat="override", join="override")
    stack = stack.transpose("time", "band", "y", "x")
    if stack.sizes["time"] == 0:
        raise ExportError(f"nothing to render: the cube of feature {_fid(obj)} has no dates")
    return stack


def _target_shape(ny: int, nx: int, size: int | None) -> tuple[int, int]:
    long_side = max(ny, nx)
    if size is None:
        factor = math.ceil(MIN_SIDE / long_side) if long_side < MIN_SIDE else 1
        return ny * factor, nx * factor
    scale = size / long_side
    return max(1, round(ny * scale)), max(1, round(nx * scale))


def _resize(stack: xr.DataArray, size: int | None) -> xr.DataArray:
    """Nearest-neighbour resampling so the long side is ``size`` (or >= MIN_SIDE); numpy only.

    Done on the computed stack (inside the delayed render for dask input): dask's fancy
    indexing would be much slower than the rendering itself.
    """
    ny, nx = stack.sizes["y"], stack.sizes["x"]
    out_y, out_x = _target_shape(ny, nx, size)
    if (out_y, out_x) == (ny, nx):
        return stack
    iy = np.minimum((np.arange(out_y) + 0.5) * ny / out_y, ny - 1).astype(int)
    ix = np.minimum((np.arange(out_x) + 0.5) * nx / out_x, nx - 1).astype(int)
    return stack.isel(y=iy, x=ix)


def _stretch(data: np.ndarray, style: FrameStyle) -> tuple[float, float]:
    """Data values mapped to black and white: 2nd/98th percentiles (robust) or min/max."""
    vmin, vmax = style.vmin, style.vmax
    if vmin is None or vmax is None:
        finite = data[np.isfinite(data)]
        if finite.size == 0:
            low, high = 0.0, 1.0
        elif style.robust:
            low, high = (float(v) for v in np.percentile(finite, [2, 98]))
        else:
            low, high = float(finite.min()), float(finite.max())
        vmin = low if vmin is None else vmin
        vmax = high if vmax is None else vmax
    if vmax <= vmin:
        vmax = vmin + 1.0
    return float(vmin), float(vmax)


def _label(img: Any, label: str, font: Any) -> None:
    """Draw ``label`` in white on a black box in the upper-left corner of ``img``."""
    draw = ImageDraw.Draw(img)
    left, top, right, bottom = font.getbbox(label)
    width, height = right - left, bottom - top
    x = y = 15  # pixels from the corner
    pad = 0.1 * height
    draw.rectangle((x - pad, y - pad, x + width + pad, y + height + pad), fill=(0, 0, 0))
    draw.multiline_text((x - left, y - top), label, font=font, fill=(255, 255, 255))


def _render(
    stack: xr.DataArray, style: FrameStyle, *, fps: int, cmap: Any, date_format: str | None
) -> bytes:
    """GIF bytes of a numpy-backed ``(time, band, y, x)`` stack, drawn with Pillow.

    Values are stretched linearly from ``vmin`` (black) to ``vmax`` (white), a single band
    through ``cmap`` (the style's, resolved to a colormap); NaN pixels are set below the
    stretch (RGB) or to the colormap's black "bad" colour, as a GIF palette keeps no alpha.
    Each frame gets its date label, then Pillow writes the animation (``1000 / fps`` ms per
    frame, looping).
    """
    vmin, vmax = _stretch(np.asarray(stack.data), style)
    stack = _resize(stack, style.size)
    data = np.asarray(stack.data, dtype="float32")
    if stack.sizes["band"] == 3:
        missing = np.isnan(data).any(axis=1, keepdims=True)
        data = np.where(missing, vmin - (vmax - vmin) - 1.0, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        scaled = ((data.astype("float64") - vmin) / (vmax - vmin)).astype("float32")
        scaled = np.clip(scaled, 0, 1)
        if stack.sizes["band"] == 1:
            rgba = cmap(scaled[:, 0])  # (time, y, x, 4), NaN -> the "bad" colour
        else:
            rgba = np.concatenate([np.moveaxis(scaled, 1, -1),
                                   np.ones((*scaled.shape[:1], *scaled.shape[2:], 1), "float32")],
                                  axis=-1)
        u8 = np.clip((rgba * 255).astype("uint8"), 0, 255)
    images = [Image.fromarray(frame) for frame in u8]
    if date_format:
        font = ImageFont.load_default(size=max(10, stack.sizes["x"] // 20))
        labels = stack["time"].dt.strftime(date_format).values
        for label, image in zip(labels, images, strict=True):
            _label(image, str(label), font)
    buffer = io.BytesIO()
    images[0].save(buffer, format="gif", save_all=True, append_images=images[1:],
                   duration=1000 / fps, loop=0, disposal=2)
    return buffer.getvalue()


def _gif_bytes(obj: xr.Dataset | xr.DataArray, style: FrameStyle, fps: int) -> bytes:
    """The rendering shared by every output: the GIF of the prepared stack (one compute)."""
    stack = _stack(obj, style.bands)
    cmap = style.cmap
    if stack.sizes["band"] == 1:
        try:
            import matplotlib  # optional: colour maps of one-band frames
        except ImportError:
            raise MissingDependencyError(
                "a one-band timelapse is drawn with a matplotlib colour map: pip install "
                "matplotlib, or draw three bands (bands=('B04', 'B03', 'B02'))") from None
        cmap = matplotlib.colormaps[cmap or "viridis"] if not hasattr(cmap, "N") else cmap
        cmap = cmap.with_extremes(bad="black")
    else:
        cmap = None
    is_time = np.issubdtype(stack["time"].dtype, np.datetime64)
    date_format = "%Y-%m-%d" if style.date_labels and is_time else None
    args = (stack, style)
    options = dict(fps=fps, cmap=cmap, date_format=date_format)
    if isinstance(stack.data, dsa.Array):  # one delayed render: only the GIF bytes come back
        return dask.delayed(_render, pure=True)(*args, **options).compute()
    return _render(*args, **options)


def frames(
    obj: xr.Dataset | xr.DataArray, *, style: FrameStyle | None = None, **style_kwargs: Any
) -> list:
    """Render the timelapse frames as RGB Pillow images, one per date (NaN pixels black).

    Parameters
    ----------
    obj
        A cube, or a single band / a ``(time, band, y, x)`` DataArray with 1 or 3 bands.
    style
        How the frames are drawn (:class:`FrameStyle`; default: its defaults), changed by
        ``style_kwargs``.
    **style_kwargs
        Fields of :class:`FrameStyle` by name: ``bands``, ``robust``, ``date_labels``,
        ``vmin``, ``vmax``, ``cmap``, ``size``.

    Returns
    -------
    list of PIL.Image.Image
        One ``"RGB"`` image per date.

    Raises
    ------
    BandError, ExportError
        As for :func:`to_gif`.

    Examples
    --------
    >>> from xsits.testing.cubes import make_cube
    >>> ds = make_cube(n_times=2, shape=(4, 8))
    >>> [im.size for im in frames(ds, bands="B08", cmap="Greens", size=64)]
    [(64, 32), (64, 32)]
    """
    style = FrameStyle.from_kwargs(style, **style_kwargs)
    # 1 frame per second: Pillow merges identical consecutive frames into one longer frame,
    # so a frame lasting k seconds stands for k dates.
    data = _gif_bytes(obj, style, fps=1)
    out = []
    with Image.open(io.BytesIO(data)) as gif:
        for frame in ImageSequence.Iterator(gif):
            rgb = frame.convert("RGB")
            repeat = max(1, round(frame.info.get("duration", 1000) / 1000))
            out.extend(rgb.copy() for _ in range(repeat))
    return out


def to_gif(
    obj: xr.Dataset | xr.DataArray,
    path: str | os.PathLike | None = None,
    *,
    fps: int = FPS,
    style: FrameStyle | None = None,
    **style_kwargs: Any,
) -> Path | Any:
    """Animated GIF of the cube, one frame per date, written atomically.

    Parameters
    ----------
    obj
        A cube, or a single band / a ``(time, band, y, x)`` DataArray with 1 or 3 bands.
    path
        Output file; an existing file is replaced. None: return an image that displays inline
        in Jupyter.
    fps
        Frames per second.
    style
        How the frames are drawn (:class:`FrameStyle`; default: its defaults), changed by
        ``style_kwargs``.
    **style_kwargs
        Fields of :class:`FrameStyle` by name: ``bands`` (three for RGB, or one drawn with
        ``cmap``), ``robust``, ``date_labels``, ``vmin``, ``vmax``, ``cmap``, ``size``.

    Returns
    -------
    pathlib.Path or IPython.display.Image
        The written path, or the inline image when ``path`` is None.

    Raises
    ------
    BandError
        A band is missing, or not 1 or 3 bands.
    ExportError
        The cube has no dates, a band is not on the (time, y, x) grid, or ``size`` is not
        positive.
    TypeError
        A keyword that is no field of :class:`FrameStyle`.

    Examples
    --------
    >>> import tempfile
    >>> from PIL import Image
    >>> from xsits.testing.cubes import make_cube
    >>> ds = make_cube(n_times=4, shape=(10, 10), bands=("B02", "B03", "B04"))
    >>> path = to_gif(ds, tempfile.mkdtemp() + "/f7.gif", fps=8)
    >>> with Image.open(path) as im:
    ...     im.n_frames, im.size
    (4, (260, 260))
    >>> type(to_gif(ds)).__name__
    'Image'
    """
    data = _gif_bytes(obj, FrameStyle.from_kwargs(style, **style_kwargs), fps=fps)
    if path is None:
        try:
            from IPython.display import Image
        except ImportError:
            raise MissingDependencyError(
                "to_gif(path=None) returns an IPython image; pip install ipython "
                "or pass path='out.gif'"
            ) from None
        return Image(data=data, format="gif")
    path = Path(path)
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_bytes(data)
    return path


def to_png(
    obj: xr.Dataset | xr.DataArray,
    path: str | os.PathLike,
    time: int | str | np.datetime64 = 0,
    *,
    style: FrameStyle | None = None,
    **style_kwargs: Any,
) -> Path:
    """One date as a PNG, rendered like a GIF frame, written atomically.

    Only that date is read (lazy cubes compute one date), so the ``robust`` stretch comes
    from that date alone; pass ``vmin``/``vmax`` to match a GIF's stretch exactly.

    Parameters
    ----------
    obj, style, **style_kwargs
        As for :func:`to_gif`.
    path
        Output ``.png`` file; an existing file is replaced.
    time
        Position of the date (int) or a date (nearest one is taken).

    Returns
    -------
    pathlib.Path
        The written path.

    Examples
    --------
    >>> import tempfile
    >>> from PIL import Image
    >>> from xsits.testing.cubes import make_cube
    >>> ds = make_cube(n_times=3, shape=(10, 10), bands=("B02", "B03", "B04"))
    >>> path = to_png(ds, tempfile.mkdtemp() + "/f7.png", time="2024-01-11")
    >>> Image.open(path).size
    (260, 260)
    """
    if isinstance(time, (int, np.integer)):
        one = obj.isel(time=[int(time)])
    else:
        one = obj.sel(time=[np.datetime64(time, "ns")], method="nearest")
    image = frames(one, style=style, **style_kwargs)[0]
    path = Path(path)
    with atomic_path(path, overwrite=True) as tmp:
        image.save(tmp, format="PNG")
    return path


def to_video(
    obj: xr.Dataset | xr.DataArray,
    path: str | os.PathLike,
    *,
    fps: int = FPS,
    style: FrameStyle | None = None,
    **style_kwargs: Any,
) -> Path:
    """MP4 (H.264) timelapse, one frame per date, written atomically (needs ``xsits[video]``).

    Frames are those of :func:`to_gif` (same options), padded with black to a multiple of
    16 pixels as H.264 encoders expect.

    Parameters
    ----------
    obj, fps, style, **style_kwargs
        As for :func:`to_gif`.
    path
        Output ``.mp4`` file; an existing file is replaced.

    Returns
    -------
    pathlib.Path
        The written path.

    Raises
    ------
    MissingDependencyError
        imageio / imageio-ffmpeg are not installed.

    Examples
    --------
    >>> import tempfile
    >>> from xsits.testing.cubes import make_cube
    >>> ds = make_cube(n_times=3, shape=(10, 10), bands=("B02", "B03", "B04"))
    >>> path = to_video(ds, tempfile.mkdtemp() + "/f7.mp4")
    >>> path.stat().st_size > 0
    True
    """
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            "to_video needs imageio and imageio-ffmpeg; pip install 'xsits[video]'"
        ) from None
    images = frames(obj, style=style, **style_kwargs)
    path = Path(path)
    with atomic_path(path, overwrite=True) as tmp:
        writer = imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264",
                                    pixelformat="yuv420p", macro_block_size=1, quality=8)
        try:
            for image in images:
                writer.append_data(_pad16(np.asarray(image)))
        finally:
            writer.close()
    return path

def _pad16(frame: np.ndarray) -> np.ndarray:
    """Pad a ``(h, w, 3)`` frame with black to multiples of 16 pixels."""
    h, w = frame.shape[:2]
    return np.pad(frame, ((0, -h % 16), (0, -w % 16), (0, 0)))
