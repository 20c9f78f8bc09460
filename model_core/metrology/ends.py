"""A cell end in a CT volume: where the cathode and the anode layers end along the cell axis, per
angle sector, and the anode's overhang past the cathode.

Each sector is sampled as a few angular reslices through the axis (the (z, r) planes of rays 2.5
degrees apart). Where the roll is whole (the quarter of the slices at its side) the sector's mean
radial profile shows every layer as a peak. The electrodes alternate along r, and a peak that
stands out over its gaps more than the peaks either side is a cathode (metal oxide on aluminium,
the denser), the others the anode (graphite on copper; in CT its copper foil is a thin bright line).
Along z, on each ray, a layer is present while its peak stands above its gaps (followed sideways by
a pixel a slice: a free foil edge leans); it ends where that contrast crosses halfway between its
level just inside and just past the end. A sector's cathode (anode) end is the median over its
cathode (anode) layers and rays, so a stray layer, a tab or the spiral's seam does not move it.

Heights are measured from the volume's first slice, in mm (with `slice_mm`) or in slices. The
overhang is positive when the anode reaches further towards the cell end than the cathode, whichever
end of the volume that is. Angles are in degrees from the column axis towards the row axis, [0, 360).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.signal import find_peaks

from model_core.metrology.segmentation import brightest, robust_unit
from schemas.measurements import Measurement, MeasurementName, OverhangSector, Unit, names_of

FloatArray = npt.NDArray[np.floating[Any]]

ENDS_NAMES = names_of("overhang")

MIN_SLICES = 12
_RAY_STEP_DEG = 2.5  # rays averaged into one sector's reslice
_ROLL_SHARE = 4  # the quarter of the slices at the roll's side is taken as the whole roll
_PEAK_SHARE = 0.25  # a layer's peak stands at least this share of the strong peaks' prominence
_HIGH_PASS_PX = 2.0  # radial smoothing removed to see the layers (their period is 5-15 px)
_WALL_MARGIN_PX = 2.0
_PLATEAU = 5  # slices either side of a layer's end that give its levels
_MIN_LAYERS = 2
_MIN_ALTERNATION = 0.8  # share of neighbouring peaks of different classes in a sector's roll
_MAX_LEAN_PX = 3  # how far a layer is followed sideways from where it is in the roll

Status = Literal["ok", "no layers", "runs", "cut"]
_REASONS: dict[Status, str] = {
    "no layers": "no electrode layers found in the volume",
    "runs": "no end region: the electrode layers run through the whole volume",
    "cut": "the electrode ends are cut by the volume (a layer runs up to its last slice)",
    "ok": "",
}


@dataclass(frozen=True)
class EndsResult:
    """The overhang measurements, the defect flag, and what a report plots: per sector the mean
    reslice (sector, z, r) in [0, 1] with r in px from `axis`, and the in-plane / along-z sizes."""

    measurements: dict[MeasurementName, Measurement]
    negative_overhang: bool
    reslices: npt.NDArray[np.float32]
    axis: tuple[float, float] | None
    end_side: Literal["first", "last"] | None
    pixel_mm: float | None
    slice_mm: float | None


@dataclass(frozen=True)
class _Sector:
    status: Status
    cathode: float | None = None  # end, in slices from the roll's side
    anode: float | None = None
    confidence: float = 0.0


def _fit_circle(rows: FloatArray, cols: FloatArray) -> tuple[float, float, float]:
    """Algebraic least-squares circle: (row, col, radius)."""
    design = np.column_stack([cols, rows, np.ones_like(cols)])
    target = cols**2 + rows**2
    (a, b, c), *_ = np.linalg.lstsq(design, target, rcond=None)
    col0, row0 = a / 2, b / 2
    return float(row0), float(col0), float(math.sqrt(max(c + col0**2 + row0**2, 0.0)))


def _can_outline(can: npt.NDArray[np.bool_]) -> tuple[float, float, float] | None:
    """The circle through the outermost can pixel at each angle around the bright pixels' centroid."""
    rows, cols = np.nonzero(can)
    if rows.size < 50:
        return None
    d_row, d_col = rows - rows.mean(), cols - cols.mean()
    radius = np.hypot(d_row, d_col)
    bins = ((np.arctan2(d_row, d_col) + np.pi) / (2 * np.pi) * 180).astype(np.intp) % 180
    order = np.lexsort((radius, bins))
    last = np.flatnonzero(np.diff(np.append(bins[order], -1)) != 0)
    outer = order[last]
    if outer.size < 20:
        return None
    row0, col0, r0 = _fit_circle(rows[outer].astype(np.float64), cols[outer].astype(np.float64))
    residual = np.abs(np.hypot(rows[outer] - row0, cols[outer] - col0) - r0)
    keep = outer[residual <= max(3 * float(np.median(residual)), 1.0)]
    return _fit_circle(rows[keep].astype(np.float64), cols[keep].astype(np.float64))


def _inner_wall(can: npt.NDArray[np.bool_], centre: tuple[float, float], outer: float) -> float:
    """Radius where the can ring's azimuthal share of bright pixels falls below half, going inwards."""
    rows, cols = np.indices(can.shape)
    radius = np.hypot(rows - centre[0], cols - centre[1]).astype(np.intp).ravel()
    counts = np.bincount(radius)
    share = np.bincount(radius, weights=can.ravel().astype(np.float64)) / np.maximum(counts, 1)
    start = min(round(outer), share.size - 1)
    ring = start - int(np.argmax(share[start::-1][: max(start // 4, 2)]))
    inside = np.flatnonzero(share[: ring + 1] < 0.5 * share[ring])
    return float(inside[-1] + 1) if inside.size else outer


def cell_axis(volume: npt.NDArray[Any]) -> tuple[tuple[float, float], float] | None:
    """(row, col) of the cell axis and the can's inner radius (px), from the can ring (the brightest
    class) of the volume's mean projection; None without a ring."""
    projection = robust_unit(np.asarray(volume).mean(axis=0, dtype=np.float32))
    can = brightest(projection)
    outline = _can_outline(can)
    if outline is None:
        return None
    row0, col0, outer = outline
    return (row0, col0), _inner_wall(can, (row0, col0), outer)


def _reach(shape: tuple[int, ...], centre: tuple[float, float], volume: npt.NDArray[Any]) -> float:
    """The can's inner radius around a given axis, or the distance to the image's border."""
    border = min(centre[0], centre[1], shape[-2] - 1 - centre[0], shape[-1] - 1 - centre[1])
    can = brightest(robust_unit(np.asarray(volume).mean(axis=0, dtype=np.float32)))
    rows, cols = np.nonzero(can)
    if rows.size == 0:
        return border
    outer = float(np.percentile(np.hypot(rows - centre[0], cols - centre[1]), 99))
    return min(_inner_wall(can, centre, outer), border)


def _reslices(volume: npt.NDArray[Any], centre: tuple[float, float], reach: int, sectors: int) -> FloatArray:
    """(sector, ray, z, r): each sector's rays from the axis, sampled at 1 px."""
    per = max(1, math.ceil(360 / sectors / _RAY_STEP_DEG))
    width = 2 * math.pi / sectors
    offsets = ((np.arange(per) + 0.5) / per - 0.5) * width
    angles = (np.arange(sectors)[:, None] * width + offsets[None, :]).ravel()
    radii = np.arange(reach, dtype=np.float64)
    map_col = (centre[1] + np.cos(angles)[:, None] * radii).astype(np.float32)
    map_row = (centre[0] + np.sin(angles)[:, None] * radii).astype(np.float32)
    out = np.empty((volume.shape[0], angles.size, reach), dtype=np.float32)
    for z, image in enumerate(volume):
        out[z] = cv2.remap(np.asarray(image, dtype=np.float32), map_col, map_row, cv2.INTER_LINEAR)
    return np.asarray(out.reshape(volume.shape[0], sectors, per, reach).transpose(1, 2, 0, 3))


def _layer_texture(unit: FloatArray) -> FloatArray:
    """Per slice: how strongly the reslices vary along r at the layers' scale (median over sectors)."""
    high = unit - ndimage.gaussian_filter1d(unit, _HIGH_PASS_PX, axis=-1)
    return np.asarray(np.median(high.std(axis=-1), axis=0))


def _layers(reference: FloatArray) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    """The cathode and anode layers of a radial profile as (peak, gap before, gap after) columns."""
    profile = ndimage.gaussian_filter1d(reference, 0.6)
    peaks, props = find_peaks(profile, prominence=0)
    if peaks.size < 2 * _MIN_LAYERS:
        return [], []
    strong = float(np.percentile(props["prominences"], 90))
    peaks = peaks[props["prominences"] >= _PEAK_SHARE * strong]
    if peaks.size < 2 * _MIN_LAYERS:
        return [], []
    last = profile.size - 1
    bounds = np.concatenate([[max(0, 2 * peaks[0] - peaks[1])], peaks, [min(last, 2 * peaks[-1] - peaks[-2])]])
    layers, contrast = [], []
    for i, peak in enumerate(peaks):
        before = int(bounds[i] + np.argmin(profile[bounds[i] : peak + 1]))
        after = int(peak + np.argmin(profile[peak : bounds[i + 2] + 1]))
        layers.append((int(peak), before, after))
        contrast.append(profile[peak] - 0.5 * (profile[before] + profile[after]))
    contrasts = np.asarray(contrast, dtype=np.float64)
    # the electrodes alternate along r: a cathode stands out over the anodes either side of it.
    # Compared with its neighbours only, the half-covered first and last turns of the winding
    # (fainter than all the others) and a slow change of contrast with radius sort correctly.
    padded = np.concatenate([[np.nan], contrasts, [np.nan]])
    beside = np.nanmean(np.stack([padded[:-2], padded[2:]]), axis=0)
    cathode = contrasts > beside
    if np.mean(cathode[1:] != cathode[:-1]) < _MIN_ALTERNATION:
        return [], []  # no clean electrode pattern: too coarse a pixel, or not a roll
    return [x for x, c in zip(layers, cathode, strict=True) if c], [
        x for x, c in zip(layers, cathode, strict=True) if not c
    ]


@dataclass(frozen=True)
class _Layers:
    """Every sector's layers, flat: the sector, the peak's column, its gaps' offsets, which class."""

    sector: npt.NDArray[np.intp]
    peak: npt.NDArray[np.intp]
    gaps: npt.NDArray[np.intp]
    cathode: npt.NDArray[np.bool_]


def _find_layers(rays: FloatArray, roll: int) -> _Layers:
    """The layers of each sector (sector, ray, z, r), found on the mean of its rays over the roll's
    slices: across a sector the spiral moves a layer by a fraction of a pixel. A sector with fewer
    than two layers of a class contributes none."""
    rows: list[tuple[int, int, int, int, bool]] = []
    for j, sector in enumerate(rays):
        cathodes, anodes = _layers(np.median(sector[:, :roll].mean(axis=0), axis=0))
        if len(cathodes) >= _MIN_LAYERS and len(anodes) >= _MIN_LAYERS:
            rows += [(j, p, b - p, a - p, True) for p, b, a in cathodes]
            rows += [(j, p, b - p, a - p, False) for p, b, a in anodes]
    table = np.array([row[:4] for row in rows], dtype=np.intp).reshape(-1, 4)
    return _Layers(table[:, 0], table[:, 1], table[:, 2:], np.array([row[4] for row in rows], dtype=bool))


def _contrasts(rays: FloatArray, layers: _Layers, roll: int) -> FloatArray:
    """(layer, ray, z): each layer's peak over its gaps on each ray, followed from the roll outwards.

    A layer may lean by a pixel or so over the end region (the anode's free edge past the cathode
    bends), so on each slice its peak is the brightest local maximum among the three columns around
    where it was on the last, at most `_MAX_LEAN_PX` from where it started. Once its contrast has
    fallen below half its level in the roll on two slices running, it has ended and stays where it
    was: past its end it would wander to a neighbouring layer."""
    _, count, slices, width = rays.shape
    sector = layers.sector[:, None]
    ray = np.arange(count)[None, :]

    # each gap is the darkest column from the peak to one past where it was in the roll: a peak
    # followed onto the other half of its flat top still finds its gaps
    offsets = np.arange(1, int(np.abs(layers.gaps).max(initial=0)) + 2)
    outside = offsets[None, None, :] > np.abs(layers.gaps)[:, :, None] + 1

    def contrast(z: int, at: npt.NDArray[np.intp]) -> FloatArray:
        plane = rays[:, :, z]
        gaps = []
        for side, sign in enumerate((-1, 1)):
            columns = np.clip(at[..., None] + sign * offsets, 0, width - 1)
            values = plane[sector[..., None], ray[..., None], columns]
            gaps.append(np.where(outside[:, None, side, :], np.inf, values).min(axis=-1))
        return np.asarray(plane[sector, ray, at] - 0.5 * (gaps[0] + gaps[1]))

    at = np.broadcast_to(layers.peak[:, None], (layers.peak.size, count)).copy()
    half = 0.5 * np.median(np.stack([contrast(z, at) for z in range(roll)]), axis=0)
    weak = np.zeros(at.shape, dtype=np.intp)
    out = np.empty((*at.shape, slices), dtype=np.float32)
    steps = np.arange(-1, 2)
    origin = at.copy()
    for z in range(slices):
        around = np.clip(at[..., None] + steps, 1, width - 2)
        lit = rays[sector[..., None], ray[..., None], z, around]
        # only onto a local maximum: a faint foil beside a bright cathode must not climb its flank
        peak = (lit >= rays[sector[..., None], ray[..., None], z, around - 1]) & (
            lit >= rays[sector[..., None], ray[..., None], z, around + 1]
        )
        peak &= np.abs(around - origin[..., None]) <= _MAX_LEAN_PX
        pick = np.argmax(np.where(peak, lit, -np.inf), axis=-1)
        moved = np.take_along_axis(around, pick[..., None], -1)[..., 0]
        at = np.where((weak < 2) & peak.any(axis=-1), moved, at)
        out[..., z] = contrast(z, at)
        weak = np.where(out[..., z] < half, weak + 1, np.where(weak < 2, 0, weak))
    return out


_OK, _RUNS, _CUT, _NONE = 0, 1, 2, 3


def _layer_ends(contrast: FloatArray, roll: int) -> tuple[FloatArray, npt.NDArray[np.intp]]:
    """Where each profile (..., z) ends, in slices from the roll's side, and its state: ended, runs
    through the volume, cut by it, or no layer there (no contrast in the roll).

    The end is found where the contrast first stays below half its level in the roll, then placed
    where it crosses halfway between its level just inside (a few slices) and just past that."""
    slices = contrast.shape[-1]
    level = np.median(contrast[..., :roll], axis=-1)
    below = contrast < (level / 2)[..., None]
    dropped = below[..., :-1] & below[..., 1:]
    first, ended = np.argmax(dropped, axis=-1), dropped.any(axis=-1)
    state = np.where(~ended, _RUNS, np.where(first + 3 > slices, _CUT, _OK))
    state = np.where((level <= 0) | (ended & (first < 1)), _NONE, state)
    steps = np.arange(_PLATEAU)
    past = np.clip(first[..., None] + 1 + steps, 0, slices - 1)
    inside = np.clip(first[..., None] - 1 - _PLATEAU + steps, 0, np.maximum(first - 2, 0)[..., None])
    middle = (
        0.5
        * (
            np.median(np.take_along_axis(contrast, inside, -1), axis=-1)
            + np.median(np.take_along_axis(contrast, past, -1), axis=-1)
        )[..., None]
    )
    falls = (contrast[..., :-1] >= middle) & (contrast[..., 1:] < middle)
    distance = np.where(falls, np.abs(np.arange(slices - 1) - first[..., None] + 0.5), np.inf)
    j = np.argmin(distance, axis=-1)[..., None]
    above, beyond = np.take_along_axis(contrast, j, -1), np.take_along_axis(contrast, j + 1, -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing = (j + (above - middle) / (above - beyond))[..., 0]
    end = np.where(falls.any(axis=-1), crossing, first - 0.5)
    return np.asarray(end, dtype=np.float64), np.asarray(state, dtype=np.intp)


def _class_end(ends: FloatArray, states: npt.NDArray[np.intp]) -> float | Status:
    """The median end of one class's layers in one sector, each on each of its rays; or why none:
    most of them run through the volume, or are cut by it."""
    done = ends[states == _OK]
    runs, cut = int(np.sum(states == _RUNS)), int(np.sum(states == _CUT))
    if done.size >= max(_MIN_LAYERS, (done.size + runs + cut + 1) // 2):
        return float(np.median(done))
    return "runs" if runs >= cut else "cut"


def _sectors(rays: FloatArray, roll: int) -> list[_Sector]:
    """Each sector's cathode and anode end from its rays (sector, ray, z, r), the roll at z = 0."""
    layers = _find_layers(rays, roll)
    if layers.peak.size == 0:
        return [_Sector("no layers") for _ in range(rays.shape[0])]
    ends, states = _layer_ends(_contrasts(rays, layers, roll), roll)
    found: list[_Sector] = []
    for j in range(rays.shape[0]):
        mine = layers.sector == j
        if not mine.any():
            found.append(_Sector("no layers"))
            continue
        cathode = _class_end(ends[mine & layers.cathode], states[mine & layers.cathode])
        anode = _class_end(ends[mine & ~layers.cathode], states[mine & ~layers.cathode])
        if isinstance(cathode, float) and isinstance(anode, float):
            found.append(_Sector("ok", cathode, anode, confidence=float(np.mean(states[mine] == _OK))))
        elif cathode == "runs" and anode == "runs":
            found.append(_Sector("runs"))
        else:
            found.append(_Sector("cut"))
    return found


def _null(unit: Unit, reason: str) -> dict[MeasurementName, Measurement]:
    units: dict[MeasurementName, Unit] = {name: unit for name in ENDS_NAMES}
    units["overhang.sectors"] = "count"
    return {name: Measurement.missing(units[name], reason) for name in ENDS_NAMES}


def measure_ends(
    volume: npt.NDArray[Any],
    pixel_mm: float | None,
    slice_mm: float | None,
    *,
    axis: tuple[float, float] | None = None,
    sectors: int = 36,
) -> EndsResult:
    """Cathode and anode end heights and the overhang per angle sector of a volume (z, y, x).

    `axis` is the cell axis (row, col) in px, e.g. the can's centre measured per slice; without it,
    the centre of the can ring in the volume's mean projection. `pixel_mm` only travels to the
    result (the reslices' aspect): heights run along z. `overhang.end_spread_mm` is the cathode ends'
    max - min over the sectors (how level the electrode edges are)."""
    unit: Unit = "mm" if slice_mm else "px"
    scale = float(slice_mm) if slice_mm else 1.0
    data = np.asarray(volume)
    empty = np.zeros((0, 0, 0), dtype=np.float32)

    def missing(reason: str, reslices: FloatArray = empty, centre: tuple[float, float] | None = None) -> EndsResult:
        return EndsResult(
            _null(unit, reason), False, np.asarray(reslices, np.float32), centre, None, pixel_mm, slice_mm
        )

    if data.ndim != 3 or data.shape[0] < MIN_SLICES:
        return missing(f"not a volume of at least {MIN_SLICES} slices")
    if axis is None:
        found = cell_axis(data)
        if found is None:
            return missing("no can ring found to give the cell axis")
        centre, inner = found
    else:
        centre, inner = (float(axis[0]), float(axis[1])), _reach(data.shape, axis, data)
    reach = int(inner - _WALL_MARGIN_PX)
    if reach < 16:
        return missing("the can is too small or cut by the field of view", centre=centre)
    rays = robust_unit(_reslices(data, centre, reach, sectors))
    reslices = rays.mean(axis=1)
    roll = max(3, data.shape[0] // _ROLL_SHARE)
    texture = _layer_texture(reslices)
    roll_first = float(np.median(texture[:roll])) >= float(np.median(texture[-roll:]))
    oriented = rays if roll_first else rays[:, :, ::-1]
    found_sectors = _sectors(oriented, roll)
    measured = [s for s in found_sectors if s.status == "ok"]
    if not measured:
        statuses = [s.status for s in found_sectors]
        return missing(_REASONS[max(set(statuses), key=statuses.count)], reslices, centre)

    last = data.shape[0] - 1

    def height(index: float) -> float:
        return scale * (index if roll_first else last - index)

    rows: list[OverhangSector] = []
    for j, s in enumerate(found_sectors):
        angle = 360.0 * j / sectors
        if s.cathode is None or s.anode is None:
            rows.append(OverhangSector(angle_deg=angle))
            continue
        rows.append(
            OverhangSector(
                angle_deg=angle,
                cathode_end=height(s.cathode),
                anode_end=height(s.anode),
                overhang=scale * (s.anode - s.cathode),
            )
        )
    values = np.array([r.overhang for r in rows if r.overhang is not None])
    angles = [r.angle_deg for r in rows if r.overhang is not None]
    cathode_ends = np.array([r.cathode_end for r in rows if r.cathode_end is not None])
    share = len(measured) / sectors
    caveat = None if unit == "mm" else "no slice spacing: heights in slices"
    if len(measured) < sectors:
        caveat = "; ".join(filter(None, [caveat, f"{len(measured)} of {sectors} sectors measured"]))
    lowest = int(np.argmin(values))

    def value(v: float, **extra: Any) -> Measurement:
        return Measurement(value=float(v), unit=unit, confidence=share, reason=caveat, **extra)

    measurements: dict[MeasurementName, Measurement] = {
        "overhang.min_mm": value(values[lowest], angle_deg=angles[lowest]),
        "overhang.mean_mm": value(values.mean()),
        "overhang.sigma_mm": value(values.std(ddof=1) if values.size > 1 else 0.0),
        "overhang.sectors": Measurement(
            value=float(len(measured)), unit="count", confidence=share, reason=caveat, sectors=tuple(rows)
        ),
        "overhang.end_spread_mm": value(cathode_ends.max() - cathode_ends.min()),
    }
    return EndsResult(
        measurements=measurements,
        negative_overhang=bool(values.min() < 0),
        reslices=np.asarray(reslices, dtype=np.float32),
        axis=centre,
        end_side="last" if roll_first else "first",
        pixel_mm=pixel_mm,
        slice_mm=slice_mm,
    )
