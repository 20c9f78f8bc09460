"""The defects: each one warps the cell's radius (folds, dents, collapse, delamination) or paints a
material (pores, inclusions, cracks, missing electrode), scaled by its severity.

Sizes are in pixels of a 256 px slice and scale with the slice; `SIZES` holds the nominal size of
each defect at each severity, `CONTRAST` how much of the full material change is applied.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from producers.simulator.geometry import Array, CellCoordinates, wrap_angle
from producers.simulator.jellyroll import electrode_layers, turn_count, winding_coordinate
from producers.simulator.spec import CellSpec, DefectSpec, DefectType, Severity

SIZES: dict[DefectType, dict[Severity, float]] = {
    "pore": {"low": 3.6, "medium": 5.6, "high": 9.0},  # radius
    "inclusion": {"low": 1.8, "medium": 2.5, "high": 3.6},  # radius
    "fold": {"low": 1.6, "medium": 2.4, "high": 3.5},  # displacement of the layers
    "crack": {"low": 14.0, "medium": 22.0, "high": 36.0},  # length
    "delamination": {"low": 1.0, "medium": 1.6, "high": 2.4},  # opening of the gap
    "can_dent": {"low": 1.6, "medium": 2.6, "high": 4.0},  # depth
    "core_collapse": {"low": 2.0, "medium": 3.0, "high": 4.2},  # intrusion into the core
    "electrode_gap": {"low": 18.0, "medium": 30.0, "high": 55.0},  # arc length of the missing cathode
}
CONTRAST: dict[Severity, float] = {"low": 0.65, "medium": 0.85, "high": 1.0}


@dataclass(frozen=True)
class Alteration:
    """What a defect does to the ideal cross-section (see `apply`)."""

    radius: Array | None = None  # the radius at which each pixel looks up its material
    weight: Array | None = None  # 0..1 cover of the painted material
    value: float = 0.0  # the painted material's attenuation
    additive: Array | None = None  # added attenuation (streaks)


@dataclass(frozen=True)
class Context:
    cell: CellSpec
    coords: CellCoordinates
    defect: DefectSpec
    px: float  # pixels of this slice per pixel of a 256 px slice
    rng: np.random.Generator

    @property
    def nominal(self) -> float:
        return SIZES[self.defect.type][self.defect.severity] * self.px * self.defect.scale

    @property
    def contrast(self) -> float:
        return CONTRAST[self.defect.severity]

    @property
    def inner_wall(self) -> float:
        return self.cell.radius - self.cell.can_thickness

    def depth_radius(self, depth: float | None = None) -> float:
        """Radius at a fraction of the roll's depth (0 = core, 1 = can)."""
        d = self.defect.depth if depth is None else depth
        return self.cell.core_radius + d * (self.inner_wall - self.cell.core_radius)


def _raised_cosine(offset: Array, half_width: float) -> Array:
    return np.asarray(0.5 * (1 + np.cos(np.pi * np.clip(np.abs(offset) / half_width, 0, 1))), dtype=np.float32)


def _pore(c: Context) -> Alteration:
    radius, angle = c.depth_radius(), c.defect.angle
    radial, tangential = c.coords.local(radius, angle)
    aspect = c.rng.uniform(0.6, 0.95)  # pores stretch along the layers
    a, b = c.nominal * aspect, c.nominal / aspect
    distance = np.hypot(radial / a, tangential / b)
    cover = np.clip((1 - distance) * a + 0.5, 0, 1)
    return Alteration(weight=cover * c.contrast, value=c.cell.materials.core)


def _inclusion(c: Context) -> Alteration:
    radius, angle = c.depth_radius(), c.defect.angle
    radial, tangential = c.coords.local(radius, angle)
    distance = np.hypot(radial, tangential)
    cover = np.clip(c.nominal - distance + 0.5, 0, 1)
    brightness = {"low": 1.0, "medium": 1.5, "high": 2.2}[c.defect.severity]
    # metal starves the projections through it: alternating bright and dark streaks fading with distance
    streaks = np.zeros_like(distance)
    length = 5.0 * c.nominal
    for k in range(1 + ["low", "medium", "high"].index(c.defect.severity)):
        direction = c.rng.uniform(0, np.pi)
        along = radial * math.cos(direction) + tangential * math.sin(direction)
        across = -radial * math.sin(direction) + tangential * math.cos(direction)
        sign = 1.0 if k % 2 == 0 else -1.0
        streaks += sign * 0.12 * c.contrast * np.exp(-np.abs(along) / length - (across / (0.6 * c.px)) ** 2)
    streaks *= distance > c.nominal
    return Alteration(weight=cover, value=brightness, additive=streaks)


def _fold(c: Context) -> Alteration:
    radius, angle = c.depth_radius(), c.defect.angle
    turns = {"low": 3, "medium": 4, "high": 6}[c.defect.severity] * c.cell.pitch
    arc = wrap_angle(c.coords.theta - angle) * radius
    half_arc = c.rng.uniform(6.0, 9.0) * c.px * c.defect.scale
    sign = float(c.rng.choice([-1.0, 1.0]))
    # buckled electrodes kink: a V across a few turns, sharpest at its tip (as in the real im_2)
    kink = np.clip(1 - np.abs(arc) / half_arc, 0, 1) ** 1.5
    shift = sign * c.nominal * kink * _raised_cosine(c.coords.r - radius, turns)
    return Alteration(radius=c.coords.r - shift)


def _crack(c: Context) -> Alteration:
    radius, angle = c.depth_radius(), c.defect.angle
    x0, y0 = radius * math.cos(angle), radius * math.sin(angle)
    heading = angle + float(c.rng.choice([0.0, np.pi])) + c.rng.normal(0, 0.3)  # mostly across the layers
    segments = 7
    step = c.nominal / segments
    width = {"low": 1.4, "medium": 1.7, "high": 2.2}[c.defect.severity] * c.px
    distance = np.full_like(c.coords.r, np.inf)
    for _ in range(segments):
        heading += c.rng.normal(0, 0.2)
        x1, y1 = x0 + step * math.cos(heading), y0 + step * math.sin(heading)
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((c.coords.x - x0) * dx + (c.coords.y - y0) * dy) / (dx * dx + dy * dy), 0, 1)
        distance = np.minimum(distance, np.hypot(c.coords.x - x0 - t * dx, c.coords.y - y0 - t * dy))
        x0, y0 = x1, y1
    cover = np.clip(width / 2 - distance + 0.5, 0, 1)
    return Alteration(weight=cover * c.contrast, value=c.cell.materials.core)


def _delamination(c: Context) -> Alteration:
    cell, angle = c.cell, c.defect.angle
    s = winding_coordinate(cell, c.coords.r, c.coords.theta)
    radius = c.depth_radius()
    s_gap = math.floor((radius - cell.core_radius) / cell.pitch) + 0.75  # between an anode and the next cathode
    arc = wrap_angle(c.coords.theta - angle) * radius
    half_arc = {"low": 12.0, "medium": 20.0, "high": 36.0}[c.defect.severity] * c.px * c.defect.scale
    window = _raised_cosine(arc, half_arc)
    opening = c.nominal / cell.pitch  # in turns
    relax = 3.0  # turns over which the outer layers return to their place
    ramp = np.clip((s - s_gap) / opening, 0, 1) * np.clip(1 - (s - s_gap - opening) / relax, 0, 1)
    gap = (s >= s_gap) & (s <= s_gap + opening) & (window > 0.05)
    shift = c.nominal * window * ramp
    return Alteration(radius=c.coords.r - shift, weight=gap * window * c.contrast, value=cell.materials.core)


def _can_dent(c: Context) -> Alteration:
    cell, angle = c.cell, c.defect.angle
    arc = wrap_angle(c.coords.theta - angle) * cell.radius
    half_arc = {"low": 8.0, "medium": 12.0, "high": 17.0}[c.defect.severity] * c.px * c.defect.scale
    half_arc *= c.rng.uniform(0.85, 1.15)
    depth = c.nominal * _raised_cosine(arc, half_arc)
    reach = 2.5 * cell.pitch  # the outer turns give way under the dent
    inside = np.clip(1 - (c.inner_wall - c.coords.r) / reach, 0, 1)
    outside = np.clip(1 - (c.coords.r - cell.radius - c.nominal) / (3 * c.px), 0, 1)
    return Alteration(radius=c.coords.r + depth * inside * outside)


def _core_collapse(c: Context) -> Alteration:
    cell, angle = c.cell, c.defect.angle
    reach = {"low": 3, "medium": 4, "high": 5}[c.defect.severity] * cell.pitch
    beyond = np.clip(1 - (c.coords.r - cell.core_radius) / reach, 0, 1)
    half_angle = c.rng.uniform(0.3, 0.45) * c.defect.scale
    # the inner turns buckle into the hollow core in one or two lobes
    lobe = np.exp(-((wrap_angle(c.coords.theta - angle) / half_angle) ** 2))
    second_at = angle + float(c.rng.choice([-1.0, 1.0])) * c.rng.uniform(0.7, 1.1)
    second = 0.4 * np.exp(-((wrap_angle(c.coords.theta - second_at) / (0.7 * half_angle)) ** 2))
    return Alteration(radius=c.coords.r + c.nominal * (lobe + second) * beyond)


def _electrode_gap(c: Context) -> Alteration:
    cell, angle = c.cell, c.defect.angle
    s = winding_coordinate(cell, c.coords.r, c.coords.theta)
    turn = np.clip(np.floor((c.depth_radius() - cell.core_radius) / cell.pitch), 0, turn_count(cell) - 1)
    cathode, _ = electrode_layers(cell, s)
    arc = wrap_angle(c.coords.theta - angle) * c.coords.r
    window = np.clip((c.nominal / 2 - np.abs(arc)) / (1.5 * c.px) + 0.5, 0, 1)
    cover = cathode * window * (np.floor(s) == turn)
    # the missing coating leaves electrolyte, darker than the separator's polymer
    gap = 0.5 * (cell.materials.separator + cell.materials.core)
    return Alteration(weight=cover * c.contrast, value=gap)


DEFECTS: dict[DefectType, Callable[[Context], Alteration]] = {
    "pore": _pore,
    "inclusion": _inclusion,
    "fold": _fold,
    "crack": _crack,
    "delamination": _delamination,
    "can_dent": _can_dent,
    "core_collapse": _core_collapse,
    "electrode_gap": _electrode_gap,
}


def alteration(cell: CellSpec, coords: CellCoordinates, defect: DefectSpec, size: int) -> Alteration:
    context = Context(cell, coords, defect, size / 256, np.random.default_rng(defect.seed))
    return DEFECTS[defect.type](context)
