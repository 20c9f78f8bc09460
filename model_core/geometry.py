"""Where the cell is in a slice, and the polar unwrap that turns its spiral into stripes.

A cylindrical cell's axial slice is a bright steel ring (the can) around a jelly roll wound about
the centre. Unwrapped around the can's centre with the radius normalised by the can's radius,
every cell's layers become near-horizontal stripes at comparable rows, and a rotation of the cell
becomes a circular shift along the angle axis: a patch memory can then compare like with like.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# Fraction of the brightest pixels taken as candidates for the can wall; the wall is the densest,
# brightest structure of a CT slice of a cell, so it dominates this set.
_RING_FRACTION = 0.03
_FIT_ROUNDS = 4


@dataclass(frozen=True)
class CanGeometry:
    """The can as a circle in pixel coordinates (row, column) of the slice."""

    center_row: float
    center_col: float
    radius: float


@dataclass(frozen=True)
class PolarGrid:
    """Sampling of the unwrapped slice: `radial` rows from the centre out to `outer` can radii,
    `angular` columns over the full turn."""

    radial: int
    angular: int
    outer: float = 1.04


def _fit_circle(rows: np.ndarray, cols: np.ndarray) -> tuple[float, float, float]:
    # Algebraic (Kasa) least-squares fit: r^2 + c^2 = 2*a*r + 2*b*c + k is linear in (a, b, k).
    design = np.stack([2 * rows, 2 * cols, np.ones_like(rows)], axis=1)
    target = rows**2 + cols**2
    (a, b, k), *_ = np.linalg.lstsq(design, target, rcond=None)
    radius = float(np.sqrt(max(k + a**2 + b**2, 1e-6)))
    return float(a), float(b), radius


def find_can(image: np.ndarray) -> CanGeometry:
    """Fit the can's circle to the brightest pixels, dropping outliers (inclusions, streaks, tabs).

    Falls back to the centred inscribed circle when the slice has no ring-like bright structure, so
    that any square image can still be scored.
    """
    size_r, size_c = image.shape
    fallback = CanGeometry((size_r - 1) / 2, (size_c - 1) / 2, 0.47 * min(size_r, size_c))
    smooth = ndimage.uniform_filter(image.astype(np.float32), size=3)
    cut = np.quantile(smooth, 1.0 - _RING_FRACTION)
    rows, cols = np.nonzero(smooth >= cut)
    # Too few candidates, or a flat image where ties make everything a candidate: no ring to fit.
    if rows.size < 16 or rows.size > 3 * _RING_FRACTION * smooth.size:
        return fallback
    rows_f, cols_f = rows.astype(np.float64), cols.astype(np.float64)
    keep = np.ones(rows.size, dtype=bool)
    center_r, center_c, radius = fallback.center_row, fallback.center_col, fallback.radius
    for round_ in range(_FIT_ROUNDS):
        if keep.sum() < 16:
            return fallback
        center_r, center_c, radius = _fit_circle(rows_f[keep], cols_f[keep])
        distance = np.hypot(rows_f - center_r, cols_f - center_c)
        # Tighten the band each round: the ring is thin, everything far from it is not the can.
        band = radius * (0.25 / (round_ + 1))
        keep = np.abs(distance - radius) < band
    plausible = 0.15 * min(size_r, size_c) < radius < 0.75 * min(size_r, size_c)
    inside = 0 <= center_r < size_r and 0 <= center_c < size_c
    if not (plausible and inside):
        return fallback
    return CanGeometry(center_r, center_c, radius)


def _polar_coordinates(geometry: CanGeometry, grid: PolarGrid) -> tuple[np.ndarray, np.ndarray]:
    radii = (np.arange(grid.radial, dtype=np.float32) + 0.5) / grid.radial * grid.outer * geometry.radius
    angles = np.arange(grid.angular, dtype=np.float32) / grid.angular * np.float32(2 * np.pi)
    rows = geometry.center_row + radii[:, None] * np.sin(angles)[None, :]
    cols = geometry.center_col + radii[:, None] * np.cos(angles)[None, :]
    return rows, cols


def unwrap(image: np.ndarray, geometry: CanGeometry, grid: PolarGrid) -> np.ndarray:
    """The slice resampled on the polar grid: shape (grid.radial, grid.angular), float32."""
    rows, cols = _polar_coordinates(geometry, grid)
    sampled = ndimage.map_coordinates(image.astype(np.float32), [rows, cols], order=1, mode="nearest")
    return np.asarray(sampled, dtype=np.float32)


def rewrap(polar_map: np.ndarray, geometry: CanGeometry, shape: tuple[int, int], outer: float) -> np.ndarray:
    """Map values on the polar grid back onto the slice's pixels (0 outside the unwrapped disc)."""
    radial, angular = polar_map.shape
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    d_row, d_col = rows - geometry.center_row, cols - geometry.center_col
    radius_index = np.hypot(d_row, d_col) / (outer * geometry.radius) * radial - 0.5
    angle_index = (np.arctan2(d_row, d_col) % (2 * np.pi)) / (2 * np.pi) * angular
    # Pad one column so the interpolation wraps around the seam at angle 0 = 2*pi.
    padded = np.concatenate([polar_map, polar_map[:, :1]], axis=1)
    values = np.asarray(
        ndimage.map_coordinates(padded.astype(np.float32), [radius_index, angle_index], order=1, mode="nearest"),
        dtype=np.float32,
    )
    values[radius_index > radial - 0.5] = 0.0
    return values
