"""The measurement of a slice or a volume for the families a recipe asks for."""

from __future__ import annotations

import numpy as np
import pytest

from model_core.metrology.can import CanResult
from model_core.metrology.measure import NO_END_IN_A_SLICE, body_only, measure_slice, measure_volume
from producers.simulator.cell_end import CellEndSpec, CellEndTruth, render_cell_end
from schemas.measurements import Measurement


@pytest.fixture(scope="module")
def cell_end() -> tuple[np.ndarray, CellEndTruth]:
    return render_cell_end(CellEndSpec(slices=48, seed=3))  # a 6 mm can at 0.04 mm, its top end


def test_only_the_families_asked_for_are_measured(cell_end: tuple[np.ndarray, CellEndTruth]) -> None:
    volume, _ = cell_end
    roll_slice = volume[-1]  # the roll, below the cell's end
    can_only = measure_slice(roll_slice, 0.04, frozenset({"can"}))
    assert set(can_only.measurements) == {name for name in can_only.measurements if name.startswith("can.")}
    assert can_only.roll is None and can_only.measurements["can.outer_diameter_mm"].value is not None
    roll_only = measure_slice(roll_slice, 0.04, frozenset({"roll"}))
    assert {name.split(".")[0] for name in roll_only.measurements} == {"roll"}
    assert roll_only.can is not None  # measured for its axis, not reported
    overhang = measure_slice(roll_slice, 0.04, frozenset({"overhang"})).measurements
    assert overhang["overhang.min_mm"].value is None and overhang["overhang.min_mm"].reason == NO_END_IN_A_SLICE
    assert measure_slice(roll_slice, 0.04, frozenset()).measurements == {}


def test_a_volume_gets_its_can_along_z_and_the_overhang_at_its_end(cell_end: tuple[np.ndarray, CellEndTruth]) -> None:
    volume, truth = cell_end
    measured = measure_volume(volume, 0.04, 0.08, frozenset({"can", "overhang"}))
    diameter = measured.measurements["can.outer_diameter_mm"]
    assert diameter.value == pytest.approx(6.0, abs=0.1) and diameter.along_z is not None
    overhang = measured.measurements["overhang.mean_mm"]
    true_mean = sum(s.overhang_mm for s in truth.sectors) / len(truth.sectors)
    assert overhang.value == pytest.approx(true_mean, abs=0.1)
    assert measured.ends is not None and not measured.ends.negative_overhang


def _can(outer: float, inner: float) -> CanResult:
    return CanResult(
        {
            "can.outer_diameter_mm": Measurement(value=outer, unit="mm"),
            "can.inner_diameter_mm": Measurement(value=inner, unit="mm"),
        }
    )


def test_slices_whose_can_is_not_the_body_are_left_out_in_place() -> None:
    cans = [_can(21.2, 20.7), _can(21.25, 20.75), _can(17.0, 16.5), _can(21.22, 18.1), _can(21.21, 20.72)]
    kept = body_only(cans)
    assert len(kept) == 5
    assert [c.measurements["can.outer_diameter_mm"].value for c in kept] == [21.2, 21.25, None, None, 21.21]
    reason = kept[3].measurements["can.outer_diameter_mm"].reason
    assert reason is not None and "inner diameter" in reason and "off the volume's median" in reason
