"""Random slice descriptions: the spread of normal cells and scanners, and where defects go.

The ranges come from the real XCT slices in `producers/data/real/` (see docs/SIMULATOR.md): can
radius 0.42-0.43 of the field of view, turn pitch 0.037-0.041 of the can radius (24-27 turns),
hollow core 0.14-0.16 of the radius, can wall 0.016-0.024 of the radius; the ranges are wider than
the real ones so that a detector cannot rely on one cell design.
"""

from __future__ import annotations

import numpy as np

from producers.simulator.spec import (
    CellSpec,
    DefectSpec,
    DefectType,
    ImagingSpec,
    Materials,
    Severity,
    SliceSpec,
    Tab,
)

_SEED_SPACE = 2**63


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(_SEED_SPACE))


def random_materials(rng: np.random.Generator) -> Materials:
    separator = rng.uniform(0.12, 0.26)
    # the dense cathode dominates: one bright band per turn, as in the real slices
    anode = separator + rng.uniform(0.02, 0.1)
    return Materials(
        background=rng.uniform(0.0, 0.06),
        core=rng.uniform(0.02, 0.12),
        separator=separator,
        anode=anode,
        cathode=anode + rng.uniform(0.12, 0.35),
        tab=rng.uniform(0.6, 0.95),
        mandrel=rng.uniform(0.35, 0.6),
        holder=rng.uniform(0.06, 0.16) if rng.random() < 0.4 else 0.0,
    )


def random_cell(rng: np.random.Generator, size: int) -> CellSpec:
    radius = rng.uniform(0.39, 0.45) * size
    tabs = tuple(
        Tab(
            angle=rng.uniform(-np.pi, np.pi),
            inner=(inner := rng.uniform(0.3, 0.85)),
            outer=inner + rng.uniform(0.04, 0.12),
            width_px=rng.uniform(0.8, 1.6) * size / 256,
        )
        for _ in range(rng.choice([0, 1, 1, 2]))
    )
    return CellSpec(
        centre_x=(size - 1) / 2 + rng.uniform(-0.03, 0.03) * size,
        centre_y=(size - 1) / 2 + rng.uniform(-0.03, 0.03) * size,
        radius=radius,
        rotation=rng.uniform(-np.pi, np.pi),
        ellipticity=rng.uniform(0.0, 0.015),
        can_thickness=rng.uniform(0.015, 0.028) * radius,
        core_radius=rng.uniform(0.1, 0.2) * radius,
        mandrel=bool(rng.random() < 0.3),
        pitch=rng.uniform(0.034, 0.044) * radius,
        winding_start=rng.uniform(-np.pi, np.pi),
        outer_gap=rng.uniform(0.2, 1.5),
        cathode_fraction=rng.uniform(0.3, 0.48),
        anode_fraction=rng.uniform(0.25, 0.4),
        thickness_jitter=rng.uniform(0.0, 0.12),
        wobble=rng.uniform(0.0, 0.35) * size / 256,
        tabs=tabs,
        materials=random_materials(rng),
        detail_seed=_seed(rng),
    )


def random_imaging(rng: np.random.Generator) -> ImagingSpec:
    return ImagingSpec(
        blur_sigma=rng.uniform(0.3, 0.75),
        edge_enhancement=rng.uniform(0.0, 0.6),
        cupping=rng.uniform(0.0, 0.15),
        ring_count=int(rng.integers(0, 7)),
        ring_amplitude=rng.uniform(0.005, 0.025),
        streak_count=int(rng.integers(0, 4)),
        streak_amplitude=rng.uniform(0.004, 0.02),
        noise_sigma=rng.uniform(0.003, 0.012),
        shot_noise=rng.uniform(0.0, 0.02),
        # one scanner in four is set so that the can saturates, as in the real 16-bit slices
        gain=rng.uniform(1.0, 1.5) if rng.random() < 0.25 else rng.uniform(0.55, 1.0),
        offset=rng.uniform(0.0, 0.08),
        gamma=rng.uniform(0.85, 1.15),
        drift_x=rng.uniform(-0.05, 0.05),
        drift_y=rng.uniform(-0.05, 0.05),
        seed=_seed(rng),
    )


# where in the roll's depth (0 = core, 1 = can) each kind of defect occurs
_DEPTHS: dict[DefectType, tuple[float, float]] = {
    "pore": (0.15, 0.9),
    "inclusion": (0.1, 0.9),
    "fold": (0.15, 0.75),
    "crack": (0.2, 0.8),
    "delamination": (0.2, 0.8),
    "can_dent": (1.0, 1.0),
    "core_collapse": (0.0, 0.0),
    "electrode_gap": (0.15, 0.9),
}


def random_defect(rng: np.random.Generator, defect_type: DefectType, severity: Severity) -> DefectSpec:
    low, high = _DEPTHS[defect_type]
    return DefectSpec(
        type=defect_type,
        severity=severity,
        depth=rng.uniform(low, high),
        angle=rng.uniform(-np.pi, np.pi),
        scale=rng.uniform(0.85, 1.15),
        seed=_seed(rng),
    )


def random_spec(
    rng: np.random.Generator,
    size: int = 256,
    defect_type: DefectType | None = None,
    severity: Severity = "medium",
) -> SliceSpec:
    """A random normal slice, or one with the given defect. Draws a fixed amount from `rng` per call."""
    seed = _seed(rng)
    own = np.random.default_rng(seed)
    cell, imaging = random_cell(own, size), random_imaging(own)
    defect = random_defect(own, defect_type, severity) if defect_type is not None else None
    return SliceSpec(size=size, cell=cell, imaging=imaging, defect=defect, seed=seed)


def slice_rng(master_seed: int, stream: int, index: int) -> np.random.Generator:
    """The generator of slice `index` of one stream (0 normal, 1 defect) of a dataset: independent of
    every other slice, so slice k can be made alone and more normal slices leave the defects as they were."""
    return np.random.default_rng(np.random.SeedSequence(entropy=master_seed, spawn_key=(stream, index)))
