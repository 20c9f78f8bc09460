"""The can wall's edges in one axial slice, to a fraction of a pixel, along rays from its centre.

On each ray the outermost bright run is the wall, and an edge is where the profile crosses halfway
between the wall's peak and the level on that side (air outside, the roll inside); a blurred
two-step model fitted to the rays' mean profile corrects the crossings of a wall not much thicker
than the blur, or of a wall whose top the scanner clipped (its half level is then too low). The
grey scale (robust unit range, brightest class) comes from a subsample.
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

FloatArray = npt.NDArray[np.floating[Any]]

_HISTOGRAM_PIXELS = 16384  # the robust scale and the classes from about this many pixels
_RADIAL_STEP = 0.25  # px between samples along a ray
_RADIAL_REACH = 0.12  # the rays span this fraction of the radius (and 8 px) either side of it: dents, ellipticity
_MAX_RAYS = 1024
_SCOUT_STRIDE = 4  # samples of the fine step per sample of the scout's (a pixel)
_SCOUT_SPARE_PX = 1.0
_BIAS_RAYS = 256  # the blur fit's mean profile needs no more
_SATURATED_SHARE = 0.002  # of the pixels at the top value: the scanner clipped
_FIT_ITERATIONS = 60
_FIT_TOLERANCE = 1e-10  # relative drop of the blur fit's squared residual at which it has converged
_PIXEL_BIN = 0.1  # px: the clipped wall's mean profile from its pixels, in bins this fine
_CLIPPED_REACH_PX = 2.0  # the clipped fit's levels this far beyond the crossings (or 3/4 of the wall):
# farther in, the roll's own structure (a gap before its first layer) is no level of the step model


@dataclass(frozen=True)
class Edges:
    """The wall's edges on each ray, and whether the can leaves the image (then no edges)."""

    angles: FloatArray  # radians, uniform around the centre
    outer: FloatArray  # px from the centre, NaN where the ray has no clean edge
    inner: FloatArray
    touches_border: bool


class GreyScale(NamedTuple):
    """The robust unit scale of a slice (unit = (raw - lo) / span), the threshold of its brightest
    class on that scale, and the level at which the scanner saturated (infinite when it did not)."""

    lo: float
    span: float
    threshold: float
    clip: float


def unit_scale(image: np.ndarray) -> GreyScale:
    """The slice's `GreyScale`, from a subsample of about `_HISTOGRAM_PIXELS` pixels: the percentiles
    and the classes' histogram need no more, and a full-image pass costs more than the rest."""
    step = max(1, math.isqrt(image.size // _HISTOGRAM_PIXELS))
    sample = np.asarray(image[::step, ::step], dtype=np.float32).ravel()
    lo, hi = percentiles(sample, ROBUST_PERCENTILES)
    if hi <= lo:
        return GreyScale(lo, 1.0, math.inf, math.inf)
    top = float(sample.max())
    saturated = bool(np.count_nonzero(sample == top) > _SATURATED_SHARE * sample.size)
    unit = np.clip(sample * (1 / (hi - lo)) - lo / (hi - lo), 0.0, 1.0)
    try:
        thresholds = class_thresholds(unit, 3)
    except ValueError:  # two grey levels (a mask): air and can
        thresholds = class_thresholds(unit, 2)
        saturated = False
    return GreyScale(lo, hi - lo, float(thresholds[-1]), (top - lo) / (hi - lo) if saturated else math.inf)


def percentiles(values: FloatArray, percents: Sequence[float]) -> tuple[float, ...]:
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


def ray_edges(image: np.ndarray, scale: GreyScale, centre: tuple[float, float], radius0: float) -> Edges:
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
        return Edges(angles, np.full(count, np.nan), np.full(count, np.nan), touches_border=True)

    width = int(np.median((last - first + 1)[has_run])) if has_run.any() else 1
    gap, span = max(int(2 / _RADIAL_STEP), (3 * width) // 4), max(int(3 / _RADIAL_STEP), width)
    in_run = (index >= first[:, None]) & (index <= last[:, None])
    peak_at = np.argmax(np.where(in_run, profile, -np.inf), axis=1)
    peak = profile[rays, peak_at]
    window = np.arange(span)[None, :]
    # a ray whose air lies beyond the image has no level there: unclean
    level_out = row_nanmedian(profile[rays[:, None], np.clip(last[:, None] + gap + window, 0, radii.size - 1)])
    # inside the wall the image goes on (its centre is in it): no NaN, and the same median as numpy's
    level_in = row_nanmedian(profile[rays[:, None], np.clip(first[:, None] - gap - window, 0, radii.size - 1)])
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
        if math.isfinite(clip):
            shift_out, shift_in = _clipped_bias(
                raw, scale, centre, angles[some], radii, outer[some], inner[some], margin
            )
        else:
            shift_out, shift_in = _blur_bias(profile[some], radii, outer[some], inner[some], margin)
        outer, inner = outer + shift_out, inner + shift_in
    return Edges(angles, np.where(clean, outer, np.nan), np.where(clean, inner, np.nan), touches_border=False)


def _profiles(
    raw: npt.NDArray[np.float32], scale: GreyScale, centre: tuple[float, float], count: int, radii: FloatArray
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


def row_nanmedian(values: FloatArray) -> FloatArray:
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
    profile: FloatArray, radii: FloatArray, outer: FloatArray, inner: FloatArray, margin: float
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
    return _fitted_shifts(offsets[usable], mean[usable], half_in, half_out, margin, math.inf)


def _clipped_bias(
    raw: npt.NDArray[np.float32],
    scale: GreyScale,
    centre: tuple[float, float],
    angles: FloatArray,
    radii: FloatArray,
    outer: FloatArray,
    inner: FloatArray,
    margin: float,
) -> tuple[float, float]:
    """`_blur_bias` for a wall clipped at `scale.clip`: the step model fitted clipped too, to the
    pixels along the rays at `angles`, binned by their exact distance from the wall's middle.

    Interpolated profiles mix the clipped pixels into their unclipped neighbours, so that no sample
    near the edge is min(clip, model) of its own position; a pixel is. Closer levels than the
    plain fit's: the clipped model's level, edges and blur trade off against each other, and the
    roll's structure farther in pulls them."""
    middle = (outer + inner) / 2
    half_out, half_in = float(np.mean(outer - middle)), float(np.mean(middle - inner))
    margin = min(margin, max(_CLIPPED_REACH_PX, 0.75 * (half_in + half_out)))
    # every second sample still visits each pixel a ray crosses
    radii = radii[(radii >= inner.min() - margin - 1) & (radii <= outer.max() + margin + 1)][::2]
    rows = np.rint(centre[0] + np.sin(angles)[:, None] * radii[None, :]).astype(np.intp)
    cols = np.rint(centre[1] + np.cos(angles)[:, None] * radii[None, :]).astype(np.intp)
    offset = np.hypot(rows - centre[0], cols - centre[1]) - middle[:, None]
    near = (offset >= -half_in - margin) & (offset < half_out + margin)
    near &= (rows >= 0) & (rows < raw.shape[0]) & (cols >= 0) & (cols < raw.shape[1])
    values = (raw[rows[near], cols[near]] - np.float32(scale.lo)) * np.float32(1 / scale.span)
    bins = ((offset[near] + half_in + margin) / _PIXEL_BIN).astype(np.intp)
    count = np.bincount(bins, minlength=math.ceil((half_in + half_out + 2 * margin) / _PIXEL_BIN))
    usable = count > 0
    if usable.sum() < 8:
        return 0.0, 0.0
    total = np.bincount(bins, weights=values, minlength=count.size)
    centres = (np.arange(count.size) + 0.5) * _PIXEL_BIN - half_in - margin
    return _fitted_shifts(centres[usable], total[usable] / count[usable], half_in, half_out, margin, scale.clip)


def _fitted_shifts(
    u: FloatArray, p: FloatArray, half_in: float, half_out: float, margin: float, clip: float
) -> tuple[float, float]:
    """The edge shifts from the two-step model fitted (clipped at `clip`) to the mean profile `p` at
    offsets `u` from the walls' middles; none when the fit does not converge to a plausible wall."""
    start = [p[0], float(p.max()) * (1.2 if math.isfinite(clip) else 1.0), p[-1], -half_in, half_out, 0.5]
    x, converged = two_step_fit(u, p, np.array(start, dtype=np.float64), clip)
    if not converged:
        return 0.0, 0.0
    _, _, _, edge_in, edge_out, sigma = x
    shift_out, shift_in = edge_out - half_out, edge_in + half_in
    plausible = edge_in < 0 < edge_out and 0 < abs(sigma) < margin
    if not plausible or max(abs(shift_out), abs(shift_in)) > 0.5 * (half_in + half_out):
        return 0.0, 0.0
    return float(shift_out), float(shift_in)


def two_step_fit(u: FloatArray, p: FloatArray, x: FloatArray, clip: float) -> tuple[FloatArray, bool]:
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
