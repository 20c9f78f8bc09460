"""Cell-frame coordinates of every pixel: the cell's centre, rotation and ellipticity undone."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from producers.simulator.spec import CellSpec

# float32 throughout: half the memory traffic of float64, and ample precision for 4096 px
Array = npt.NDArray[np.floating[Any]]


@dataclass(frozen=True)
class CellCoordinates:
    """Per-pixel coordinates in the cell frame (px): `x`, `y` Cartesian, `r`, `theta` polar."""

    x: Array
    y: Array
    r: Array
    theta: Array

    def local(self, radius: float, angle: float) -> tuple[Array, Array]:
        """Offsets from the point (radius, angle), split into the radial and the tangential direction."""
        cos_a, sin_a = math.cos(angle), math.sin(angle)  # Python floats keep the arrays float32
        dx = self.x - radius * cos_a
        dy = self.y - radius * sin_a
        radial = dx * cos_a + dy * sin_a
        tangential = -dx * sin_a + dy * cos_a
        return radial, tangential

    def crop(self, window: tuple[slice, slice]) -> CellCoordinates:
        """The coordinates of a rectangular part of the slice."""
        return CellCoordinates(x=self.x[window], y=self.y[window], r=self.r[window], theta=self.theta[window])

    def arc_offset(self, angle: float) -> Array:
        """Signed arc length from the ray at `angle` (px at each pixel's own radius)."""
        return wrap_angle(self.theta - angle) * self.r


def wrap_angle(angle: Array) -> Array:
    return np.asarray((angle + np.pi) % (2 * np.pi) - np.pi, dtype=np.float32)


@lru_cache(maxsize=8)
def pixel_grid(size: int) -> tuple[Array, Array]:
    """Row and column index of every pixel (read-only, shared between slices of one size)."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    rows.flags.writeable = False
    cols.flags.writeable = False
    return rows, cols


def cell_coordinates(cell: CellSpec, size: int) -> CellCoordinates:
    rows, cols = pixel_grid(size)
    dx, dy = cols - cell.centre_x, rows - cell.centre_y
    cos_r, sin_r = math.cos(cell.rotation), math.sin(cell.rotation)
    x = (dx * cos_r + dy * sin_r) / (1 + cell.ellipticity)
    y = (-dx * sin_r + dy * cos_r) / (1 - cell.ellipticity)
    return CellCoordinates(x=x, y=y, r=np.hypot(x, y), theta=np.arctan2(y, x))


@lru_cache(maxsize=8)
def axis_radius(size: int) -> Array:
    """Distance from the image centre, where the scanner's rotation axis (and its ring artefacts) sit."""
    rows, cols = pixel_grid(size)
    centre = (size - 1) / 2
    radius = np.asarray(np.hypot(rows - centre, cols - centre), dtype=np.float32)
    radius.flags.writeable = False
    return radius
