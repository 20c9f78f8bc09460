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
from functools import lru_cache
from typing import Any, NamedTuple

import cv2
import numpy as np
import numpy.typing as npt
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

_SUBSAMPLE_ABOVE = 300  # px: the can's mask from every second pixel still closes its ring
_HISTOGRAM_PIXELS = 16384  # the robust scale and the classes from about this many pixels
_MIN_HOLE_RADIUS = 6.0  # px of the (subsampled) mask: a smaller enclosed region is no cell
_MIN_ROUNDNESS = 0.6  # the can's area over the area of the circle around its bounding box
_MIN_SOLIDITY = 0.8  # a cut can's inside is convex, the gaps between a roll's layers are not
_MAX_BRIGHT_OUTSIDE = 0.1  # share of the bright pixels allowed outside the can (tabs, artefacts)
_RADIAL_STEP = 0.25  # px between samples along a ray
_RADIAL_REACH = 0.12  # the rays span this fraction of the radius (and 8 px) either side of it: dents, ellipticity
_MAX_RAYS = 1024
_SCOUT_STRIDE = 4  # samples of the fine step per sample of the scout's (a pixel)
_SCOUT_SPARE_PX = 1.0
_BIAS_RAYS = 256  # the blur fit's mean profile needs no more
_SATURATED_SHARE = 0.002  # of the pixels at the top value: the scanner clipped
_MIN_CLEAN_SHARE = 0.5  # below this share of clean rays the edge is not measured
_FIT_ITERATIONS = 60
_FIT_TOLERANCE = 1e-10  # relative drop of the blur fit's squared residual at which it has converged
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
    grey = _unit_scale(image)
    step = 2 if max(image.shape) > _SUBSAMPLE_ABOVE else 1
    coarse = image[::step, ::step] > grey.lo + grey.threshold * grey.span
    hole, reason = _can_interior(coarse)
    if hole is None:
        return _missing(length_unit, reason)
    hole = (hole[0] * step, hole[1] * step)
    edges = _ray_edges(image, grey, hole, _rough_radius(coarse, hole, step))
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


class _Scale(NamedTuple):
    """The robust unit scale of a slice (unit = (raw - lo) / span), the threshold of its brightest
    class on that scale, and the level at which the scanner saturated (infinite when it did not)."""

    lo: float
    span: float
    threshold: float
    clip: float


def _unit_scale(image: np.ndarray) -> _Scale:
    """The slice's `_Scale`, from a subsample of about `_HISTOGRAM_PIXELS` pixels: the percentiles
    and the classes' histogram need no more, and a full-image pass costs more than the rest."""
    step = max(1, math.isqrt(image.size // _HISTOGRAM_PIXELS))
    sample = np.asarray(image[::step, ::step], dtype=np.float32).ravel()
    lo, hi = _percentiles(sample, ROBUST_PERCENTILES)
    if hi <= lo:
        return _Scale(lo, 1.0, math.inf, math.inf)
    top = float(sample.max())
    saturated = bool(np.count_nonzero(sample == top) > _SATURATED_SHARE * sample.size)
    unit = np.clip(sample * (1 / (hi - lo)) - lo / (hi - lo), 0.0, 1.0)
    try:
        thresholds = class_thresholds(unit, 3)
    except ValueError:  # two grey levels (a mask): air and can
        thresholds = class_thresholds(unit, 2)
        saturated = False
    return _Scale(lo, hi - lo, float(thresholds[-1]), (top - lo) / (hi - lo) if saturated else math.inf)


def _percentiles(values: npt.NDArray[np.float32], percents: Sequence[float]) -> tuple[float, ...]:
    """`np.percentile(values, percents)` (linear) by a partial sort: a full one is the slow part."""
    positions = [p / 100 * (values.size - 1) for p in percents]
    below = [math.floor(p) for p in positions]
    kth = sorted({min(k + d, values.size - 1) for k in below for d in (0, 1)})
    part = np.partition(values, kth)
    above = [min(k + 1, values.size - 1) for k in below]
    return tuple(
        float(part[k]) + (p - k) * (float(part[a]) - float(part[k]))
        for p, k, a in zip(positions, below, above, strict=True)
    )


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


def _ray_edges(image: np.ndarray, scale: _Scale, centre: tuple[float, float], radius0: float) -> _Edges:
    """Sub-pixel outer and inner wall radii along rays from `centre`, the can's outer radius being
    about `radius0` (see the module's docstring), the profiles on the unit `scale`."""
    threshold, clip = scale.threshold, scale.clip
    count = max(360, min(_MAX_RAYS, 4 * math.ceil(2 * math.pi * radius0 / 4)))
    angles = np.arange(count) * (2 * math.pi / count)
    reach = _RADIAL_REACH * radius0 + 8
    radii = np.arange(max(1.0, radius0 - reach), radius0 + reach, _RADIAL_STEP)
    # the raw values interpolated, then rescaled: the same (the scale is affine), on far fewer values
    raw = image if image.dtype == np.float32 else image.astype(np.float32)
    # a scout at a pixel's step on every ray bounds where the walls (and their levels) lie: the fine
    # profiles need only that span, identical there to the full reach's
    radii = radii[_wall_window(_profiles(raw, scale, centre, count, radii[::_SCOUT_STRIDE]), threshold)]
    profile = _profiles(raw, scale, centre, count, radii)
    rays, index = np.arange(count), np.arange(radii.size)[None, :]
    above = profile > threshold
    has_run = above.any(axis=1)
    first, last = _outermost_run(above)
    # the wall and the two pixels beyond it must lie in the image on every ray
    typical_last = int(np.median(last[has_run])) if has_run.any() else radii.size - 1
    needed = np.where(has_run, last, typical_last) + int(2 / _RADIAL_STEP)
    outside = np.isnan(profile)
    first_outside = np.where(outside.any(axis=1), np.argmax(outside, axis=1), radii.size)
    if (first_outside <= needed).any():
        return _Edges(angles, np.full(count, np.nan), np.full(count, np.nan), touches_border=True)

    width = int(np.median((last - first + 1)[has_run])) if has_run.any() else 1
    gap, span = max(int(2 / _RADIAL_STEP), (3 * width) // 4), max(int(3 / _RADIAL_STEP), width)
    in_run = (index >= first[:, None]) & (index <= last[:, None])
    peak_at = np.argmax(np.where(in_run, profile, -np.inf), axis=1)
    peak = profile[rays, peak_at]
    window = np.arange(span)[None, :]
    # a ray whose air lies beyond the image has no level there: unclean
    level_out = _row_nanmedian(profile[rays[:, None], np.clip(last[:, None] + gap + window, 0, radii.size - 1)])
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


def _profiles(
    raw: npt.NDArray[np.float32], scale: _Scale, centre: tuple[float, float], count: int, radii: FloatArray
) -> FloatArray:
    """The slice on the unit `scale` at `radii` along `count` uniform rays from `centre` (NaN
    outside the image), one row a ray."""
    cos, sin = _directions(count)
    spokes = radii.astype(np.float32)[None, :]
    map_x, map_y = cos * spokes, sin * spokes
    map_x += np.float32(centre[1])
    map_y += np.float32(centre[0])
    profile: FloatArray = np.asarray(
        cv2.remap(raw, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan),
        dtype=np.float32,
    )
    profile -= np.float32(scale.lo)
    profile *= np.float32(1 / scale.span)
    return profile


def _outermost_run(above: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Per ray, the first and last sample of the outermost run of `above` (0 and the end when none)."""
    size = above.shape[1]
    last = size - 1 - np.argmax(above[:, ::-1], axis=1)
    below = ~above & (np.arange(size)[None, :] < last[:, None])
    first = np.where(below.any(axis=1), size - 1 - np.argmax(below[:, ::-1], axis=1) + 1, 0)
    return first, last


def _wall_window(scout: FloatArray, threshold: float) -> slice:
    """The span of the full-step samples (`_SCOUT_STRIDE` per scout sample) that holds every ray's
    outermost wall with its levels' windows and the border check's two pixels, a pixel to spare."""
    above = scout > threshold
    has_run = above.any(axis=1)
    if not has_run.any():
        return slice(None)
    first, last = (_SCOUT_STRIDE * i[has_run] for i in _outermost_run(above))
    width = int(np.median(last - first)) + 2 * _SCOUT_STRIDE
    beyond = max(int(2 / _RADIAL_STEP), (3 * width) // 4) + max(int(3 / _RADIAL_STEP), width)
    spare = int(_SCOUT_SPARE_PX / _RADIAL_STEP) + _SCOUT_STRIDE
    start = max(0, int(first.min()) - beyond - spare)
    return slice(start, int(last.max()) + beyond + spare + int(2 / _RADIAL_STEP) + 1)


@lru_cache(maxsize=8)
def _directions(count: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """The cosines and sines (float32 columns) of `count` uniform ray angles."""
    angles = np.arange(count) * (2 * math.pi / count)
    return np.cos(angles).astype(np.float32)[:, None], np.sin(angles).astype(np.float32)[:, None]


def _row_nanmedian(values: FloatArray) -> FloatArray:
    """`np.nanmedian(values, axis=1)` without its per-row Python loop: sorted, NaNs go last."""
    ordered = np.sort(values, axis=1)
    count = np.count_nonzero(~np.isnan(values), axis=1)
    rows = np.arange(values.shape[0])
    low, high = np.maximum(count - 1, 0) // 2, np.maximum(count, 1) // 2
    median = (ordered[rows, low] + ordered[rows, high]) / 2
    return np.asarray(np.where(count > 0, median, np.nan))


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

    x, converged = _two_step_fit(u, p, np.array(start, dtype=np.float64), clip)
    if not converged:
        return 0.0, 0.0
    _, _, _, edge_in, edge_out, sigma = x
    shift_out, shift_in = edge_out - half_out, edge_in + half_in
    plausible = edge_in < 0 < edge_out and 0 < abs(sigma) < margin
    if not plausible or max(abs(shift_out), abs(shift_in)) > 0.5 * (half_in + half_out):
        return 0.0, 0.0
    return float(shift_out), float(shift_in)


def _two_step_fit(u: FloatArray, p: FloatArray, x: FloatArray, clip: float) -> tuple[FloatArray, bool]:
    """Levenberg-Marquardt on the blurred two-step model (parameters: inner base, wall level, outer
    base, inner and outer edge, blur), clipped at `clip`, from `x`; the parameters and whether they
    converged. The Jacobian in closed form: six parameters need no finite differences."""

    def model(x: FloatArray) -> tuple[FloatArray, FloatArray]:
        b_in, level, b_out, edge_in, edge_out, sigma = x
        z_in, z_out = (u - edge_in) / sigma, (u - edge_out) / sigma
        up, down = ndtr(z_in), ndtr(z_out)
        value = b_in + (level - b_in) * up + (b_out - level) * down
        rise, fall = (level - b_in) * _gauss(z_in) / sigma, (b_out - level) * _gauss(z_out) / sigma
        jacobian = np.stack([1 - up, up - down, down, -rise, -fall, -(rise * z_in + fall * z_out)], axis=1)
        jacobian[value > clip] = 0.0
        return np.minimum(value, clip) - p, jacobian

    residual, jacobian = model(x)
    cost, damping = float(residual @ residual), 1e-3
    for _ in range(_FIT_ITERATIONS):
        normal, gradient = jacobian.T @ jacobian, jacobian.T @ residual
        try:
            step = np.linalg.solve(normal + damping * np.diag(np.diag(normal) + 1e-12), -gradient)
        except np.linalg.LinAlgError:
            return x, False
        trial = x + step
        trial_residual, trial_jacobian = model(trial)
        trial_cost = float(trial_residual @ trial_residual)
        if not math.isfinite(trial_cost) or trial_cost >= cost:
            damping *= 4.0
            if damping > 1e8:  # no step lowers the cost: a minimum
                return x, True
            continue
        done = cost - trial_cost <= _FIT_TOLERANCE * cost or float(np.abs(step).max()) <= 1e-8
        x, residual, jacobian, cost, damping = trial, trial_residual, trial_jacobian, trial_cost, damping / 4.0
        if done:
            return x, True
    return x, False


def _gauss(z: FloatArray) -> FloatArray:
    return np.asarray(np.exp(-0.5 * z * z) * (1 / math.sqrt(2 * math.pi)))


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
