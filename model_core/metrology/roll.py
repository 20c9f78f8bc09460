"""The jelly roll in one axial slice: its core, its turns, and each turn against an ideal spiral.

The slice is unrolled to polar coordinates (angle x radius) about the roll's centre, where an
Archimedean spiral `r = start + pitch * t` (t: turns along the winding) is a set of parallel lines
one pitch apart. The bright band of each turn (the dense cathode) is band-passed at the pitch and
traced as ridges; one spiral (centre, start, pitch, direction) is fitted robustly to all turns, so
buckled stretches are outliers of the fit and show up as the turn's deviation from it.

Lengths are measured on the ideal spiral's centre line: the core radius is the spiral's radius at
the inner end of the winding, the gap runs from its outer end to the can's inner wall.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import numpy.typing as npt
from scipy import fft

from model_core.metrology.segmentation import ROBUST_PERCENTILES
from schemas.measurements import LayerDeviation, Measurement, MeasurementName, Unit

FloatArray = npt.NDArray[np.float32]

COARSE_ANGLES = 180  # for locating the spiral: five angles per sector
ARC_PX = 2.0  # px of arc between the tracing's angles at the largest radius
SAMPLES_PER_PITCH = 8  # radial samples per turn when tracing: a few across the thinnest band
SECTORS = 36  # narrow enough that the spiral's rise within a sector is a small part of a pitch
MIN_PITCH_PX = 2.0
CENTRE_ITERATIONS = 5
RIDGE_LEVEL = 0.25  # of a typical band's band-passed height: weaker maxima are noise
MIN_RIDGE_TURNS = 0.05  # a traced stretch shorter than this part of a turn is noise
STEEL_HEIGHT = 2.5  # a stretch this many times the typical turn's band-passed height is the can
RIDGE_SPREAD = 0.125  # turns from its turn that most of a stretch must stay within (a circle: a quarter)
FIT_POINTS = 2000  # traced points enough for four parameters; more only cost time
VOTE_EVERY = 3  # angles of a stretch between those that vote for its turn
PERCENTILE_SAMPLES = 2**14  # pixels enough for the robust range's 0.5/99.5 percentiles


@dataclass(frozen=True)
class Spiral:
    """The fitted ideal spiral: radius `start + pitch * (t - t_start)` about `centre`, where
    `t = turn + direction * angle / 360deg` counts turns along the winding (t_start to t_end)."""

    centre: tuple[float, float]  # (row, col) px
    pitch: float  # px per turn
    direction: int  # +1: the radius grows with the image angle (towards increasing rows), -1 otherwise
    start: float  # px, radius at the inner end of the winding
    t_start: float
    t_end: float


@dataclass(frozen=True)
class RollResult:
    """The `roll.*` measurements and what a report plots: the unrolled slice (rows: `angles_deg`,
    columns: `radii_px` about the roll centre) and per turn (innermost first) the traced and the
    ideal radius at each angle (NaN where the turn has no trace or does not pass)."""

    measurements: dict[MeasurementName, Measurement]
    unrolled: FloatArray
    angles_deg: FloatArray
    radii_px: FloatArray
    layer_radii: FloatArray
    ideal_radii: FloatArray
    spiral: Spiral | None


@dataclass(frozen=True)
class Grid:
    """Polar sampling: `angles` rows (angle 360deg j / angles from the column axis towards increasing
    rows) by `radii` columns `step` px apart."""

    angles: int
    radii: int
    step: float

    def theta(self) -> npt.NDArray[np.float64]:
        return 2 * np.pi * np.arange(self.angles) / self.angles


@lru_cache(maxsize=8)
def _offsets(grid: Grid) -> tuple[FloatArray, FloatArray]:
    radii = grid.step * np.arange(grid.radii)
    theta = grid.theta()
    dx = (radii[None, :] * np.cos(theta)[:, None]).astype(np.float32)
    dy = (radii[None, :] * np.sin(theta)[:, None]).astype(np.float32)
    dx.flags.writeable = False
    dy.flags.writeable = False
    return dx, dy


def robust_unit(image: np.ndarray) -> FloatArray:
    """`segmentation.robust_unit` with the percentiles of a regular subsample (every pixel up to
    PERCENTILE_SAMPLES of them): the winding is traced on band-passed intensities, which a
    slightly different range changes only where it clips."""
    stride = max(1, math.isqrt(image.size // PERCENTILE_SAMPLES))
    lo, hi = (float(q) for q in np.percentile(image[::stride, ::stride], ROBUST_PERCENTILES))
    if hi <= lo:
        return np.zeros(image.shape, dtype=np.float32)
    # one float32 array, scaled in place: an 8-bit slice need not pass through float64
    unit: FloatArray = np.multiply(image, np.float32(1 / (hi - lo)), dtype=np.float32)
    unit -= np.float32(lo / (hi - lo))
    np.clip(unit, 0.0, 1.0, out=unit)
    return unit


def unroll(unit: FloatArray, centre: tuple[float, float], grid: Grid) -> FloatArray:
    """`unit` resampled on `grid` about `centre` (row, col); zero outside the image."""
    dx, dy = _offsets(grid)
    map_x, map_y = dx + np.float32(centre[1]), dy + np.float32(centre[0])
    polar = cv2.remap(unit, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    return np.asarray(polar, dtype=np.float32)


def band_pass(polar: FloatArray, pitch: float, step: float) -> FloatArray:
    """Along the radius a difference of Gaussians at the scale of one pitch (one peak per turn, at its
    brightest band); along the angle a light smoothing against noise."""
    short, long = pitch / 6 / step, pitch / 2 / step
    half = math.ceil(3 * long)
    x = np.arange(-half, half + 1, dtype=np.float64)
    fine, coarse = np.exp(-0.5 * (x / short) ** 2), np.exp(-0.5 * (x / long) ** 2)
    kernel = (fine / fine.sum() - coarse / coarse.sum()).astype(np.float32)
    across = np.array([0.25, 0.5, 0.25], dtype=np.float32)
    passed = cv2.sepFilter2D(polar, cv2.CV_32F, kernel, across, borderType=cv2.BORDER_REFLECT)
    return np.asarray(passed, dtype=np.float32)


def radial_period(polar: FloatArray, step: float, r_max: float) -> float | None:
    """The strongest radial period (px) of the unrolled slice, between 4 samples and r_max / 5."""
    # every fourth angle: the spectra of neighbouring angles are alike
    profile = polar[::4] - polar[::4].mean(axis=1, keepdims=True)
    # scipy's transform in single precision: the coarse grid's radii are often a prime count
    power = (np.abs(fft.rfft(profile, axis=1)) ** 2).mean(axis=0)
    frequency = np.fft.rfftfreq(polar.shape[1], step)
    # times f: against the steps at the core and the can, which would win at low frequencies
    weighted = power * frequency
    allowed = (frequency >= 5 / r_max) & (frequency <= 1 / max(MIN_PITCH_PX, 4 * step))
    if not allowed.any() or float(weighted[allowed].max()) <= 0:
        return None
    k = int(np.flatnonzero(allowed)[np.argmax(weighted[allowed])])
    k_fine = float(k)
    if 0 < k < len(weighted) - 1:
        left, mid, right = weighted[k - 1], weighted[k], weighted[k + 1]
        curvature = left - 2 * mid + right
        if curvature < 0:
            k_fine += float(0.5 * (left - right) / curvature)
    return float(1 / (k_fine * float(frequency[1])))


@dataclass(frozen=True)
class _SectorFit:
    pitch: float
    direction: int
    offset: float  # px: band radius at angle 0, modulo the pitch
    shift: tuple[float, float]  # (row, col) px: from the unroll's centre to the spiral's


def _sector_fit(passed: FloatArray, step: float, pitch_guess: float, reach: float = 1.0) -> _SectorFit | None:
    """Pitch, direction, phase and centre offset from the band phase in each angle sector.

    In a narrow sector the bands are nearly circles, so one Fourier coefficient at the pitch says
    where they are (modulo a pitch); the pitch is searched within `reach` x 10 % of the guess. Once
    around, that position rises by one pitch (the direction is its sign), plus a sinusoid when the
    unroll is off the spiral's centre."""
    n_angles, n_radii = passed.shape
    sums = passed.reshape(SECTORS, n_angles // SECTORS, n_radii).sum(axis=1).astype(np.float64)
    pitch = pitch_guess
    for spread in (0.1 * reach, 0.01 * reach) if reach > 0 else (0.0,):
        pitches = pitch * (1 + np.linspace(-spread, spread, 21 if spread > 0 else 1))
        # exp(2 pi i r / pitch) at each radius, as powers of one radial step's rotation: no trigonometry
        waves = np.empty((n_radii, len(pitches)), dtype=np.complex128)
        waves[0] = 1
        rotation = np.exp(2j * np.pi * step / pitches)
        np.cumprod(np.broadcast_to(rotation, (n_radii - 1, len(pitches))), axis=0, out=waves[1:])
        # at most 36 x 257 x 21 multiply-adds: under OpenBLAS's threading threshold, so one thread
        real, imag = sums @ waves.real, sums @ waves.imag
        best = int(np.argmax(np.hypot(real, imag).sum(axis=0)))
        pitch = float(pitches[best])
    z = real[:, best] + 1j * imag[:, best]
    position = np.angle(z) * pitch / (2 * np.pi)
    steps = np.diff(np.append(position, position[0]))
    steps = (steps + pitch / 2) % pitch - pitch / 2
    turns = round(float(steps.sum()) / pitch)
    if turns not in (-1, 1):
        return None
    angles = 2 * np.pi * (np.arange(SECTORS) + 0.5) / SECTORS
    unwrapped = position[0] + np.concatenate([[0.0], np.cumsum(steps[:-1])])
    target = unwrapped - turns * pitch * angles / (2 * np.pi)
    design = np.column_stack([np.ones(SECTORS), np.cos(angles), np.sin(angles)])
    offset, shift_col, shift_row = _weighted_lstsq(design, target, np.abs(z))
    return _SectorFit(pitch, turns, offset % pitch, (shift_row, shift_col))


def _weighted_lstsq(
    design: npt.NDArray[np.float64], target: npt.NDArray[np.float64], weights: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    weighted = (design * weights[:, None]).T
    normal, right = weighted @ design, weighted @ target
    return np.asarray(np.linalg.solve(normal + 1e-9 * np.eye(len(right)), right), dtype=np.float64)


def _initial_centre(unit: FloatArray) -> tuple[float, float]:
    """Centre of mass of the brighter-than-mean pixels: about the cell's disc."""
    moments = cv2.moments((unit > unit.mean()).astype(np.uint8), binaryImage=True)
    if moments["m00"] == 0:
        return (unit.shape[0] - 1) / 2, (unit.shape[1] - 1) / 2
    return moments["m01"] / moments["m00"], moments["m10"] / moments["m00"]


@dataclass(frozen=True)
class _Trace:
    """Ridge points of the turns' bands: angle index, radius (px), and the turn each belongs to."""

    column: npt.NDArray[np.intp]
    radius: npt.NDArray[np.float64]
    turn: npt.NDArray[np.intp]


def _ridges(
    passed: FloatArray,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Maxima along the radius well above the local mean, as 8-connected stretches: the stretch's
    label, the angle index, the sub-sample radius index and the height of each point."""
    mid = passed[:, 1:-1]
    peak = (mid > passed[:, :-2]) & (mid >= passed[:, 2:]) & (mid > 0)
    heights = mid[peak]
    if heights.size == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty, np.zeros(0), np.zeros(0)
    peak &= mid > RIDGE_LEVEL * _percentile(heights, 90)
    _, labels = cv2.connectedComponents(peak.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    # flat indices: far cheaper than a 2-D nonzero
    found = np.flatnonzero(peak)
    rows, cols = np.divmod(found, peak.shape[1])
    at = rows * passed.shape[1] + cols
    flat = passed.reshape(-1)
    left, centre, right = flat[at], flat[at + 1], flat[at + 2]
    curvature = left - 2 * centre + right
    offset = np.where(curvature < 0, 0.5 * (left - right) / np.where(curvature < 0, curvature, -1), 0.0)
    index = cols + 1 + np.clip(offset, -0.5, 0.5)
    return labels.reshape(-1)[found].astype(np.intp), rows.astype(np.intp), index, centre.astype(np.float64)


def _percentile(values: npt.NDArray[np.floating], q: float) -> float:
    """`np.percentile(values, q)` (linear) of a non-empty 1-D array, by one partition."""
    position = q / 100 * (len(values) - 1)
    below = math.floor(position)
    above = min(below + 1, len(values) - 1)
    low, high = (float(v) for v in np.partition(values, (below, above))[[below, above]])
    fraction = position - below
    # numpy's interpolation, exact at both ends
    return high - (high - low) * (1 - fraction) if fraction >= 0.5 else low + (high - low) * fraction


def _circles(
    labels: npt.NDArray[np.intp],
    x: npt.NDArray[np.float64],
    radius: npt.NDArray[np.float64],
    spiral: npt.NDArray[np.float64],
) -> npt.NDArray[np.bool_]:
    """Per stretch: whether it is a circle rather than a turn (the can, a mandrel ring): over a
    quarter turn or more, its radius varies much less than its distance from the spiral."""
    n = np.maximum(np.bincount(labels), 1).astype(np.float64)

    def spread(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        mean = np.bincount(labels, weights=values) / n
        return np.asarray(np.sqrt(np.maximum(np.bincount(labels, weights=values * values) / n - mean**2, 0)))

    span = np.sqrt(12) * spread(x)
    return np.asarray((span > 0.25) & (spread(radius) < 0.5 * spread(spiral)))


def _trace(passed: FloatArray, step: float, fit: _SectorFit) -> _Trace:
    """Ridge stretches assigned to turns of the sector fit's spiral.

    A stretch that follows the spiral takes the nearest turn. One that strays from it (buckled)
    takes its turn from its neighbours: one less than the assigned band about a pitch outside it,
    one more than the band about a pitch inside, at most of its angles (layers buckle together,
    one pitch apart). Circles (the can, a mandrel ring), stretches far brighter than the typical turn
    (the steel can, elliptic or dented), the weaker
    band half a pitch between turns, and short stretches of noise are dropped. A stretch keeps its
    turn along all its length, so a buckled part connected to a turn counts as that turn."""
    n_angles = passed.shape[0]
    labels, rows, index, height = _ridges(passed)
    radius = index * step
    x = rows / n_angles
    w = (radius - fit.offset) / fit.pitch - fit.direction * x
    count = np.bincount(labels)
    turns = np.round(np.bincount(labels, weights=w) / np.maximum(count, 1))
    near = np.bincount(labels, weights=np.abs(w - turns[labels]) < RIDGE_SPREAD) / np.maximum(count, 1)
    usable = (count >= MIN_RIDGE_TURNS * n_angles) & ~_circles(labels, x, radius, w * fit.pitch)
    usable[0] = False
    mean_height = np.bincount(labels, weights=height) / np.maximum(count, 1)
    if usable.any():
        typical = _weighted_median(mean_height[usable], count[usable])
        usable &= mean_height < STEEL_HEIGHT * typical
    assigned = usable & (near > 0.5)
    turn_of = np.where(assigned, turns, np.nan)
    _vote_turns(labels, rows, np.round(index).astype(np.intp), radius, turn_of, usable & ~assigned, fit.pitch / step)
    chosen = np.isfinite(turn_of[labels])
    turn = turn_of[labels][chosen].astype(np.intp)
    rows, radius, size = rows[chosen], radius[chosen], count[labels][chosen]
    # two stretches on one turn at one angle: the longer stretch is the turn
    key = turn * n_angles + rows
    # by key, then the longer first: one stable sort of a combined key
    longest = int(size.max()) if size.size else 0
    order = np.argsort(key * (longest + 1) + (longest - size), kind="stable")
    first = np.concatenate([[True], np.diff(key[order]) != 0]) if key.size else np.zeros(0, dtype=bool)
    picked = order[first]
    return _Trace(rows[picked], radius[picked], turn[picked])


def _vote_turns(
    labels: npt.NDArray[np.intp],
    rows: npt.NDArray[np.intp],
    index: npt.NDArray[np.intp],
    radius: npt.NDArray[np.float64],
    turn_of: npt.NDArray[np.float64],
    candidates: npt.NDArray[np.bool_],
    pitch_samples: float,
) -> None:
    """Gives candidate stretches the turn their neighbours imply (see `_trace`), in `turn_of`."""
    if not candidates.any():
        return
    n_angles = int(rows.max()) + 1
    n_radii = int(index.max()) + 2
    # single precision holds any turn number exactly, in half the memory to touch
    turn_map = np.full(n_angles * n_radii, np.nan, dtype=np.float32)
    known = np.isfinite(turn_of[labels])
    turn_map[rows[known] * n_radii + index[known]] = turn_of[labels][known]
    points = np.flatnonzero(candidates[labels])
    points = points[np.argsort(labels[points], kind="stable")]
    bounds = np.searchsorted(labels[points], np.arange(len(turn_of) + 1))
    cells = rows[points] * n_radii + index[points]
    # every few angles of a stretch vote: neighbouring angles see the same bands
    voters = points[(np.arange(len(points)) - bounds[labels[points]]) % VOTE_EVERY == 0]
    voter_bounds = np.searchsorted(labels[voters], np.arange(len(turn_of) + 1))
    # per voter: the map cells a pitch outside, then inside it, on its row
    reach = np.arange(math.floor(0.6 * pitch_samples), math.ceil(1.5 * pitch_samples) + 1)
    row_start, i = (rows[voters] * n_radii)[:, None], index[voters][:, None]
    outside = row_start + np.minimum(i + reach, n_radii - 1)
    inside = row_start + np.maximum(i - reach, 0)
    mean_radius = np.bincount(labels, weights=radius) / np.maximum(np.bincount(labels), 1)
    waiting = [int(label) for label in np.flatnonzero(candidates)]
    # a stretch whose vote failed fails again until some other stretch has been given its turn
    assigned, tried = 0, dict.fromkeys(waiting, -1)
    for inward in (True, False, True):
        waiting.sort(key=lambda label: mean_radius[label], reverse=inward)
        still = []
        for label in waiting:
            if tried[label] == assigned:
                still.append(label)
                continue
            tried[label] = assigned
            lo, hi = voter_bounds[label], voter_bounds[label + 1]
            votes = np.concatenate([_first(turn_map[outside[lo:hi]]) - 1, _first(turn_map[inside[lo:hi]]) + 1])
            votes = votes[np.isfinite(votes)].astype(np.intp)
            if votes.size == 0:
                still.append(label)
                continue
            lowest = int(votes.min())
            counts = np.bincount(votes - lowest)
            if counts.max() < 0.5 * (hi - lo):
                still.append(label)
                continue
            turn_of[label] = lowest + int(np.argmax(counts))
            turn_map[cells[bounds[label] : bounds[label + 1]]] = turn_of[label]
            assigned += 1
        waiting = still


def _first(found: FloatArray) -> FloatArray:
    """Per row, the first finite value (NaN when none)."""
    at = np.argmax(np.isfinite(found), axis=1)
    # where no value is finite, argmax gives column 0, itself NaN
    return np.asarray(found[np.arange(len(found)), at])


def _robust_spiral(trace: _Trace, n_angles: int, fit: _SectorFit) -> tuple[npt.NDArray[np.float64], float]:
    """(offset, pitch, col shift, row shift) of `radius = offset + pitch * t + shift . (cos, sin)`
    by Tukey-weighted least squares over all turns, and the fit's inlier fraction."""
    every = max(1, trace.radius.size // FIT_POINTS)
    column, radius = trace.column[::every], trace.radius[::every]
    theta = 2 * np.pi * column / n_angles
    t = trace.turn[::every] + fit.direction * column / n_angles
    design = np.column_stack([np.ones_like(t), t, np.cos(theta), np.sin(theta)])
    weights = np.ones_like(t)
    for _ in range(5):
        params = _weighted_lstsq(design, radius, weights)
        residual = radius - design @ params
        scale = max(1.4826 * _median(np.abs(residual)), 0.02 * fit.pitch)
        weights = np.square(np.maximum(1 - np.square(residual / (4.685 * scale)), 0))
    inliers = float(np.mean(np.abs(residual) < 0.25 * params[1]))
    return params, inliers


def _weighted_median(values: npt.NDArray[np.float64], counts: npt.NDArray[np.intp]) -> float:
    """`np.median(np.repeat(values, counts))` without the repeated array."""
    order = np.argsort(values, kind="stable")
    ends = np.cumsum(counts[order])
    total = int(ends[-1])
    low, high = (float(values[order][np.searchsorted(ends, k, side="right")]) for k in ((total - 1) // 2, total // 2))
    return 0.5 * (low + high) if low != high else low


def _median(values: npt.NDArray[np.float64]) -> float:
    """`np.median` of a non-empty 1-D array, by one partition."""
    half = len(values) // 2
    if len(values) % 2:
        return float(np.partition(values, half)[half])
    low, high = np.partition(values, (half - 1, half))[half - 1 : half + 1]
    return float(0.5 * (low + high))


def _missing(reason: str, unit: Unit) -> dict[MeasurementName, Measurement]:
    lengths: tuple[MeasurementName, ...] = (
        "roll.core_diameter_mm",
        "roll.core_offset_mm",
        "roll.gap_mm",
        "roll.layer_max_deviation_mm",
    )
    missing = {name: Measurement.missing(unit, reason) for name in lengths}
    missing["roll.turns"] = Measurement.missing("count", reason)
    return missing


def _empty(measurements: dict[MeasurementName, Measurement]) -> RollResult:
    nothing = np.zeros((0, 0), dtype=np.float32)
    line = np.zeros(0, dtype=np.float32)
    return RollResult(measurements, nothing, line, line, nothing, nothing, None)


def _locate(unit: FloatArray, guess: tuple[float, float], r_max: float) -> tuple[tuple[float, float], float] | None:
    """The spiral's centre (row, col) and pitch (px) on a coarse unroll, from a guess of the centre."""
    step = max(0.5, r_max / 256)
    grid = Grid(COARSE_ANGLES, int(r_max / step) + 1, step)
    centre = guess
    polar = unroll(unit, centre, grid)
    pitch = radial_period(polar, step, r_max)
    if pitch is None:
        return None
    for iteration in range(CENTRE_ITERATIONS):
        passed = band_pass(polar, pitch, step)
        # a strong second band per turn can win the period: then the phase goes twice around
        reach = 1.0 if iteration == 0 else 0.1
        fit = _sector_fit(passed, step, pitch, reach) or _sector_fit(passed, step, 2 * pitch, reach)
        if fit is None:
            return None
        pitch = fit.pitch
        centre = (centre[0] + fit.shift[0], centre[1] + fit.shift[1])
        if math.hypot(*fit.shift) < 0.05 * pitch:
            break
        polar = unroll(unit, centre, grid)
    return centre, pitch


def _layers(
    trace: _Trace, params: npt.NDArray[np.float64], direction: int, t_start: float, t_end: float, n_angles: int
) -> tuple[FloatArray, FloatArray]:
    """Traced and ideal radius per (turn from the inner end, angle index)."""
    theta = 2 * np.pi * np.arange(n_angles) / n_angles
    along = (direction * theta / (2 * np.pi) - t_start) % 1.0
    n_layers = max(1, math.ceil(t_end - t_start - 1e-9))
    t = t_start + np.arange(n_layers)[:, None] + along[None, :]
    ideal = params[0] + params[1] * t + params[2] * np.cos(theta) + params[3] * np.sin(theta)
    ideal = np.where(t <= t_end + 1e-9, ideal, np.nan).astype(np.float32)
    traced = np.full((n_layers, n_angles), np.nan, dtype=np.float32)
    t_point = trace.turn + direction * trace.column / n_angles
    layer = np.clip(np.floor(t_point - t_start + 1e-9).astype(np.intp), 0, n_layers - 1)
    traced[layer, trace.column] = trace.radius
    return traced, ideal


def _deviations(traced: FloatArray, ideal: FloatArray, order: npt.NDArray[np.intp]) -> list[tuple[float, int, float]]:
    """Per turn: the largest absolute deviation (px) held over three neighbouring traced angles
    (a one- or two-sample spike is noise), the angle index where, and the fraction of the turn's
    angles that were traced."""
    deviation = np.abs(traced[:, order] - ideal[:, order])
    passes = np.isfinite(ideal[:, order])
    seen = np.isfinite(deviation)
    held = np.where(seen, deviation, np.inf)
    padded = np.pad(held, ((0, 0), (1, 1)), constant_values=np.inf)
    held = np.minimum(np.minimum(padded[:, :-2], padded[:, 1:-1]), padded[:, 2:])
    held = np.where(seen, held, -1.0)
    at = np.argmax(held, axis=1)
    value = held[np.arange(len(held)), at]
    coverage = seen.sum(axis=1) / np.maximum(passes.sum(axis=1), 1)
    return [
        (float(v), int(order[column]), float(c)) if v >= 0 else (math.nan, -1, float(c))
        for v, column, c in zip(value, at, coverage, strict=True)
    ]


def _along_ray(origin: tuple[float, float], angle: float, axis: tuple[float, float], radius: float) -> float:
    """Distance from `origin` (row, col) along `angle` to the circle of `radius` about `axis`."""
    d_row, d_col = origin[0] - axis[0], origin[1] - axis[1]
    along = d_row * math.sin(angle) + d_col * math.cos(angle)
    return -along + math.sqrt(max(along**2 - (d_row**2 + d_col**2) + radius**2, 0.0))


def measure_roll(
    image: np.ndarray,
    pixel_mm: float | None,
    *,
    axis: tuple[float, float] | None = None,
    can_inner_radius_px: float | None = None,
) -> RollResult:
    """The `roll.*` measurements of one axial slice.

    `axis` is the can's centre (row, col, px) and `can_inner_radius_px` its inner radius when the
    can was measured; without them the can-relative values (core offset, gap) are null. Lengths
    are in mm with `pixel_mm`, in px without; turns are fractional (the winding's length in turns).

    Confidences: `fit` is the fraction of traced band points within a quarter pitch of the fitted
    spiral, `coverage` the fraction of a turn's angles where its band was traced. The core diameter
    has fit x coverage of the innermost turn, the gap fit x coverage of the outermost, the turn
    count fit x the smaller of both, the core offset fit, the layer deviations the mean coverage.
    """
    unit_name: Unit = "mm" if pixel_mm else "px"
    scale = pixel_mm or 1.0
    unit = robust_unit(image)
    if not unit.any():
        return _empty(_missing("the slice is blank (no intensity range)", unit_name))
    guess = axis if axis is not None else _initial_centre(unit)
    rows, cols = unit.shape
    r_max = max(guess[0], rows - 1 - guess[0], guess[1], cols - 1 - guess[1])
    if can_inner_radius_px is not None:
        r_max = min(r_max, 1.02 * can_inner_radius_px + 2)
    no_spiral = "no wound spiral in the slice: no radial band period about a centre"
    located = _locate(unit, guess, r_max)
    if located is None:
        return _empty(_missing(no_spiral, unit_name))
    centre, pitch = located
    step = pitch / SAMPLES_PER_PITCH
    n_angles = 72 * math.ceil(2 * math.pi * r_max / ARC_PX / 72)
    grid = Grid(n_angles, int(r_max / step) + 1, step)
    polar = unroll(unit, centre, grid)
    passed = band_pass(polar, pitch, step)
    sector = _sector_fit(passed, step, pitch, reach=0.0)
    if sector is None:
        return _empty(_missing(no_spiral, unit_name))
    trace = _trace(passed, step, sector)
    if trace.radius.size < n_angles:
        return _empty(_missing("less than one turn of the winding could be traced", unit_name))
    params, fit = _robust_spiral(trace, n_angles, sector)
    if fit < 0.5:
        return _empty(_missing("the traced bands do not follow one spiral", unit_name))
    direction = sector.direction
    t_point = trace.turn + direction * trace.column / n_angles
    t_start, t_end = float(t_point.min()), float(t_point.max())
    traced, ideal = _layers(trace, params, direction, t_start, t_end, n_angles)
    along = (direction * np.arange(n_angles) / n_angles - t_start) % 1.0
    per_layer = _deviations(traced, ideal, np.argsort(along, kind="stable").astype(np.intp))
    spiral_centre = (float(centre[0] + params[3]), float(centre[1] + params[2]))
    start = float(params[0] + params[1] * t_start)
    end = float(params[0] + params[1] * t_end)
    spiral = Spiral(spiral_centre, float(params[1]), direction, start, t_start, t_end)
    angles_deg = (360.0 * np.arange(n_angles) / n_angles).astype(np.float32)
    coverages = [coverage for _, _, coverage in per_layer]
    caveat = None if pixel_mm else "no pixel size: in px"

    measurements: dict[MeasurementName, Measurement] = {
        "roll.core_diameter_mm": Measurement(
            value=2 * start * scale, unit=unit_name, confidence=fit * coverages[0], reason=caveat
        ),
        "roll.turns": Measurement(
            value=round(t_end - t_start, 2), unit="count", confidence=fit * min(coverages[0], coverages[-1])
        ),
    }
    if axis is None:
        no_can = "no can axis given: the can was not measured in this slice"
        measurements["roll.core_offset_mm"] = Measurement.missing(unit_name, no_can)
        measurements["roll.gap_mm"] = Measurement.missing(unit_name, no_can)
    else:
        offset = math.hypot(spiral_centre[0] - axis[0], spiral_centre[1] - axis[1])
        measurements["roll.core_offset_mm"] = Measurement(
            value=offset * scale, unit=unit_name, confidence=fit, reason=caveat
        )
        if can_inner_radius_px is None:
            measurements["roll.gap_mm"] = Measurement.missing(unit_name, "no can inner radius given")
        else:
            end_angle = 2 * math.pi * ((direction * t_end) % 1.0)
            wall = _along_ray(spiral_centre, end_angle, axis, can_inner_radius_px)
            measurements["roll.gap_mm"] = Measurement(
                value=(wall - end) * scale, unit=unit_name, confidence=fit * coverages[-1], reason=caveat
            )
    layers = tuple(
        LayerDeviation(layer=k + 1, max_abs=value * scale, angle_deg=float(angles_deg[at]))
        for k, (value, at, _) in enumerate(per_layer)
        if at >= 0
    )
    measurements["roll.layer_max_deviation_mm"] = (
        Measurement(
            value=max(layer.max_abs for layer in layers),
            unit=unit_name,
            confidence=float(np.mean(coverages)),
            reason=caveat,
            angle_deg=max(layers, key=lambda layer: layer.max_abs).angle_deg,
            layers=layers,
        )
        if layers
        else Measurement.missing(unit_name, "no turn was traced along enough of its length")
    )
    radii = (step * np.arange(grid.radii)).astype(np.float32)
    return RollResult(measurements, polar, angles_deg, radii, traced, ideal, spiral)
