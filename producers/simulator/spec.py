"""The description of one simulated slice: cell geometry, imaging conditions and an optional defect.

A `SliceSpec` fully determines the pixels: `render_slice(spec)` is a pure function of it, so a slice
can be re-rendered alone, stored next to its image, or compared field by field.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DefectType = Literal["pore", "inclusion", "fold", "crack", "delamination", "can_dent", "core_collapse", "electrode_gap"]
Severity = Literal["low", "medium", "high"]

DEFECT_TYPES: tuple[DefectType, ...] = (
    "pore",
    "inclusion",
    "fold",
    "crack",
    "delamination",
    "can_dent",
    "core_collapse",
    "electrode_gap",
)
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Materials(_Frozen):
    """Relative attenuation of each material; the steel can is 1."""

    background: float = 0.02
    core: float = 0.05
    separator: float = 0.16
    anode: float = 0.27
    cathode: float = 0.42
    tab: float = 0.8
    mandrel: float = 0.5
    holder: float = 0.0


class Tab(_Frozen):
    """A current-collector tab: a bright radial strip between two radii (fractions of the can radius)."""

    angle: float
    inner: float
    outer: float
    width_px: float


class CellSpec(_Frozen):
    """Geometry of the cell in the slice. Lengths in pixels of the slice unless named as fractions."""

    centre_x: float
    centre_y: float
    radius: float = Field(gt=0, description="outer radius of the can, px")
    rotation: float = 0.0
    ellipticity: float = Field(0.0, ge=0, lt=0.2)
    can_thickness: float = Field(gt=0, description="px")
    core_radius: float = Field(gt=0, description="radius of the hollow core, px")
    mandrel: bool = False
    pitch: float = Field(gt=0, description="radial distance between turns of the jelly roll, px")
    winding_start: float = 0.0
    outer_gap: float = Field(0.5, ge=0, description="free space between the last turn and the can, in pitches")
    cathode_fraction: float = Field(0.34, gt=0, lt=0.5)
    anode_fraction: float = Field(0.34, gt=0, lt=0.5)
    thickness_jitter: float = Field(0.0, ge=0, lt=0.3, description="relative per-turn layer-thickness jitter")
    wobble: float = Field(0.0, ge=0, description="amplitude of the slow radial wobble of the turns, px")
    tabs: tuple[Tab, ...] = ()
    materials: Materials = Materials()
    detail_seed: int = Field(0, ge=0, description="seeds the fine per-turn jitter")


class ImagingSpec(_Frozen):
    """What the CT machine and its reconstruction add to the ideal cross-section."""

    blur_sigma: float = Field(0.6, ge=0, description="Gaussian PSF, px")
    edge_enhancement: float = Field(0.0, ge=0, description="unsharp overshoot at edges (dark halo outside the can)")
    cupping: float = Field(0.0, ge=0, lt=0.5, description="beam-hardening dip at the centre, fraction")
    ring_count: int = Field(0, ge=0)
    ring_amplitude: float = Field(0.0, ge=0)
    streak_count: int = Field(0, ge=0)
    streak_amplitude: float = Field(0.0, ge=0)
    noise_sigma: float = Field(0.01, ge=0, description="signal-independent noise, in can units")
    shot_noise: float = Field(0.0, ge=0, description="signal-dependent noise: std = shot_noise * sqrt(value)")
    gain: float = Field(0.8, gt=0, description="output full scale per can unit (1 = the can at 65535)")
    offset: float = Field(0.0, description="output offset, fraction of full scale")
    gamma: float = Field(1.0, gt=0)
    drift_x: float = Field(0.0, description="gain drift across the image, fraction per image width")
    drift_y: float = 0.0
    seed: int = Field(0, ge=0, description="seeds the noise, rings and streaks")


class DefectSpec(_Frozen):
    """One defect. Position in the cell frame: a radius (fraction of the jelly roll's depth,
    0 = core, 1 = can) and an angle; `scale` jitters its size around the severity's nominal."""

    type: DefectType
    severity: Severity
    depth: float = Field(0.5, ge=0, le=1)
    angle: float = 0.0
    scale: float = Field(1.0, gt=0)
    seed: int = Field(0, ge=0)


class SliceSpec(_Frozen):
    size: int = Field(256, ge=32, le=4096)
    cell: CellSpec
    imaging: ImagingSpec
    defect: DefectSpec | None = None
    seed: int = Field(0, ge=0, description="the slice's own seed (derived from the dataset seed and index)")
