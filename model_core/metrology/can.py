"""The can of a cylindrical cell in one axial slice: diameters, wall thickness, a robust ellipse and
the dents against it, and the same over a volume's slices.

The can is the brightest class (`segmentation`) forming a closed ring with little bright outside it.
Its edges are found to a fraction of a pixel along rays from the ring's centre (`can_edges`). The
ellipse is an algebraic fit to the outer edge with the outliers (dents, bulges) trimmed away.

Angles are in degrees from the image's column axis towards its row axis (clockwise on screen),
in [0, 360).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from model_core.metrology.can_edges import percentiles, ray_edges, unit_scale
from schemas.measurements import AlongZ, Measurement, MeasurementName, Unit, names_of

FloatArray = npt.NDArray[np.floating[Any]]

CAN_NAMES = names_of("can")
_UNITS: dict[MeasurementName, Unit] = {"can.eccentricity": "ratio", "can.max_dent_angle_deg": "deg"}

_SUBSAMPLE_ABOVE = 300  # px: the can's mask from every second pixel still closes its ring
_MIN_HOLE_RADIUS = 6.0  # px of the (subsampled) mask: a smaller enclosed region is no cell
_MIN_ROUNDNESS = 0.6  # the can's area over the area of the circle around its bounding box
_MIN_SOLIDITY = 0.8  # a cut can's inside is convex, the gaps between a roll's layers are not
_MAX_BRIGHT_OUTSIDE = 0.1  # share of the bright pixels allowed outside the can (tabs, artefacts)
_MIN_CLEAN_SHARE = 0.5  # below this share of clean rays the edge is not measured
_TRIM_ROUNDS = 4
_TRIM_SIGMAS = 3.0
_TRIM_FLOOR_PX = 0.25  # residuals this small are edge noise, never outliers
_SMOOTH_DEG = 1.0  # the dent profile's running mean: noise down, a dent's depth kept


@dataclass(frozen=True)
class Dent:
    """The deepest inward dent: depth against the ellipse, where, and its arc length along the
    ellipse over which it is at least half as deep (lengths in the measurement's unit)."""

    depth: float
    angle_deg: float
    arc_length: float


@dataclass(frozen=True)
class CanFit:
    """What the roll and ends measurements need: the can's ellipse (the cell axis in this slice)
    in pixels, and the dent profile in the measurement's unit."""

    centre_row: float
    centre_col: float
    semi_axes: tuple[float, float]  # px, major first
    orientation_deg: float  # of the major axis, [0, 180)
    inner_radius_px: float  # area-equivalent radius of the inner wall
    angles_deg: FloatArray
    inward_depth: FloatArray  # the ellipse's radius minus the outer edge's (positive: a dent)


@dataclass(frozen=True)
class CanResult:
    measurements: dict[MeasurementName, Measurement]
    fit: CanFit | None = None
    deepest_dent: Dent | None = None


@dataclass(frozen=True)
class _Ellipse:
    row: float
    col: float
    major: float
    minor: float
    angle: float  # radians, of the major axis from the column axis towards the row axis

    def radius(self, angle: FloatArray) -> FloatArray:
        """Distance from the centre to the ellipse in the direction `angle` (radians)."""
        along, across = np.cos(angle - self.angle), np.sin(angle - self.angle)
        return np.asarray(self.major * self.minor / np.hypot(self.minor * along, self.major * across))


def measure_can(image: np.ndarray, pixel_mm: float | None) -> CanResult:
    """The `can.*` measurements of one axial slice (2-D, any dtype), in mm when `pixel_mm` is given
    and px otherwise.

    Eccentricity is sqrt(1 - b^2 / a^2) of the fitted ellipse's semi-axes a >= b (0 for a circle),
    as in the UCL battery_xct_workflows notebooks. A confidence is the share of the rays around the
    can on which both walls gave a clean edge. Every value is null with a reason when no closed can
    is in the slice or the can touches the image border."""
    if image.ndim != 2:
        raise ValueError(f"an axial slice is 2-D, got shape {image.shape}")
    length_unit: Unit = "px" if pixel_mm is None else "mm"
    scale = 1.0 if pixel_mm is None else float(pixel_mm)
    grey = unit_scale(image)
    step = 2 if max(image.shape) > _SUBSAMPLE_ABOVE else 1
    coarse = image[::step, ::step] > grey.lo + grey.threshold * grey.span
    hole, reason = _can_interior(coarse)
    if hole is None:
        return _missing(length_unit, reason)
    hole = (hole[0] * step, hole[1] * step)
    edges = ray_edges(image, grey, hole, _rough_radius(coarse, hole, step))
    if edges.touches_border:
        return _missing(length_unit, "the can leaves the field of view")
    clean = np.isfinite(edges.outer) & np.isfinite(edges.inner)
    confidence = float(clean.mean())
    if confidence < _MIN_CLEAN_SHARE:
        return _missing(length_unit, f"a clean can edge on only {confidence:.0%} of the circumference")
    centre_row, centre_col = hole
    ellipse, _ = _robust_ellipse(edges.angles[clean], edges.outer[clean], centre_row, centre_col)

    outer = _fill_circular(edges.angles, edges.outer, clean)
    inner = _fill_circular(edges.angles, edges.inner, clean)
    wall = (edges.outer - edges.inner)[clean]
    profile_angles, inward = _dent_profile(edges.angles[clean], outer[clean], centre_row, centre_col, ellipse)
    dent = _deepest(profile_angles, inward, ellipse)

    def length(value: float) -> Measurement:
        return Measurement(value=value * scale, unit=length_unit, confidence=confidence)

    eccentricity = math.sqrt(max(0.0, 1.0 - (ellipse.minor / ellipse.major) ** 2))
    measurements: dict[MeasurementName, Measurement] = {
        "can.outer_diameter_mm": length(_area_diameter(edges.angles, outer)),
        "can.inner_diameter_mm": length(_area_diameter(edges.angles, inner)),
        "can.wall_mean_mm": length(float(wall.mean())),
        "can.wall_min_mm": length(float(wall.min())),
        "can.wall_max_mm": length(float(wall.max())),
        "can.wall_3sigma_mm": length(3.0 * float(wall.std())),
        "can.eccentricity": Measurement(value=eccentricity, unit="ratio", confidence=confidence),
        "can.max_dent_mm": Measurement(
            value=dent.depth * scale, unit=length_unit, confidence=confidence, angle_deg=dent.angle_deg
        ),
        "can.max_dent_angle_deg": Measurement(value=dent.angle_deg, unit="deg", confidence=confidence),
    }
    fit = CanFit(
        centre_row=ellipse.row,
        centre_col=ellipse.col,
        semi_axes=(ellipse.major, ellipse.minor),
        orientation_deg=math.degrees(ellipse.angle) % 180.0,
        inner_radius_px=_area_diameter(edges.angles, inner) / 2,
        angles_deg=np.degrees(profile_angles),
        inward_depth=inward * scale,
    )
    deepest = Dent(depth=dent.depth * scale, angle_deg=dent.angle_deg, arc_length=dent.arc_length * scale)
    return CanResult(measurements=measurements, fit=fit, deepest_dent=deepest)


def can_along_z(results: Sequence[CanResult]) -> dict[MeasurementName, Measurement]:
    """The `can.*` measurements of a volume from its slices' (in order): each value is the median
    over the slices where it was measured, with their extremes in `along_z`; the dent's angle is the
    one of the slice with the deepest dent, since a median of angles means nothing. Confidence is
    the mean of the measured slices'. Null with a reason where no slice measured it."""
    out: dict[MeasurementName, Measurement] = {}
    for name in CAN_NAMES:
        measured = [(i, r.measurements[name]) for i, r in enumerate(results) if r.measurements[name].value is not None]
        if not measured:
            reasons = {r.measurements[name].reason for r in results} - {None}
            why = "; ".join(sorted(str(r) for r in reasons)) or "no slices"
            out[name] = Measurement.missing(_unit(name, results), f"no slice measured it ({why})"[:500])
            continue
        index = np.array([i for i, _ in measured])
        values = np.array([m.value for _, m in measured], dtype=np.float64)
        confidences = [m.confidence for _, m in measured if m.confidence is not None]
        lo, hi = int(np.argmin(values)), int(np.argmax(values))
        value = float(np.median(values))
        angle = None
        if name == "can.max_dent_mm":
            angle = measured[hi][1].angle_deg
        if name == "can.max_dent_angle_deg":
            depths = [results[i].measurements["can.max_dent_mm"].value or 0.0 for i in index]
            value = float(values[int(np.argmax(depths))])
        out[name] = Measurement(
            value=value,
            unit=measured[0][1].unit,
            confidence=float(np.mean(confidences)) if confidences else None,
            angle_deg=angle,
            along_z=AlongZ(
                min=float(values[lo]), max=float(values[hi]), min_slice=int(index[lo]), max_slice=int(index[hi])
            ),
        )
    return out


def _unit(name: MeasurementName, results: Sequence[CanResult] = (), length_unit: Unit = "px") -> Unit:
    if name in _UNITS:
        return _UNITS[name]
    return results[0].measurements[name].unit if results else length_unit


def _missing(length_unit: Unit, reason: str) -> CanResult:
    return CanResult({name: Measurement.missing(_unit(name, length_unit=length_unit), reason) for name in CAN_NAMES})


def _can_interior(bright: npt.NDArray[np.bool_]) -> tuple[tuple[float, float] | None, str]:
    """The centre (row, col) of the can: the region a closed bright ring encloses, round, away from
    the border and with little bright outside it; or None and why there is no can."""
    closed = cv2.morphologyEx(bright.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    _, labels, stats, _ = cv2.connectedComponentsWithStats(1 - closed, connectivity=4)
    height, width = closed.shape
    left, top, w, h, area = (stats[:, k] for k in range(5))
    touching = (left == 0) | (top == 0) | (left + w == width) | (top + h == height)
    filled = (~touching[labels]).astype(np.uint8)
    count, _, cell_stats, centroids = cv2.connectedComponentsWithStats(filled, connectivity=8)
    if count > 1:
        best = 1 + int(np.argmax(cell_stats[1:, 4]))
        c_left, c_top, c_w, c_h, c_area = (int(v) for v in cell_stats[best])
        col, row = (float(v) for v in centroids[best])
        inside_border = c_left > 0 and c_top > 0 and c_left + c_w < width and c_top + c_h < height
        if _round(c_area, c_w, c_h, _MIN_ROUNDNESS) and _little_outside(bright, row, col, max(c_w, c_h) / 2):
            if not inside_border:
                return None, "the can leaves the field of view"
            return (row, col), ""
    # a ring cut by the border splits the rest of the slice in two: the can's inside touches it too
    regions = np.flatnonzero(touching)
    regions = regions[np.argsort(area[regions])[::-1]]
    if regions.size > 1 and _round(int(area[regions[1]]), int(w[regions[1]]), int(h[regions[1]]), 0.25):
        points = cv2.findNonZero((labels == regions[1]).astype(np.uint8))
        if area[regions[1]] >= _MIN_SOLIDITY * cv2.contourArea(cv2.convexHull(points)):
            return None, "the can leaves the field of view"
    return None, "no closed can in the slice (a crop of the roll, or not a cell)"


def _round(area: int, width: int, height: int, roundness: float) -> bool:
    """Whether a region is big and fills enough of the circle around its bounding box."""
    return area >= np.pi * _MIN_HOLE_RADIUS**2 and area >= roundness * np.pi * (max(width, height) / 2) ** 2


def _little_outside(bright: npt.NDArray[np.bool_], row: float, col: float, radius: float) -> bool:
    """Whether hardly any bright pixels lie beyond `radius` (and a margin) of (row, col)."""
    rows, cols = np.nonzero(bright)
    reach = 1.15 * radius + 3
    outside = np.count_nonzero((rows - row) ** 2 + (cols - col) ** 2 > reach**2)
    return bool(outside <= _MAX_BRIGHT_OUTSIDE * max(rows.size, 1))


def _rough_radius(bright: npt.NDArray[np.bool_], centre: tuple[float, float], step: int) -> float:
    """The radius of the outermost bright pixels around `centre` (the can, to a pixel or two), from
    the mask `bright` of every `step`-th pixel."""
    rows, cols = np.nonzero(bright)
    distance = np.hypot(rows * step - centre[0], cols * step - centre[1])
    return percentiles(distance, (90,))[0]


def _fill_circular(angles: FloatArray, radii: FloatArray, clean: npt.NDArray[np.bool_]) -> FloatArray:
    """`radii` with the rays that had no clean edge interpolated around the circle."""
    return np.asarray(np.interp(angles, angles[clean], radii[clean], period=2 * math.pi))


def _area_diameter(angles: FloatArray, radii: FloatArray) -> float:
    """The diameter of the circle with the area the closed curve r(angle) encloses (uniform angles)."""
    area = 0.5 * float(np.sum(radii**2)) * (2 * math.pi / angles.size)
    return 2 * math.sqrt(area / math.pi)


def _robust_ellipse(
    angles: FloatArray, radii: FloatArray, row0: float, col0: float
) -> tuple[_Ellipse, npt.NDArray[np.bool_]]:
    """The ellipse through the edge points with outliers (dents, bulges) trimmed, and the inliers."""
    rows, cols = row0 + radii * np.sin(angles), col0 + radii * np.cos(angles)
    inliers = np.ones(rows.size, dtype=bool)
    ellipse = _fit_ellipse(rows, cols, inliers, row0, col0, float(np.median(radii)))
    for _ in range(_TRIM_ROUNDS):
        residual = np.hypot(rows - ellipse.row, cols - ellipse.col) - ellipse.radius(
            np.arctan2(rows - ellipse.row, cols - ellipse.col)
        )
        centre = np.median(residual[inliers])
        spread = 1.4826 * np.median(np.abs(residual[inliers] - centre))
        keep = np.abs(residual - centre) <= max(_TRIM_SIGMAS * spread, _TRIM_FLOOR_PX)
        if keep.sum() < 6 or np.array_equal(keep, inliers):
            break
        inliers = keep
        ellipse = _fit_ellipse(rows, cols, inliers, row0, col0, float(np.median(radii)))
    return ellipse, inliers


def _fit_ellipse(
    rows: FloatArray, cols: FloatArray, use: npt.NDArray[np.bool_], row0: float, col0: float, scale: float
) -> _Ellipse:
    """Direct least-squares ellipse (Fitzgibbon, in Halir and Flusser's stable form) on normalised
    coordinates; a circle of radius `scale` when the points describe no ellipse."""
    x, y = (cols[use] - col0) / scale, (rows[use] - row0) / scale
    quadratic = np.stack([x * x, x * y, y * y], axis=1)
    linear = np.stack([x, y, np.ones_like(x)], axis=1)
    s1, s2, s3 = quadratic.T @ quadratic, quadratic.T @ linear, linear.T @ linear
    try:
        t = -np.linalg.solve(s3, s2.T)
        m = s1 + s2 @ t
        m = np.array([m[2] / 2, -m[1], m[0] / 2])
        _, vectors = np.linalg.eig(m)
        vectors = np.real(vectors)
        constraint = 4 * vectors[0] * vectors[2] - vectors[1] ** 2
        a1 = vectors[:, int(np.argmax(constraint))]
        if np.max(constraint) <= 0:
            raise np.linalg.LinAlgError("no ellipse")
        a, b, c = a1
        d, e, f = t @ a1
        centre = np.linalg.solve(np.array([[2 * a, b], [b, 2 * c]]), -np.array([d, e]))
        level = a * centre[0] ** 2 + b * centre[0] * centre[1] + c * centre[1] ** 2 + d * centre[0] + e * centre[1] + f
        form = np.array([[a, b / 2], [b / 2, c]]) / -level
        eigenvalues, eigenvectors = np.linalg.eigh(form)
        if not np.all(eigenvalues > 0):
            raise np.linalg.LinAlgError("not an ellipse")
    except np.linalg.LinAlgError:
        return _Ellipse(row0, col0, scale, scale, 0.0)
    major, minor = 1 / np.sqrt(eigenvalues)  # ascending eigenvalues: the major axis first
    angle = math.atan2(float(eigenvectors[1, 0]), float(eigenvectors[0, 0]))
    return _Ellipse(
        row=row0 + scale * float(centre[1]),
        col=col0 + scale * float(centre[0]),
        major=scale * float(major),
        minor=scale * float(minor),
        angle=angle,
    )


def _dent_profile(
    angles: FloatArray, radii: FloatArray, row0: float, col0: float, ellipse: _Ellipse
) -> tuple[FloatArray, FloatArray]:
    """The inward deviation of the outer edge from the ellipse (px), on uniform angles around the
    ellipse's centre, smoothed over `_SMOOTH_DEG`."""
    rows, cols = row0 + radii * np.sin(angles), col0 + radii * np.cos(angles)
    around = np.arctan2(rows - ellipse.row, cols - ellipse.col) % (2 * math.pi)
    inward = ellipse.radius(around) - np.hypot(rows - ellipse.row, cols - ellipse.col)
    order = np.argsort(around)
    grid = np.arange(angles.size) * (2 * math.pi / angles.size)
    profile = np.interp(grid, around[order], inward[order], period=2 * math.pi)
    half = round(_SMOOTH_DEG / 360 * grid.size / 2)
    if half > 0:
        kernel = np.ones(2 * half + 1) / (2 * half + 1)
        profile = np.convolve(np.concatenate([profile[-half:], profile, profile[:half]]), kernel, mode="valid")
    return grid, np.asarray(profile)


def _deepest(angles: FloatArray, inward: FloatArray, ellipse: _Ellipse) -> Dent:
    """The deepest point of the profile and the arc over which it is at least half as deep (px)."""
    at = int(np.argmax(inward))
    depth = float(inward[at])
    deep = inward >= depth / 2 if depth > 0 else np.zeros(inward.size, dtype=bool)
    deep[at] = True
    step = 2 * math.pi / angles.size
    arc = ellipse.radius(angles) * step
    rolled = np.roll(deep, -at)
    forward = int(np.argmin(rolled)) if not rolled.all() else rolled.size
    backward = int(np.argmin(rolled[::-1])) if not rolled.all() else 0
    span = np.roll(np.arange(angles.size), -at)
    run = np.concatenate([span[:forward], span[span.size - backward :]]) if backward else span[:forward]
    return Dent(depth=depth, angle_deg=math.degrees(float(angles[at])) % 360.0, arc_length=float(arc[run].sum()))
