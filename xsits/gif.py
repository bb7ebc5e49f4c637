"""Animated GIFs (stub: being written)."""

from __future__ import annotations


def to_gif(obj, path=None, bands=("B04", "B03", "B02"), fps=8, robust=True, date_labels=True,
           vmin=None, vmax=None, cmap=None, size=None):
    """Render a timelapse GIF (stub)."""
    raise NotImplementedError


def to_video(obj, path, bands=("B04", "B03", "B02"), fps=8, robust=True, date_labels=True,
             vmin=None, vmax=None, cmap=None, size=None):
    """Render an MP4 timelapse (stub)."""
    raise NotImplementedError
