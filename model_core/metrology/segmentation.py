"""Intensity classes of a CT slice without hand-set thresholds.

A reconstruction's grey values depend on the scanner, the bit depth (8 or 16) and the display
window someone exported it with. The classes (air, electrodes, steel) are found on a robust
rescaling (the 0.5 and 99.5 percentiles) by multi-class Otsu, so a threshold is a property of the
image's histogram, never a constant.
"""

from __future__ import annotations

import numpy as np
from skimage.filters import threshold_multiotsu

ROBUST_PERCENTILES = (0.5, 99.5)
BINS = 256


def robust_unit(image: np.ndarray) -> np.ndarray:
    """`image` as float32 scaled so its 0.5 and 99.5 percentiles are 0 and 1 (clipped)."""
    values = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(values, ROBUST_PERCENTILES)
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.float32)
    return np.asarray(np.clip((values - lo) / (hi - lo), 0.0, 1.0), dtype=np.float32)


def class_thresholds(unit: np.ndarray, classes: int = 3, *, where: np.ndarray | None = None) -> np.ndarray:
    """The `classes - 1` multi-Otsu thresholds of `unit` (a `robust_unit` image), ascending; only
    the pixels under `where` count when given."""
    values = unit[where] if where is not None else unit.ravel()
    if values.size == 0 or float(values.max()) <= float(values.min()):
        return np.linspace(0.0, 1.0, classes + 1, dtype=np.float32)[1:-1]
    return np.asarray(threshold_multiotsu(values, classes=classes, nbins=BINS), dtype=np.float32)


def brightest(unit: np.ndarray, classes: int = 3) -> np.ndarray:
    """The pixels of the brightest intensity class (in a cell's slice: the steel can, tabs)."""
    return np.asarray(unit > class_thresholds(unit, classes)[-1])
