"""xsits.out.gif: GIF / PNG / MP4 timelapses of small generated cubes."""

from __future__ import annotations

import io
import os
import warnings

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr
from PIL import Image, ImageSequence

import xsits  # noqa: F401  (registers .sits)
from xsits.errors import BandError, ExportError
from xsits.ops.mask import scl_mask
from xsits.out.gif import FrameStyle, frames, to_gif, to_png
from xsits.testing.cubes import make_cube

from helpers import raise_if_dask_computes

warnings.filterwarnings("ignore", category=PendingDeprecationWarning)

RGB = ("B04", "B03", "B02")


def cube(chunks=None, n_times=4, shape=(10, 10)) -> xr.Dataset:
    return make_cube(n_times=n_times, shape=shape, bands=("B02", "B03", "B04", "B08", "SCL"),
                     feature_id="7", chunks=chunks)


def gif_frames(path) -> list[np.ndarray]:
    with Image.open(path) as im:
        return [np.asarray(f.convert("RGBA")) for f in ImageSequence.Iterator(im)]


def test_gif_one_frame_per_date_upscaled_and_changing(tmp_path):
    ds = cube()
    path = to_gif(ds, tmp_path / "f7.gif", bands=RGB, fps=5)
    assert path == tmp_path / "f7.gif"
    with Image.open(path) as im:
        assert im.n_frames == 4
        assert im.size == (260, 260)  # 10 px * 26 >= 256, nearest neighbour
        assert im.info["duration"] == 200
    imgs = gif_frames(path)
    for a, b in zip(imgs, imgs[1:], strict=False):
        assert not np.array_equal(a, b)
    # nearest neighbour: each source pixel is a uniform 26 x 26 block (away from the label)
    block = imgs[0][234:260, 234:260]
    assert (block == block[0, 0]).all()
    assert os.listdir(tmp_path) == ["f7.gif"]


def test_picture_check_gif_and_png_show_the_scene(tmp_path):
    ds = cube()
    gif_path = to_gif(ds, tmp_path / "scene.gif")
    png_path = to_png(ds, tmp_path / "scene.png", time=0)
    assert gif_path.stat().st_size > 0
    with Image.open(png_path) as im:
        assert im.format == "PNG" and im.size == (260, 260)
        pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
    colours = np.unique(pixels, axis=0)
    assert len(colours) > 20  # a textured scene, not a blank or a flat fill
    assert pixels.std() > 10


def test_png_by_date_matches_position(tmp_path):
    ds = cube()
    by_index = np.asarray(Image.open(to_png(ds, tmp_path / "a.png", time=2)))
    by_date = np.asarray(Image.open(to_png(ds, tmp_path / "b.png", time="2024-01-21T03:00")))
    other = np.asarray(Image.open(to_png(ds, tmp_path / "c.png", time=1)))
    assert np.array_equal(by_index, by_date)
    assert not np.array_equal(by_index, other)


def test_masked_pixels_are_black_not_crashing():
    ds = scl_mask(cube())
    imgs = [np.asarray(im) for im in frames(ds, date_labels=False)]
    # date 1: cloud over the top-left 5 x 5 pixels -> rows/cols 0..129 black
    assert (imgs[1][40:130, 40:130] == 0).all()
    assert (imgs[0][40:130, 40:130] != 0).any()
    assert (imgs[1][200:, 200:] != 0).any()


def test_integer_nodata_is_black():
    # stretch -100..100: valid reflectances are white, a 0 read as data would be mid-grey
    imgs = [np.asarray(im) for im in frames(cube(), date_labels=False, vmin=-100, vmax=100)]
    assert (imgs[-1][:26, :26] == 0).all()  # nodata pixel (0, 0) of the last date
    assert (imgs[-1][26:, 26:] == 255).all()
    assert (imgs[0][:26, :26] == 255).all()


def test_all_nan_cube_renders_black():
    ds = scl_mask(cube())
    ds = ds.assign({b: ds[b] * np.nan for b in RGB})
    imgs = frames(ds, date_labels=False)
    assert len(imgs) == 4
    assert all(np.asarray(im).max() == 0 for im in imgs)


def test_date_labels_drawn_and_different():
    ds = cube()
    with_labels = [np.asarray(im) for im in frames(ds)]
    without = [np.asarray(im) for im in frames(ds, date_labels=False)]
    corner = (slice(10, 35), slice(10, 100))
    assert not np.array_equal(with_labels[0][corner], without[0][corner])
    assert np.array_equal(with_labels[0][150:, 150:], without[0][150:, 150:])
    diff = with_labels[0][corner].astype(int) - with_labels[1][corner].astype(int)
    assert diff.any()  # different dates, different text


def test_vmin_vmax_fix_the_stretch():
    imgs = frames(cube(), vmin=0, vmax=1, date_labels=False)
    assert (np.asarray(imgs[0]) == 255).all()  # every reflectance > 1: saturated white


def test_single_band_colormap_and_dataarray(tmp_path):
    ds = cube(shape=(4, 8))
    greens = [np.asarray(im) for im in frames(ds, bands="B08", cmap="Greens", size=64)]
    assert greens[0].shape == (32, 64, 3)
    da = [np.asarray(im) for im in frames(ds.B08, cmap="Greens", size=64)]
    assert all(np.array_equal(a, b) for a, b in zip(greens, da, strict=True))
    red = frames(ds, bands="B08", cmap="Reds", size=64, date_labels=False)[0]
    r, g, b = np.asarray(red).reshape(-1, 3).mean(axis=0)
    assert r > g and r > b
    path = ds.B08.sits.to_gif(tmp_path / "b08.gif")
    with Image.open(path) as im:
        assert im.n_frames == 4 and im.size == (256, 128)


def test_large_rasters_are_not_resized():
    assert frames(cube(n_times=1, shape=(300, 20)))[0].size == (20, 300)
    assert frames(cube(n_times=1, shape=(300, 20)), size=150)[0].size == (10, 150)


def test_errors():
    ds = cube()
    with pytest.raises(BandError, match="'B99'") as err:
        to_gif(ds, bands=("B04", "B03", "B99"))
    assert "\n" not in str(err.value)
    with pytest.raises(BandError, match="1 band"):
        to_gif(ds, bands=("B04", "B03"))
    with pytest.raises(ExportError, match="no dates"):
        to_gif(ds.isel(time=slice(0, 0)))


def test_style_object_and_keywords_draw_the_same_frames(tmp_path):
    ds = cube()
    style = FrameStyle(bands="B08", cmap="Greens", size=64)
    by_keywords = [np.asarray(im) for im in frames(ds, bands=["B08"], cmap="Greens", size=64)]
    by_style = [np.asarray(im) for im in frames(ds, style=style)]
    assert all(np.array_equal(a, b) for a, b in zip(by_keywords, by_style, strict=True))
    # a keyword changes that field of the style only; the accessor forwards both
    reds = frames(ds, style=style, cmap="Reds")
    assert reds[0].size == (64, 64)
    assert not np.array_equal(np.asarray(reds[0]), by_style[0])
    path = ds.sits.to_gif(tmp_path / "b08.gif", style=style, fps=2)
    with Image.open(path) as im:
        assert im.info["duration"] == 500
        assert np.array_equal(np.asarray(im.convert("RGB")), by_style[0])
    assert FrameStyle(bands=["B04", "B03", "B02"]) == FrameStyle()  # a list becomes a tuple
    assert hash(FrameStyle(bands=["B08"])) == hash(FrameStyle(bands=("B08",)))


def test_style_rejects_bad_keywords_before_reading(tmp_path):
    ds = cube(chunks={"time": 2})
    with raise_if_dask_computes():
        with pytest.raises(TypeError, match=r"\['fsp'\]; known: bands, robust"):
            to_gif(ds, tmp_path / "f.gif", fsp=4)
        with pytest.raises(ExportError, match="size=0 must be a positive"):
            to_gif(ds, tmp_path / "f.gif", size=0)
    assert os.listdir(tmp_path) == []


def test_inline_image_when_no_path():
    image = cube().sits.to_gif()
    assert type(image).__module__.startswith("IPython")
    assert image.data[:4] == b"GIF8"
    assert image.format == "gif"
    with Image.open(io.BytesIO(image.data)) as im:
        assert im.n_frames == 4


def test_dask_input_renders_the_same_with_one_compute(tmp_path):
    eager = to_gif(cube(), tmp_path / "eager.gif")
    lazy_cube = cube(chunks={"time": 1})
    with raise_if_dask_computes(max_computes=1):
        lazy = to_gif(lazy_cube, tmp_path / "lazy.gif")
    assert eager.read_bytes() == lazy.read_bytes()


def test_failed_render_leaves_no_file_and_overwrite_replaces(tmp_path):
    ds = cube(chunks={"time": 1})

    def boom(block):
        raise RuntimeError("boom")

    bad = ds.assign(B04=ds.B04.copy(data=dsa.map_blocks(boom, ds.B04.data, dtype="uint16")))
    with pytest.raises(RuntimeError, match="boom"):
        to_gif(bad, tmp_path / "f.gif")
    assert os.listdir(tmp_path) == []
    to_gif(cube(n_times=2), tmp_path / "f.gif")
    to_gif(cube(n_times=3), tmp_path / "f.gif")
    with Image.open(tmp_path / "f.gif") as im:
        assert im.n_frames == 3
    assert os.listdir(tmp_path) == ["f.gif"]


def test_video_frame_count(tmp_path):
    imageio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg")
    path = cube(n_times=5).sits.to_video(tmp_path / "f7.mp4", fps=4)
    assert path.stat().st_size > 0
    assert os.listdir(tmp_path) == ["f7.mp4"]
    reader = imageio.get_reader(path)
    try:
        assert reader.count_frames() == 5
        first = reader.get_data(0)
        assert first.shape == (272, 272, 3)  # 260 padded to a multiple of 16
        assert first[:260, :260].std() > 10 and first[265:, :].max() < 30
    finally:
        reader.close()


def test_rgb_dataarray_with_band_dim_matches_dataset():
    ds = cube()
    stacked = ds[list(RGB)].to_dataarray("band").transpose("time", "band", "y", "x")
    from_da = [np.asarray(im) for im in frames(stacked)]
    from_ds = [np.asarray(im) for im in frames(ds, bands=RGB)]
    assert len(from_da) == 4
    assert all(np.array_equal(a, b) for a, b in zip(from_da, from_ds, strict=True))


# GIFs drawn by the previous renderer (geogif 0.3 on NumPy 1.26 / Pillow 10.4) from these
# cubes, kept in tests/data/gif_reference/: the Pillow renderer must draw the same frames.
REFERENCE = os.path.join(os.path.dirname(__file__), "data", "gif_reference")


def reference_cases() -> dict[str, dict]:
    def five(**kw):
        return make_cube(n_times=4, shape=(10, 10), bands=("B02", "B03", "B04", "B08", "SCL"),
                         feature_id="7", **kw)

    return {
        "rgb": dict(obj=five(), bands=RGB, fps=5),
        "rgb_masked": dict(obj=scl_mask(five()), bands=RGB, fps=8),
        "rgb_nolabel_size": dict(obj=five(), bands=RGB, fps=4, date_labels=False, size=64),
        "single_cmap": dict(obj=scl_mask(five()), bands="B08", cmap="Greens", fps=2),
        "single_default": dict(obj=five(), bands="B08", fps=10, robust=False),
        "rgb_vminmax_dask": dict(obj=five(chunks={"time": 2}), bands=RGB, vmin=1500,
                                 vmax=2500, fps=3),
        "wide": dict(obj=make_cube(n_times=3, shape=(6, 20), bands=("B02", "B03", "B04", "SCL"),
                                   seed=3), bands=RGB, fps=6),
    }


@pytest.mark.parametrize("name", sorted(reference_cases()))
def test_frames_equal_the_previous_renderer(tmp_path, name):
    kwargs = reference_cases()[name]
    obj = kwargs.pop("obj")
    path = to_gif(obj, tmp_path / f"{name}.gif", **kwargs)
    with Image.open(path) as new, Image.open(os.path.join(REFERENCE, f"{name}.gif")) as old:
        assert new.n_frames == old.n_frames == obj.sizes["time"]
        assert new.size == old.size
        for a, b in zip(ImageSequence.Iterator(new), ImageSequence.Iterator(old), strict=True):
            assert a.info["duration"] == b.info["duration"]  # centiseconds in a GIF
            assert abs(a.info["duration"] - 1000 / kwargs["fps"]) <= 10
            assert np.array_equal(np.asarray(a.convert("RGBA")), np.asarray(b.convert("RGBA")))


def test_one_band_without_matplotlib_says_how_to_get_it(tmp_path, monkeypatch):
    import sys

    from xsits.errors import MissingDependencyError

    ds = cube(shape=(2, 8))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    with pytest.raises(MissingDependencyError, match="pip install matplotlib"):
        to_gif(ds, tmp_path / "one.gif", bands=("B08",))
    assert not list(tmp_path.iterdir())  # nothing written
    to_gif(ds, tmp_path / "three.gif")  # three bands need no colour map
    assert (tmp_path / "three.gif").stat().st_size > 0
