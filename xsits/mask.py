"""SCL cloud masking (stub: being written)."""

from __future__ import annotations

DEFAULT_CLASSES = (0, 1, 3, 8, 9, 10)


def scl_mask(ds, classes=DEFAULT_CLASSES, band="SCL", keep_band=True, mask=None):
    """Mask pixels whose SCL class is in ``classes`` (stub)."""
    raise NotImplementedError


def masked_fraction(ds, classes=DEFAULT_CLASSES, band="SCL", mask=None):
    """Fraction of masked pixels per date (stub)."""
    raise NotImplementedError


def drop_cloudy(ds, max_fraction=0.5, classes=DEFAULT_CLASSES, band="SCL", mask=None):
    """Drop dates whose masked fraction exceeds ``max_fraction`` (stub)."""
    raise NotImplementedError
