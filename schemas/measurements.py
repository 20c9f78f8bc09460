"""Measurements of a cell, as verdicts, the `measure` command and recipes name them.

The names are a contract (dashboards, recipes and downstream systems use them): `MEASUREMENT_NAMES`.
A name ends in `_mm` even when a scan has no pixel size: its `unit` then says `px`, and nothing is
judged against a recipe. A value the data cannot support is `null` with a `reason`.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

MeasurementName = Literal[
    "can.outer_diameter_mm",
    "can.inner_diameter_mm",
    "can.wall_mean_mm",
    "can.wall_min_mm",
    "can.wall_max_mm",
    "can.wall_3sigma_mm",
    "can.eccentricity",
    "can.max_dent_mm",
    "can.max_dent_angle_deg",
    "roll.core_diameter_mm",
    "roll.core_offset_mm",
    "roll.gap_mm",
    "roll.turns",
    "roll.layer_max_deviation_mm",
    "overhang.min_mm",
    "overhang.mean_mm",
    "overhang.sigma_mm",
    "overhang.sectors",
    "overhang.end_spread_mm",
]
MEASUREMENT_NAMES: tuple[MeasurementName, ...] = get_args(MeasurementName)

Family = Literal["can", "roll", "overhang"]
FAMILIES: tuple[Family, ...] = get_args(Family)

Unit = Literal["mm", "px", "deg", "ratio", "count"]


def names_of(family: Family) -> tuple[MeasurementName, ...]:
    """The measurement names of one family, in contract order."""
    return tuple(name for name in MEASUREMENT_NAMES if name.startswith(f"{family}."))


def family_of(name: MeasurementName) -> Family:
    for family in FAMILIES:
        if name.startswith(f"{family}."):
            return family
    raise ValueError(f"{name!r} belongs to no measurement family")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AlongZ(_Frozen):
    """A per-slice measurement over a volume's slices: its smallest and largest value and where."""

    min: float
    max: float
    min_slice: int = Field(ge=0)
    max_slice: int = Field(ge=0)


class LayerDeviation(_Frozen):
    """One turn of the winding against the ideal Archimedean spiral fitted to all of them."""

    layer: int = Field(ge=1, description="1 is the innermost turn")
    max_abs: float = Field(ge=0, description="largest radial deviation, in the measurement's unit")
    angle_deg: float = Field(description="where on the turn, degrees from the image's column axis")


class OverhangSector(_Frozen):
    """One angle sector of a cell end: where the cathode and the anode end along the cell axis, and
    how far the anode extends past the cathode (negative: the cathode is longer, a defect)."""

    angle_deg: float
    cathode_end: float | None = None
    anode_end: float | None = None
    overhang: float | None = None


class Measurement(_Frozen):
    """One measured value with its unit and confidence (0-1), or `value: null` and the reason."""

    value: float | None = None
    unit: Unit
    confidence: float | None = Field(None, ge=0, le=1)
    reason: str | None = Field(None, max_length=500, description="why the value is null, or a caveat")
    angle_deg: float | None = Field(None, description="where on the circumference the value is (a dent, a sector)")
    along_z: AlongZ | None = Field(None, description="for a volume: the per-slice extremes")
    layers: tuple[LayerDeviation, ...] | None = Field(None, description="roll.layer_max_deviation_mm, innermost first")
    sectors: tuple[OverhangSector, ...] | None = Field(None, description="overhang.sectors, by angle")

    @classmethod
    def missing(cls, unit: Unit, reason: str) -> Measurement:
        return cls(value=None, unit=unit, reason=reason)


Measurements = dict[MeasurementName, Measurement]
