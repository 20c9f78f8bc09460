"""The ideal cross-section: can, jelly-roll spiral, core, mandrel, tabs, as relative attenuation.

The roll is an Archimedean spiral: a pixel's winding coordinate `s = (r - core) / pitch - phi / 2pi`
counts turns from the inner end, its fractional part says where in the cathode / separator / anode /
separator period the pixel lies. The spiral starts at `winding_start` on the core and stops short
of the can, which gives the real cell's one-pitch steps at both ends of the winding.
"""

from __future__ import annotations

import numpy as np

from producers.simulator.geometry import Array, CellCoordinates
from producers.simulator.spec import CellSpec


def turn_count(cell: CellSpec) -> float:
    inner_wall = cell.radius - cell.can_thickness
    return max(1.0, (inner_wall - cell.core_radius) / cell.pitch - cell.outer_gap)


def winding_coordinate(cell: CellSpec, r: Array, theta: Array) -> Array:
    """Turns from the inner end of the winding (negative inside the core, past `turn_count` outside)."""
    rng = np.random.default_rng(cell.detail_seed)
    phase = [float(p) for p in rng.uniform(0, 2 * np.pi, 2)]
    # a slow radial wobble of the turns and a small out-of-roundness growing with the radius
    wavelength = 5.5 * cell.pitch
    wobble = cell.wobble * np.sin(2 * np.pi * r / wavelength + phase[0])
    lobes = 0.25 * cell.wobble * (r / cell.radius) * np.cos(3 * theta + phase[1])
    phi = (theta - cell.winding_start) % (2 * np.pi)
    return np.asarray((r + wobble + lobes - cell.core_radius) / cell.pitch - phi / (2 * np.pi), dtype=np.float32)


def _band(position: Array, centre: Array, half_width: Array, period: float) -> Array:
    """Pixel coverage (0..1) of a periodic band, box-filtered over one pixel against aliasing."""
    distance = np.abs((position - centre + period / 2) % period - period / 2)
    return np.asarray(np.clip(half_width - distance + 0.5, 0.0, 1.0), dtype=np.float32)


def electrode_layers(cell: CellSpec, s: Array) -> tuple[Array, Array]:
    """Coverage of the cathode and the anode at winding coordinate `s`, with per-turn thickness jitter."""
    rng = np.random.default_rng(cell.detail_seed + 1)
    turns = int(turn_count(cell)) + 3
    jitter = (1 + cell.thickness_jitter * rng.standard_normal((2, turns))).astype(np.float32)
    turn = np.clip(np.floor(s), 0, turns - 1).astype(np.intp)
    period = cell.pitch
    position = (s - np.floor(s)) * period
    cathode_half = 0.5 * cell.cathode_fraction * period * jitter[0][turn]
    anode_half = 0.5 * cell.anode_fraction * period * jitter[1][turn]
    cathode = _band(position, np.zeros_like(position), cathode_half, period)
    anode = _band(position, np.full_like(position, period / 2), anode_half, period)
    return cathode, anode


def phantom(cell: CellSpec, coords: CellCoordinates, r: Array | None = None) -> Array:
    """Attenuation map of the cell. `r` replaces the pixels' radius (defects warp it)."""
    m = cell.materials
    radius = coords.r if r is None else r
    theta = coords.theta
    inner_wall = cell.radius - cell.can_thickness
    s = winding_coordinate(cell, radius, theta)
    cathode, anode = electrode_layers(cell, s)
    roll = m.separator + (m.cathode - m.separator) * cathode + (m.anode - m.separator) * anode
    # soft (one-pixel) edges at both ends of the winding and around the core, against jagged steps
    unwound = np.clip((s - turn_count(cell)) * cell.pitch + 0.5, 0.0, 1.0)
    image = roll + (m.separator - roll) * unwound
    hollow = np.clip(np.maximum(cell.core_radius - radius, -s * cell.pitch) + 0.5, 0.0, 1.0)
    image = image + (m.core - image) * hollow
    if cell.mandrel:
        ring = np.clip(1.0 - np.abs(radius - 0.75 * cell.core_radius), 0.0, 1.0)
        image = image + (m.mandrel - image) * ring
    for tab in cell.tabs:
        across = np.abs(np.sin(theta - tab.angle)) * radius
        along = np.cos(theta - tab.angle) > 0
        inside = (radius > tab.inner * cell.radius) & (radius < tab.outer * cell.radius) & along
        cover = np.clip(tab.width_px / 2 - across + 0.5, 0.0, 1.0) * inside
        image = image + (m.tab - image) * cover
    wall = np.clip(radius - inner_wall + 0.5, 0.0, 1.0) * np.clip(cell.radius - radius + 0.5, 0.0, 1.0)
    outside = np.clip(radius - cell.radius + 0.5, 0.0, 1.0)
    holder = m.holder * (radius > 1.08 * cell.radius) * (radius < 1.22 * cell.radius)
    image = image * (1 - wall - outside) + 1.0 * wall + (m.background + holder) * outside
    return np.asarray(image, dtype=np.float32)
