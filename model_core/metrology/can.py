"""The can of a cylindrical cell in one axial slice: diameters, wall thickness, a robust ellipse and
the dents against it, and the same over a volume's slices.

The can is the brightest class (`segmentation`) forming a closed ring with little bright outside it.
Its edges are found to a fraction of a pixel along rays from the ring's centre: on each ray the
outermost bright run is the wall, and an edge is where the profile crosses halfway between the
wall's peak and the level on that side (air outside, the roll inside). The ellipse is an algebraic
fit to the outer edge with the outliers (dents, bulges) trimmed away.

Angles are in degrees from the image's column axis towards its row axis (clockwise on screen),
in [0, 360).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from scipy.optimize import least_squares
from scipy.special import ndtr

from model_core.metrology.segmentation import ROBUST_PERCENTILES, class_thresholds
from schemas.measurements import AlongZ, Measurement, MeasurementName, Unit

FloatArray = npt.NDArray[np.floating[Any]]

CAN_NAMES: tuple[MeasurementName, ...] = (
    "can.outer_diameter_mm",
    "can.inner_diameter_mm",
    "can.wall_mean_mm",
    "can.wall_min_mm",
    "can.wall_max_mm",
    "can.wall_3sigma_mm",
    "can.eccentricity",
    "can.max_dent_mm",
    "can.max_dent_angle_deg",
)
_UNITS: dict[MeasurementName, Unit] = {"can.eccentricity": "ratio", "can.max_dent_angle_deg": "deg"}

_SUBSAMPLE_ABOVE = 300  # px: a histogram of every second pixel is as good and four times cheaper
_MIN_HOLE_RADIUS = 6.0  # px of the (subsampled) mask: a smaller enclosed region is no cell
_MIN_ROUNDNESS = 0.6  # the can's area over the area of the circle around its bounding box
_MIN_SOLIDITY = 0.8  # a cut can's inside is convex, the gaps between a roll's layers are not
_MAX_BRIGHT_OUTSIDE = 0.1  # share of the bright pixels allowed outside the can (tabs, artefacts)
_RADIAL_STEP = 0.25  # px between samples along a ray
_RADIAL_REACH = 0.12  # the rays span this fraction of the radius (and 8 px) either side of it: dents, ellipticity
_MAX_RAYS = 1024
_BIAS_RAYS = 256  # the blur fit's mean profile needs no more
_SATURATED_SHARE = 0.002  # of the pixels at the top value: the scanner clipped
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


@dataclass(frozen=True)
class _Edges:
    angles: FloatArray  # radians, uniform around the centre
    outer: FloatArray  # px from the centre, NaN where the ray has no clean edge
    inner: FloatArray
    touches_border: bool


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
    values, threshold, clip = _unit_values(image)
    step = 2 if max(values.shape) > _SUBSAMPLE_ABOVE else 1
    coarse = values[::step, ::step] > threshold
    hole, reason = _can_interior(coarse)
    if hole is None:
        return _missing(length_unit, reason)
    hole = (hole[0] * step, hole[1] * step)
    edges = _ray_edges(values, threshold, clip, hole, _rough_radius(coarse, hole, step))
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


def _unit_values(image: np.ndarray) -> tuple[npt.NDArray[np.float32], float, float]:
    """The slice on the robust unit scale, not clipped (clipping would flatten the wall's peak), the
    threshold of its brightest class on that scale, and the level at which the scanner saturated
    (infinite when it did not)."""
    values = np.asarray(image, dtype=np.float32)
    step = 2 if max(values.shape) > _SUBSAMPLE_ABOVE else 1
    sample = values[::step, ::step]
    lo, hi = (float(v) for v in np.percentile(sample, ROBUST_PERCENTILES))
    if hi <= lo:
        return np.zeros_like(values), 1.0, math.inf
    top = float(sample.max())
    saturated = bool(np.count_nonzero(sample == top) > _SATURATED_SHARE * sample.size)
    values = (values - lo) / (hi - lo)
    unit = np.clip(sample * (1 / (hi - lo)) - lo / (hi - lo), 0.0, 1.0)
    try:
        thresholds = class_thresholds(unit, 3)
    except ValueError:  # two grey levels (a mask): air and can
        thresholds = class_thresholds(unit, 2)
        saturated = False
    return values, float(thresholds[-1]), (top - lo) / (hi - lo) if saturated else math.inf


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


def _ray_edges(
    values: npt.NDArray[np.float32], threshold: float, clip: float, centre: tuple[float, float], radius0: float
) -> _Edges:
    """Sub-pixel outer and inner wall radii along rays from `centre`, the can's outer radius being
    about `radius0` (see the module's docstring); `clip` is where the scanner saturated."""
    count = max(360, min(_MAX_RAYS, 4 * math.ceil(2 * math.pi * radius0 / 4)))
    angles = np.arange(count) * (2 * math.pi / count)
    reach = _RADIAL_REACH * radius0 + 8
    radii = np.arange(max(1.0, radius0 - reach), radius0 + reach, _RADIAL_STEP)
    row0, col0 = centre
    map_x = (col0 + np.cos(angles)[:, None] * radii[None, :]).astype(np.float32)
    map_y = (row0 + np.sin(angles)[:, None] * radii[None, :]).astype(np.float32)
    profile: FloatArray = np.asarray(
        cv2.remap(values, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan),
        dtype=np.float32,
    )
    rays, index = np.arange(count), np.arange(radii.size)[None, :]
    above = profile > threshold
    has_run = above.any(axis=1)
    last = radii.size - 1 - np.argmax(above[:, ::-1], axis=1)  # the wall's outermost bright sample
    below = ~above & (index < last[:, None])
    first = np.where(below.any(axis=1), radii.size - 1 - np.argmax(below[:, ::-1], axis=1) + 1, 0)
    # the wall and the two pixels beyond it must lie in the image on every ray
    typical_last = int(np.median(last[has_run])) if has_run.any() else radii.size - 1
    needed = np.where(has_run, last, typical_last) + int(2 / _RADIAL_STEP)
    if np.isnan(profile[index <= needed[:, None]]).any():
        return _Edges(angles, np.full(count, np.nan), np.full(count, np.nan), touches_border=True)

    width = int(np.median((last - first + 1)[has_run])) if has_run.any() else 1
    gap, span = max(int(2 / _RADIAL_STEP), (3 * width) // 4), max(int(3 / _RADIAL_STEP), width)
    in_run = (index >= first[:, None]) & (index <= last[:, None])
    peak_at = np.argmax(np.where(in_run, profile, -np.inf), axis=1)
    peak = profile[rays, peak_at]
    window = np.arange(span)[None, :]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a ray whose air lies beyond the image: unclean
        level_out = np.nanmedian(profile[rays[:, None], np.clip(last[:, None] + gap + window, 0, radii.size - 1)], 1)
    level_in = np.median(profile[rays[:, None], np.clip(first[:, None] - gap - window, 0, radii.size - 1)], axis=1)
    outer, found_out = _crossing(profile, radii, peak_at, (peak + level_out) / 2, outward=True)
    inner, found_in = _crossing(profile, radii, peak_at, (peak + level_in) / 2, outward=False)

    contrast = peak - np.maximum(level_in, level_out)
    clean = has_run & found_out & found_in & np.isfinite(contrast)
    if clean.any():
        clean &= contrast > 0.3 * np.median(contrast[clean])
    if clean.any():
        thickness = outer - inner
        typical = np.median(thickness[clean])
        spread = 1.4826 * np.median(np.abs(thickness[clean] - typical))
        clean &= np.abs(thickness - typical) <= max(0.35 * typical, 4 * spread)
    if clean.sum() >= 8:
        some = np.flatnonzero(clean)[:: max(1, int(clean.sum()) // _BIAS_RAYS)]
        margin = (gap + span) * _RADIAL_STEP
        shift_out, shift_in = _blur_bias(profile[some], radii, outer[some], inner[some], margin, clip)
        outer, inner = outer + shift_out, inner + shift_in
    return _Edges(angles, np.where(clean, outer, np.nan), np.where(clean, inner, np.nan), touches_border=False)


def _crossing(
    profile: FloatArray, radii: FloatArray, start: npt.NDArray[np.intp], level: FloatArray, *, outward: bool
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Per ray, the radius where the profile first falls below `level` going out (or in) from
    `start`, interpolated between samples, and whether it does."""
    rays, index = np.arange(profile.shape[0]), np.arange(radii.size)[None, :]
    beyond = index > start[:, None] if outward else index < start[:, None]
    cross = (profile < level[:, None]) & beyond
    found: npt.NDArray[np.bool_] = np.asarray(cross.any(axis=1))
    if outward:
        j = np.clip(np.argmax(cross, axis=1), 1, radii.size - 1)
        edge = radii[j - 1] + _RADIAL_STEP * _fraction(profile[rays, j - 1], profile[rays, j], level)
        return np.asarray(edge, dtype=np.float64), found
    j = np.clip(radii.size - 1 - np.argmax(cross[:, ::-1], axis=1), 0, radii.size - 2)
    edge = radii[j + 1] - _RADIAL_STEP * _fraction(profile[rays, j + 1], profile[rays, j], level)
    return np.asarray(edge, dtype=np.float64), found


def _blur_bias(
    profile: FloatArray, radii: FloatArray, outer: FloatArray, inner: FloatArray, margin: float, clip: float
) -> tuple[float, float]:
    """How far the true wall edges lie from the half-level crossings (outer, inner shift, px).

    A wall not much thicker than the blur never reaches its own level: halfway to its lower peak
    lies outside the wall. A blurred two-step model (roll | wall | air) fitted to the mean profile
    of the rays, aligned on their walls' middles, gives the edges; its offsets from the crossings'
    mean apply to every ray. No shift when the fit does not converge to a plausible wall."""
    middle = (outer + inner) / 2
    half_out, half_in = float(np.mean(outer - middle)), float(np.mean(middle - inner))
    offsets = np.arange(-half_in - margin, half_out + margin, _RADIAL_STEP)
    positions = (middle[:, None] + offsets[None, :] - radii[0]) / _RADIAL_STEP
    low = np.clip(np.floor(positions).astype(np.intp), 0, radii.size - 2)
    weight = np.clip(positions - low, 0, 1)
    rows = np.arange(profile.shape[0])[:, None]
    aligned = profile[rows, low] * (1 - weight) + profile[rows, low + 1] * weight
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(aligned, axis=0)
    usable = np.isfinite(mean)
    if usable.sum() < 8:
        return 0.0, 0.0
    u, p = offsets[usable], mean[usable]
    start = [p[0], float(p.max()) * (1.2 if math.isfinite(clip) else 1.0), p[-1], -half_in, half_out, 0.5]

    def residual(x: FloatArray) -> FloatArray:
        b_in, level, b_out, edge_in, edge_out, sigma = x
        model = b_in + (level - b_in) * ndtr((u - edge_in) / sigma) + (b_out - level) * ndtr((u - edge_out) / sigma)
        return np.asarray(np.minimum(model, clip) - p)

    try:
        fit = least_squares(residual, start, method="lm", max_nfev=200)
    except (ValueError, np.linalg.LinAlgError):
        return 0.0, 0.0
    _, _, _, edge_in, edge_out, sigma = fit.x
    shift_out, shift_in = edge_out - half_out, edge_in + half_in
    plausible = fit.success and edge_in < 0 < edge_out and 0 < abs(sigma) < margin
    if not plausible or max(abs(shift_out), abs(shift_in)) > 0.5 * (half_in + half_out):
        return 0.0, 0.0
    return float(shift_out), float(shift_in)


def _fraction(before: FloatArray, after: FloatArray, level: FloatArray) -> FloatArray:
    """Where between two samples the profile crosses `level` (0 at `before`, 1 at `after`)."""
    step = before - after
    return np.asarray(np.clip(np.where(step != 0, (before - level) / np.where(step != 0, step, 1), 0.5), 0, 1))


def _rough_radius(bright: npt.NDArray[np.bool_], centre: tuple[float, float], step: int) -> float:
    """The radius of the outermost bright pixels around `centre` (the can, to a pixel or two), from
    the mask `bright` of every `step`-th pixel."""
    rows, cols = np.nonzero(bright)
    distance = np.hypot(rows * step - centre[0], cols * step - centre[1])
    return float(np.percentile(distance, 90))


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
