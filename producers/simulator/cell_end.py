"""A small CT volume of a cylindrical cell's top end: can, wound roll, electrode ends, cap.

Slice `k` lies at height `k * slice_mm` above the volume's first slice; the roll fills the bottom,
the cap the top. Each cathode turn ends at `hc(theta)` plus its own jitter and each anode turn at
`ha(theta) = hc(theta) + overhang(theta)` plus its jitter (the anode is the wider electrode); the
separator runs `separator_margin_mm` past the longer of the two. A negative overhang is the defect
where, over an angle range, the cathode reaches past the anode. Angles are degrees from the column
axis towards the row axis, as `model_core.metrology` reports them.

    volume, truth = render_cell_end(random_cell_end_spec(rng, negative=True))
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage

from producers.simulator.spec import Materials

Array = npt.NDArray[np.float32]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NegativeOverhang(_Frozen):
    """Over `width_deg` around `angle_deg` (a raised-cosine bump) the overhang falls to `overhang_mm` (< 0)."""

    angle_deg: float
    width_deg: float = Field(60.0, gt=0, le=180)
    overhang_mm: float = Field(-0.3, lt=0)


class CellEndSpec(_Frozen):
    """Geometry (mm), imaging and seed of one cell-end volume. `sectors` is the truth's angle grid."""

    size: int = Field(160, ge=48, le=1024, description="px per side of a slice")
    slices: int = Field(64, ge=16, le=1024)
    pixel_mm: float = Field(0.04, gt=0)
    slice_mm: float = Field(0.08, gt=0)
    centre_offset_px: tuple[float, float] = (0.0, 0.0)
    can_radius_mm: float = Field(3.0, gt=0)
    can_wall_mm: float = Field(0.2, gt=0)
    core_radius_mm: float = Field(0.5, gt=0)
    pitch_mm: float = Field(0.42, gt=0, description="radial distance between turns")
    cathode_fraction: float = Field(0.34, gt=0, lt=0.5)
    anode_fraction: float = Field(0.34, gt=0, lt=0.5)
    foil_mm: float = Field(0.012, ge=0, description="the anode's copper foil, in the middle of its band")
    foil_attenuation: float = Field(1.2, ge=0, description="copper, can = 1")
    winding_start: float = 0.0
    cathode_end_mm: float = Field(2.2, gt=0, description="nominal cathode end height")
    end_variation_mm: float = Field(0.1, ge=0, description="amplitude of the slow variation of hc with angle")
    overhang_mm: float = Field(1.0, description="nominal anode overhang")
    overhang_variation_mm: float = Field(0.1, ge=0, description="amplitude of its slow variation with angle")
    layer_jitter_mm: float = Field(0.03, ge=0, description="std of each turn's own end offset")
    negative: NegativeOverhang | None = None
    separator_margin_mm: float = Field(0.25, ge=0)
    cap_gap_mm: float = Field(0.35, ge=0, description="from the separator's end to the cap plate")
    cap_thickness_mm: float = Field(0.3, gt=0)
    tilt_deg: float = Field(0.0, ge=0, le=3, description="shear of the cell axis against the volume's z")
    tilt_direction_deg: float = 0.0
    blur_sigma_px: float = Field(0.7, ge=0)
    noise_sigma: float = Field(0.012, ge=0, description="in can units")
    gain: float = Field(0.8, gt=0, description="output full scale per can unit")
    materials: Materials = Materials()
    sectors: int = Field(36, ge=4, le=360)
    seed: int = Field(0, ge=0)


class SectorTruth(_Frozen):
    """At the sector's centre angle: the median over turns of the electrode end heights (mm)."""

    angle_deg: float
    cathode_end_mm: float
    anode_end_mm: float
    overhang_mm: float


class CellEndTruth(_Frozen):
    sectors: tuple[SectorTruth, ...]
    negative_overhang: bool
    min_overhang_mm: float
    centre_px: tuple[float, float] = Field(description="(row, col) of the axis at the middle slice")


def _turn_count(spec: CellEndSpec) -> int:
    winding = spec.can_radius_mm - spec.can_wall_mm - spec.core_radius_mm
    return max(1, int(winding / spec.pitch_mm - 0.5))


class _Ends:
    """The end heights as functions of angle (radians) and turn: the smooth part and each turn's jitter."""

    def __init__(self, spec: CellEndSpec) -> None:
        rng = np.random.default_rng(spec.seed)
        self.spec = spec
        self.phase = rng.uniform(0, 2 * np.pi, 2)
        turns = _turn_count(spec) + 2
        self.jitter = spec.layer_jitter_mm * rng.standard_normal((2, turns))

    def overhang(self, theta: npt.ArrayLike) -> npt.NDArray[np.float64]:
        spec, t = self.spec, np.asarray(theta, dtype=np.float64)
        nominal = spec.overhang_mm + spec.overhang_variation_mm * np.cos(2 * t - self.phase[1])
        if spec.negative is None:
            return np.asarray(nominal)
        bump = self._bump(t, spec.negative)
        return np.asarray(nominal * (1 - bump) + spec.negative.overhang_mm * bump)

    def anode(self, theta: npt.ArrayLike) -> npt.NDArray[np.float64]:
        spec, t = self.spec, np.asarray(theta, dtype=np.float64)
        cathode = spec.cathode_end_mm + spec.end_variation_mm * np.cos(t - self.phase[0])
        nominal = spec.overhang_mm + spec.overhang_variation_mm * np.cos(2 * t - self.phase[1])
        return np.asarray(cathode + nominal)

    def cathode(self, theta: npt.ArrayLike) -> npt.NDArray[np.float64]:
        # the defect moves the cathode's end past the anode's; the anode stays where it was
        return np.asarray(self.anode(theta) - self.overhang(theta))

    @staticmethod
    def _bump(theta: npt.NDArray[np.float64], negative: NegativeOverhang) -> npt.NDArray[np.float64]:
        offset = (theta - math.radians(negative.angle_deg) + np.pi) % (2 * np.pi) - np.pi
        half = math.radians(negative.width_deg) / 2
        return np.asarray(np.where(np.abs(offset) < half, 0.5 * (1 + np.cos(np.pi * offset / half)), 0.0))


def _band(position: Array, centre: float, half_width: float, period: float) -> Array:
    """In-plane coverage (0..1) of a periodic band: its overlap with a one-pixel box, so a band
    thinner than a pixel (the copper foil) keeps its area."""
    offset = (position - centre + period / 2) % period - period / 2
    overlap = np.minimum(0.5 + offset, half_width) + np.minimum(0.5 - offset, half_width)
    return np.asarray(np.clip(overlap, 0.0, 1.0), dtype=np.float32)


def _below(height: Array | float, z: float, slice_mm: float) -> Array:
    """Coverage along z of a layer that ends at `height`, for the slice centred at `z`."""
    return np.asarray(np.clip((np.asarray(height) - z) / slice_mm + 0.5, 0.0, 1.0), dtype=np.float32)


def _centre(spec: CellEndSpec, z_mm: float) -> tuple[float, float]:
    """(row, col) of the cell axis in the slice at height `z_mm` (the tilt shears it along z)."""
    middle = (spec.slices - 1) / 2 * spec.slice_mm
    shift = math.tan(math.radians(spec.tilt_deg)) * (z_mm - middle) / spec.pixel_mm
    direction = math.radians(spec.tilt_direction_deg)
    half = (spec.size - 1) / 2
    return (
        half + spec.centre_offset_px[0] + shift * math.sin(direction),
        half + spec.centre_offset_px[1] + shift * math.cos(direction),
    )


class _Plane:
    """What does not change along z, in the frame of the middle slice: the bands and their end heights."""

    def __init__(self, spec: CellEndSpec, ends: _Ends) -> None:
        px = spec.pixel_mm
        self.centre = _centre(spec, (spec.slices - 1) / 2 * spec.slice_mm)
        rows, cols = np.mgrid[0 : spec.size, 0 : spec.size].astype(np.float32)
        d_row, d_col = rows - np.float32(self.centre[0]), cols - np.float32(self.centre[1])
        r, theta = np.hypot(d_row, d_col), np.arctan2(d_row, d_col)
        pitch, core = spec.pitch_mm / px, spec.core_radius_mm / px
        phi = (theta - spec.winding_start) % (2 * np.pi)
        s = (r - core) / pitch - phi / (2 * np.pi)
        turns = _turn_count(spec)
        # a cathode band is centred on a whole turn count, an anode band half a turn further
        cathode_turn = np.clip(np.round(s), 0, turns + 1).astype(np.intp)
        anode_turn = np.clip(np.floor(s), 0, turns + 1).astype(np.intp)
        position = (s - np.floor(s)) * pitch
        # the winding's coverage in r: from the core out to its last turn, one-pixel soft edges
        wound = np.clip(s * pitch + 0.5, 0.0, 1.0) * np.clip((turns - s) * pitch + 0.5, 0.0, 1.0)
        self.cathode = wound * _band(position, 0.0, 0.5 * spec.cathode_fraction * pitch, pitch)
        self.anode = wound * _band(position, pitch / 2, 0.5 * spec.anode_fraction * pitch, pitch)
        self.foil = wound * _band(position, pitch / 2, 0.5 * spec.foil_mm / px, pitch)
        self.separator = wound - self.cathode - self.anode
        # the graphite coating is what keeps the anode band's mean at the 2-D slices' anode value
        band, foil, m = (
            spec.anode_fraction * spec.pitch_mm,
            min(spec.foil_mm, 0.5 * spec.anode_fraction * spec.pitch_mm),
            spec.materials,
        )
        self.coating = (m.anode * band - spec.foil_attenuation * foil) / (band - foil)
        self.hc = np.asarray(ends.cathode(theta) + ends.jitter[0][cathode_turn], dtype=np.float32)
        self.ha = np.asarray(ends.anode(theta) + ends.jitter[1][anode_turn], dtype=np.float32)
        self.hs = np.maximum(self.hc, self.ha) + np.float32(spec.separator_margin_mm)
        self.cap_low = float(np.max(self.hs[wound > 0])) + spec.cap_gap_mm
        inner_wall, outer_wall = (spec.can_radius_mm - spec.can_wall_mm) / px, spec.can_radius_mm / px
        self.inside = np.clip(inner_wall - r + 0.5, 0.0, 1.0)
        self.wall = np.clip(r - inner_wall + 0.5, 0.0, 1.0) * np.clip(outer_wall - r + 0.5, 0.0, 1.0)
        self.outside = np.clip(r - outer_wall + 0.5, 0.0, 1.0)


def _slice(spec: CellEndSpec, plane: _Plane, z_mm: float) -> Array:
    m, dz = spec.materials, spec.slice_mm
    void = m.core
    image = (
        void
        + (m.separator - void) * plane.separator * _below(plane.hs, z_mm, dz)
        + (m.cathode - void) * plane.cathode * _below(plane.hc, z_mm, dz)
        + ((plane.coating - void) * plane.anode + (spec.foil_attenuation - plane.coating) * plane.foil)
        * _below(plane.ha, z_mm, dz)
    )
    cap = float(_below(plane.cap_low + spec.cap_thickness_mm, z_mm, dz)) * (1 - float(_below(plane.cap_low, z_mm, dz)))
    image = image + (m.tab - image) * (cap * plane.inside)
    image = image * (1 - plane.wall - plane.outside) + plane.wall + m.background * plane.outside
    if spec.tilt_deg == 0:
        return np.asarray(image, dtype=np.float32)
    row, col = _centre(spec, z_mm)
    shift = np.array([[1, 0, col - plane.centre[1]], [0, 1, row - plane.centre[0]]], dtype=np.float32)
    moved = cv2.warpAffine(
        image.astype(np.float32), shift, (spec.size, spec.size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return np.asarray(moved, dtype=np.float32)


def _truth(spec: CellEndSpec, ends: _Ends) -> CellEndTruth:
    turns = _turn_count(spec)
    cathodes, anodes = np.arange(turns + 1), np.arange(turns)
    rows = []
    for j in range(spec.sectors):
        angle = 360.0 * j / spec.sectors
        theta = math.radians(angle)
        cathode = float(np.median(ends.cathode(theta) + ends.jitter[0][cathodes]))
        anode = float(np.median(ends.anode(theta) + ends.jitter[1][anodes]))
        rows.append(
            SectorTruth(angle_deg=angle, cathode_end_mm=cathode, anode_end_mm=anode, overhang_mm=anode - cathode)
        )
    fine = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    lowest = float(np.min(ends.overhang(fine)))
    return CellEndTruth(
        sectors=tuple(rows),
        negative_overhang=lowest < 0,
        min_overhang_mm=lowest,
        centre_px=_centre(spec, (spec.slices - 1) / 2 * spec.slice_mm),
    )


def render_cell_end(spec: CellEndSpec) -> tuple[npt.NDArray[np.uint16], CellEndTruth]:
    """The volume (z, y, x) as uint16 and its true end heights per sector."""
    ends = _Ends(spec)
    plane = _Plane(spec, ends)
    ideal = np.stack([_slice(spec, plane, k * spec.slice_mm) for k in range(spec.slices)])
    if spec.blur_sigma_px > 0:
        ideal = ndimage.gaussian_filter(ideal, spec.blur_sigma_px)
    rng = np.random.default_rng(spec.seed + 1)
    noisy = ideal + spec.noise_sigma * rng.standard_normal(ideal.shape, dtype=np.float32)
    level = np.clip(spec.gain * np.clip(noisy, 0, None), 0, 1)
    return np.asarray(np.round(level * 65535), dtype=np.uint16), _truth(spec, ends)


def random_cell_end_spec(rng: np.random.Generator, *, negative: bool, **overrides: object) -> CellEndSpec:
    """A varied cell end: overhang 0.5-1.5 mm, its variations, jitter, a slight tilt and offset;
    with `negative`, a local negative overhang (-0.2 to -0.6 mm over 40-90 degrees)."""
    fields: dict[str, object] = {
        "cathode_end_mm": float(rng.uniform(1.8, 2.2)),
        "overhang_mm": float(rng.uniform(0.5, 1.5)),
        "overhang_variation_mm": float(rng.uniform(0.0, 0.15)),
        "end_variation_mm": float(rng.uniform(0.0, 0.15)),
        "layer_jitter_mm": float(rng.uniform(0.0, 0.05)),
        "winding_start": float(rng.uniform(0, 2 * np.pi)),
        "centre_offset_px": (float(rng.uniform(-3, 3)), float(rng.uniform(-3, 3))),
        "tilt_deg": float(rng.uniform(0, 0.5)),
        "tilt_direction_deg": float(rng.uniform(0, 360)),
        "noise_sigma": float(rng.uniform(0.008, 0.02)),
        "seed": int(rng.integers(0, 2**31)),
    }
    if negative:
        fields["negative"] = NegativeOverhang(
            angle_deg=float(rng.uniform(0, 360)),
            width_deg=float(rng.uniform(40, 90)),
            overhang_mm=float(rng.uniform(-0.6, -0.2)),
        )
    fields.update(overrides)
    return CellEndSpec.model_validate(fields)
