"""Measure a slice or a volume for the families a recipe asks for: the can first (its ellipse is
the cell axis the roll and the ends are measured about), then the roll, then the ends.

A family that was not asked for is not measured (measuring is budgeted in the stream). A single
slice has no cell end, so `overhang.*` is null with that reason on slices.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from model_core.metrology.can import CanResult, can_along_z, measure_can
from model_core.metrology.ends import EndsResult, measure_ends
from model_core.metrology.roll import RollResult, measure_roll
from schemas.measurements import (
    FAMILIES,
    Family,
    Measurement,
    MeasurementName,
    Measurements,
    Unit,
    names_of,
)

EVERY_FAMILY: frozenset[Family] = frozenset(FAMILIES)
NO_END_IN_A_SLICE = "a single slice has no cell end: the overhang is measured on volumes"
ROLL_SLICES = 5  # roll slices of a volume whose winding is measured (spread over its roll region)
# A slice whose can differs in diameter from the volume's median by more than this is not the can's
# body (the crimp and the cap at an end): the body's can values leave it out.
BODY_DIAMETER_TOLERANCE = 0.02


@dataclass(frozen=True)
class SliceMeasurements:
    measurements: Measurements
    can: CanResult | None = None
    roll: RollResult | None = None


@dataclass(frozen=True)
class VolumeMeasurements:
    measurements: Measurements
    cans: tuple[CanResult, ...] = ()
    roll: RollResult | None = None
    ends: EndsResult | None = None


def _length_unit(pixel_mm: float | None) -> Unit:
    return "mm" if pixel_mm is not None else "px"


def _overhang_missing(pixel_mm: float | None, reason: str) -> Measurements:
    return {
        name: Measurement.missing("count" if name == "overhang.sectors" else _length_unit(pixel_mm), reason)
        for name in names_of("overhang")
    }


def measure_slice(
    image: np.ndarray, pixel_mm: float | None, families: frozenset[Family] = EVERY_FAMILY
) -> SliceMeasurements:
    """`families` of one axial slice (2-D, any dtype)."""
    can = measure_can(image, pixel_mm) if families & {"can", "roll"} else None
    roll = None
    if "roll" in families:
        fit = can.fit if can is not None else None
        axis = (fit.centre_row, fit.centre_col) if fit is not None else None
        roll = measure_roll(image, pixel_mm, axis=axis, can_inner_radius_px=fit.inner_radius_px if fit else None)
    measurements: Measurements = {}
    if can is not None and "can" in families:
        measurements |= can.measurements
    if roll is not None:
        measurements |= roll.measurements
    if "overhang" in families:
        measurements |= _overhang_missing(pixel_mm, NO_END_IN_A_SLICE)
    return SliceMeasurements(measurements, can, roll)


def _axis(cans: Sequence[CanResult]) -> tuple[float, float] | None:
    fits = [c.fit for c in cans if c.fit is not None]
    if not fits:
        return None
    return statistics.median(f.centre_row for f in fits), statistics.median(f.centre_col for f in fits)


def measure_volume(
    volume: np.ndarray,
    pixel_mm: float | None,
    slice_mm: float | None,
    families: frozenset[Family] = EVERY_FAMILY,
) -> VolumeMeasurements:
    """`families` of a volume (z, y, x; z along the cell axis). The can of every slice (its values
    over z: median, min and max), the winding of a few slices where the can holds a roll, and the
    ends about the axis of the slices' cans."""
    cans = body_only(tuple(measure_can(volume[z], pixel_mm) for z in range(volume.shape[0]))) if families else ()
    measurements: Measurements = {}
    if "can" in families:
        measurements |= can_along_z(cans)
    roll = None
    if "roll" in families:
        roll = _volume_roll(volume, cans, pixel_mm)
        measurements |= roll.measurements
    ends = None
    if "overhang" in families:
        ends = measure_ends(volume, pixel_mm, slice_mm, axis=_axis(cans))
        measurements |= ends.measurements
    return VolumeMeasurements(measurements, cans, roll, ends)


def body_only(cans: Sequence[CanResult]) -> tuple[CanResult, ...]:
    """The slices' cans, those that are not the can's body (an outer or inner diameter off the
    volume's median: the crimp, the cap and its gasket at an end) replaced by a null result that
    says so, so a slice keeps its index along z."""
    names: tuple[MeasurementName, ...] = ("can.outer_diameter_mm", "can.inner_diameter_mm")
    medians: dict[MeasurementName, float] = {}
    for name in names:
        values = [v for c in cans if (v := c.measurements[name].value) is not None]
        if values:
            medians[name] = statistics.median(values)
    kept = []
    for can in cans:
        for name, median in medians.items():
            value = can.measurements[name].value
            if value is not None and abs(value - median) > BODY_DIAMETER_TOLERANCE * median:
                which = name.removeprefix("can.").removesuffix("_mm").replace("_", " ")
                reason = f"not the can's body: its {which} is {value / median - 1:+.1%} off the volume's median"
                can = CanResult({n: Measurement.missing(m.unit, reason) for n, m in can.measurements.items()})
                break
        kept.append(can)
    return tuple(kept)


def _volume_roll(volume: np.ndarray, cans: Sequence[CanResult], pixel_mm: float | None) -> RollResult:
    """The winding of the roll slice with the clearest trace among a few spread over the slices
    whose can was found (the end regions are not a roll; the winding's confidence tells)."""
    with_can = [z for z, c in enumerate(cans) if c.fit is not None] or list(range(volume.shape[0]))
    picks = sorted({with_can[int(i)] for i in np.linspace(0, len(with_can) - 1, ROLL_SLICES)})
    best: RollResult | None = None
    for z in picks:
        fit = cans[z].fit
        axis = (fit.centre_row, fit.centre_col) if fit is not None else None
        result = measure_roll(volume[z], pixel_mm, axis=axis, can_inner_radius_px=fit.inner_radius_px if fit else None)
        if best is None or _confidence(result) > _confidence(best):
            best = result
    assert best is not None
    return best


def _confidence(result: RollResult) -> float:
    turns = result.measurements.get("roll.turns")
    return (turns.confidence or 0.0) if turns is not None and turns.value is not None else -1.0
