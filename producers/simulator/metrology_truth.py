"""The true can geometry of a simulated slice, as the `can.*` measurements' values.

The simulator draws the can between the radii `radius - can_thickness` and `radius` of the cell
frame (`geometry.cell_coordinates`: rotated, stretched by `1 + ellipticity` along `rotation` and
squeezed by `1 - ellipticity` across it), and a can dent moves both walls inward by looking up the
material at a larger radius (`defects._can_dent`). Here the same alteration is inverted on each ray
of the cell frame, so the truth is what the renderer drew, not a formula beside it. Values are
measured as `model_core.metrology.can` measures them: radially from the cell's centre, angles in
degrees from the image's column axis towards its row axis, in [0, 360).
"""

from __future__ import annotations

import math

import numpy as np

from producers.simulator.defects import alteration
from producers.simulator.geometry import Array, CellCoordinates
from producers.simulator.spec import SliceSpec

_RAYS = 4096
_BISECTIONS = 40


def can_truth(spec: SliceSpec, pixel_mm: float) -> dict[str, float]:
    """The true `can.*` values of `spec`'s slice at `pixel_mm` per pixel (mm, a ratio, degrees).
    `can.max_dent_mm` is 0 without a can dent; `can.max_dent_angle_deg` is there only with one."""
    cell = spec.cell
    theta = np.arange(_RAYS) * (2 * math.pi / _RAYS) - math.pi
    outer = _boundary(spec, theta, cell.radius)
    inner = _boundary(spec, theta, cell.radius - cell.can_thickness)

    phi = np.arange(_RAYS) * (2 * math.pi / _RAYS)
    outer_image, inner_image = _image_radius(spec, theta, outer, phi), _image_radius(spec, theta, inner, phi)
    wall = outer_image - inner_image
    major, minor = cell.radius * (1 + cell.ellipticity), cell.radius * (1 - cell.ellipticity)
    along, across = np.cos(phi - cell.rotation), np.sin(phi - cell.rotation)
    ellipse = major * minor / np.hypot(minor * along, major * across)
    inward = ellipse - outer_image

    truth = {
        "can.outer_diameter_mm": _area_diameter(outer_image) * pixel_mm,
        "can.inner_diameter_mm": _area_diameter(inner_image) * pixel_mm,
        "can.wall_mean_mm": float(wall.mean()) * pixel_mm,
        "can.wall_min_mm": float(wall.min()) * pixel_mm,
        "can.wall_max_mm": float(wall.max()) * pixel_mm,
        "can.wall_3sigma_mm": 3 * float(wall.std()) * pixel_mm,
        "can.eccentricity": math.sqrt(1 - (minor / major) ** 2),
        "can.max_dent_mm": 0.0,
    }
    if spec.defect is not None and spec.defect.type == "can_dent":
        deepest = int(np.argmax(inward))
        truth["can.max_dent_mm"] = float(inward[deepest]) * pixel_mm
        truth["can.max_dent_angle_deg"] = math.degrees(float(phi[deepest])) % 360.0
    return truth


def _boundary(spec: SliceSpec, theta: Array, target: float) -> Array:
    """The cell-frame radius on each ray `theta` at which the renderer looks up `target` (the
    radius of a wall's edge): `target` itself unless a can dent warps the lookup."""
    defect = spec.defect
    if defect is None or defect.type != "can_dent":
        return np.full(theta.shape, target, dtype=np.float64)
    # the warped lookup radius r + depth * inside(r) * outside(r) grows with r: bisect
    lo = np.full(theta.shape, 0.0)
    hi = np.full(theta.shape, target)
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        below = _lookup(spec, mid, theta) < target
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return np.asarray((lo + hi) / 2, dtype=np.float64)


def _lookup(spec: SliceSpec, r: Array, theta: Array) -> Array:
    coords = CellCoordinates(
        x=np.asarray(r * np.cos(theta), dtype=np.float32),
        y=np.asarray(r * np.sin(theta), dtype=np.float32),
        r=np.asarray(r, dtype=np.float32),
        theta=np.asarray(theta, dtype=np.float32),
    )
    assert spec.defect is not None
    change = alteration(spec.cell, coords, spec.defect, spec.size)
    assert change.radius is not None
    # in float64 from here: the float32 of the renderer limits the bisection to ~1e-5 px, ample
    return np.asarray(change.radius, dtype=np.float64)


def _image_radius(spec: SliceSpec, theta: Array, radius: Array, phi: Array) -> Array:
    """A cell-frame curve r(theta) in the image, as the distance from the cell's centre at the
    image angles `phi` (the inverse of `geometry.cell_coordinates`)."""
    cell = spec.cell
    x, y = radius * np.cos(theta) * (1 + cell.ellipticity), radius * np.sin(theta) * (1 - cell.ellipticity)
    cos_r, sin_r = math.cos(cell.rotation), math.sin(cell.rotation)
    dx, dy = x * cos_r - y * sin_r, x * sin_r + y * cos_r
    angle = np.arctan2(dy, dx) % (2 * math.pi)
    order = np.argsort(angle)
    return np.asarray(np.interp(phi, angle[order], np.hypot(dx, dy)[order], period=2 * math.pi))


def _area_diameter(radius: Array) -> float:
    area = 0.5 * float(np.sum(radius**2)) * (2 * math.pi / radius.size)
    return 2 * math.sqrt(area / math.pi)
