"""Cell ends: end heights and overhang per sector on simulated volumes whose true ends are known,
the defect found where it is, nulls where the data cannot say, and the real 100-slice cell end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import tifffile

from model_core.metrology.ends import ENDS_NAMES, EndsResult, measure_ends
from producers.simulator.cell_end import (
    CellEndSpec,
    CellEndTruth,
    NegativeOverhang,
    random_cell_end_spec,
    render_cell_end,
)
from schemas.measurements import OverhangSector

TOLERANCE_MM = 0.1  # the acceptance, per sector
REAL_PIXEL_MM, REAL_SLICE_MM = 0.03397, 0.06794

Rendered = tuple[CellEndSpec, npt.NDArray[np.uint16], CellEndTruth]


def _measure(spec: CellEndSpec, volume: npt.NDArray[np.generic], **kwargs: object) -> EndsResult:
    return measure_ends(volume, spec.pixel_mm, spec.slice_mm, **kwargs)  # type: ignore[arg-type]


def _sectors(result: EndsResult) -> tuple[OverhangSector, ...]:
    sectors = result.measurements["overhang.sectors"].sectors
    assert sectors is not None
    return sectors


@pytest.fixture(scope="module")
def nominal() -> Rendered:
    spec = CellEndSpec(overhang_mm=0.9, overhang_variation_mm=0.15, end_variation_mm=0.12, tilt_deg=0.3, seed=3)
    return spec, *render_cell_end(spec)


@pytest.fixture(scope="module")
def defective() -> Rendered:
    spec = CellEndSpec(negative=NegativeOverhang(angle_deg=200.0, width_deg=70.0, overhang_mm=-0.4), seed=4)
    return spec, *render_cell_end(spec)


def test_every_sector_has_its_true_cathode_end_anode_end_and_overhang(nominal: Rendered) -> None:
    spec, volume, truth = nominal
    result = _measure(spec, volume)
    sectors = _sectors(result)
    assert result.measurements["overhang.sectors"].value == spec.sectors == len(sectors)
    for found, true in zip(sectors, truth.sectors, strict=True):
        assert found.angle_deg == pytest.approx(true.angle_deg)
        assert found.cathode_end == pytest.approx(true.cathode_end_mm, abs=TOLERANCE_MM)
        assert found.anode_end == pytest.approx(true.anode_end_mm, abs=TOLERANCE_MM)
        assert found.overhang == pytest.approx(true.overhang_mm, abs=TOLERANCE_MM)
    overhangs = np.array([t.overhang_mm for t in truth.sectors])
    m = result.measurements
    assert m["overhang.mean_mm"].value == pytest.approx(overhangs.mean(), abs=0.03)
    assert m["overhang.sigma_mm"].value == pytest.approx(overhangs.std(ddof=1), abs=0.03)
    assert m["overhang.min_mm"].value == pytest.approx(overhangs.min(), abs=TOLERANCE_MM)
    cathodes = np.array([t.cathode_end_mm for t in truth.sectors])
    assert m["overhang.end_spread_mm"].value == pytest.approx(cathodes.max() - cathodes.min(), abs=0.05)
    assert set(m) == set(ENDS_NAMES) and all(x.unit == "mm" for n, x in m.items() if n != "overhang.sectors")
    assert not result.negative_overhang and result.end_side == "last"


def test_a_negative_overhang_is_found_at_its_angle(defective: Rendered) -> None:
    spec, volume, truth = defective
    result = _measure(spec, volume)
    lowest = result.measurements["overhang.min_mm"]
    assert result.negative_overhang and truth.negative_overhang
    assert lowest.value is not None and lowest.value < 0
    assert lowest.value == pytest.approx(truth.min_overhang_mm, abs=TOLERANCE_MM)
    assert lowest.angle_deg == pytest.approx(200.0, abs=360 / spec.sectors)
    negative = {s.angle_deg for s in _sectors(result) if s.overhang is not None and s.overhang < 0}
    assert negative and all(abs(angle - 200.0) < 35 for angle in negative)


def test_without_a_negative_overhang_nothing_is_flagged(nominal: Rendered) -> None:
    spec, volume, _ = nominal
    result = _measure(spec, volume)
    assert not result.negative_overhang
    assert all(s.overhang is not None and s.overhang > 0.4 for s in _sectors(result))


def test_8_and_16_bit_copies_and_the_end_at_either_side_give_the_same_answers(nominal: Rendered) -> None:
    spec, volume, _ = nominal
    wide = _sectors(_measure(spec, volume))
    narrow = _sectors(_measure(spec, (volume >> 8).astype(np.uint8)))
    # a display window that clips the can and lifts the air, rescaled to another range
    windowed = np.clip(volume.astype(np.float64) * 1.7 - 6000, 0, 65535).astype(np.uint16)
    flipped = _measure(spec, volume[::-1].copy())
    assert flipped.end_side == "first"
    top = (spec.slices - 1) * spec.slice_mm
    for a, b, c, d in zip(wide, narrow, _sectors(_measure(spec, windowed)), _sectors(flipped), strict=True):
        assert a.overhang is not None and a.cathode_end is not None and d.cathode_end is not None
        assert b.overhang == pytest.approx(a.overhang, abs=0.03)
        assert c.overhang == pytest.approx(a.overhang, abs=0.03)
        assert d.overhang == pytest.approx(a.overhang, abs=1e-9)
        assert d.cathode_end == pytest.approx(top - a.cathode_end, abs=1e-9)


def test_a_given_axis_and_a_missing_slice_size(nominal: Rendered) -> None:
    spec, volume, truth = nominal
    found = _measure(spec, volume)
    assert found.axis == pytest.approx(truth.centre_px, abs=0.5)
    given = _sectors(_measure(spec, volume, axis=truth.centre_px))
    for a, b in zip(_sectors(found), given, strict=True):
        assert b.overhang == pytest.approx(a.overhang, abs=0.03)
    in_slices = measure_ends(volume, spec.pixel_mm, None)
    lowest = in_slices.measurements["overhang.min_mm"]
    assert lowest.unit == "px" and lowest.reason is not None and "slice" in lowest.reason
    in_mm = found.measurements["overhang.min_mm"].value
    assert in_mm is not None and lowest.value == pytest.approx(in_mm / spec.slice_mm, rel=1e-6)


def test_a_pure_roll_volume_and_a_cut_end_are_null_with_the_reason() -> None:
    roll = CellEndSpec(cathode_end_mm=20.0)  # the electrodes end far above the volume
    result = _measure(roll, render_cell_end(roll)[0])
    assert all(m.value is None for m in result.measurements.values())
    assert "no end region" in (result.measurements["overhang.min_mm"].reason or "")
    assert not result.negative_overhang and result.measurements["overhang.sectors"].unit == "count"
    cut = CellEndSpec(cathode_end_mm=3.8, overhang_mm=1.6)  # the anode runs past the last slice
    result = _measure(cut, render_cell_end(cut)[0])
    assert all(m.value is None for m in result.measurements.values())
    assert "cut" in (result.measurements["overhang.mean_mm"].reason or "")


def test_what_is_no_volume_is_null() -> None:
    flat = measure_ends(np.zeros((64, 64), dtype=np.uint16), 0.04, 0.08)
    assert all(m.value is None and m.reason for m in flat.measurements.values())
    air = measure_ends(np.random.default_rng(0).normal(100, 5, (20, 64, 64)), 0.04, 0.08)
    assert all(m.value is None and m.reason for m in air.measurements.values())


def test_random_volumes_negative_overhang_found_where_present_and_only_there() -> None:
    """A small sample of the simulator's variety (the issue's rates are measured on 40 in the report)."""
    rng = np.random.default_rng(2024)
    errors: list[float] = []
    for i in range(4):
        spec = random_cell_end_spec(rng, negative=i % 2 == 0)
        volume, truth = render_cell_end(spec)
        result = _measure(spec, volume)
        assert result.negative_overhang == truth.negative_overhang
        for found, true in zip(_sectors(result), truth.sectors, strict=True):
            assert found.overhang is not None
            errors.append(abs(found.overhang - true.overhang_mm))
    assert max(errors) <= TOLERANCE_MM


def test_the_real_cell_end(real_scans: Path) -> None:
    """The UCL cell: the cap in the first slices, the roll from about im061. Looked at in its reslices:
    the thin bright copper foils (anode) reach about 0.7 mm past the thick cathode bands."""
    files = sorted((real_scans / "cell_vol").glob("im*.tif"))
    volume = np.stack([tifffile.imread(f) for f in files])
    result = measure_ends(volume, REAL_PIXEL_MM, REAL_SLICE_MM)
    sectors = _sectors(result)
    assert result.end_side == "first" and not result.negative_overhang
    assert len(sectors) == 36 and all(s.overhang is not None for s in sectors)
    for s in sectors:
        assert s.anode_end is not None and s.cathode_end is not None and s.overhang is not None
        assert 55 * REAL_SLICE_MM < s.anode_end < s.cathode_end < 76 * REAL_SLICE_MM
        assert 0.4 < s.overhang < 1.0


@pytest.mark.parametrize("size, pixel_mm", [(160, 0.04), (256, 0.025)])
def test_the_spirals_seam_on_a_sector_and_a_finer_pixel(size: int, pixel_mm: float) -> None:
    """The winding starts at 0 degrees, the centre of a sector: on its rays the first and last turns
    begin and end, and a faint foil sits beside a bright cathode flank."""
    spec = CellEndSpec(size=size, pixel_mm=pixel_mm, winding_start=0.0, seed=1)
    volume, truth = render_cell_end(spec)
    for found, true in zip(_sectors(_measure(spec, volume)), truth.sectors, strict=True):
        assert found.overhang == pytest.approx(true.overhang_mm, abs=TOLERANCE_MM)


def test_layers_a_pixel_cannot_resolve_are_null_not_guessed() -> None:
    spec = CellEndSpec(size=80, pixel_mm=0.085)  # five pixels a turn: the layers blur together
    result = _measure(spec, render_cell_end(spec)[0])
    assert all(m.value is None for m in result.measurements.values())
    assert "no electrode layers" in (result.measurements["overhang.min_mm"].reason or "")
