"""The cell-end simulator: deterministic, and its voxels end where its truth says."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from producers.simulator.cell_end import CellEndSpec, NegativeOverhang, random_cell_end_spec, render_cell_end

CLEAN = {"noise_sigma": 0.0, "blur_sigma_px": 0.0, "layer_jitter_mm": 0.0}


def test_the_same_spec_gives_the_same_volume_and_another_seed_another() -> None:
    spec = random_cell_end_spec(np.random.default_rng(1), negative=True)
    volume, truth = render_cell_end(spec)
    again, truth_again = render_cell_end(CellEndSpec.model_validate_json(spec.model_dump_json()))
    other, _ = render_cell_end(spec.model_copy(update={"seed": spec.seed + 1}))
    assert volume.dtype == np.uint16 and volume.shape == (spec.slices, spec.size, spec.size)
    np.testing.assert_array_equal(volume, again)
    assert truth == truth_again
    assert not np.array_equal(volume, other)


def test_a_test_sized_volume_renders_well_under_a_second() -> None:
    spec = CellEndSpec()
    started = time.perf_counter()
    render_cell_end(spec)
    assert time.perf_counter() - started < 1.0


def test_the_truth_overhang_is_anode_less_cathode_and_the_defect_reaches_its_depth() -> None:
    defect = NegativeOverhang(angle_deg=90.0, width_deg=60.0, overhang_mm=-0.35)
    spec = CellEndSpec(negative=defect, layer_jitter_mm=0.0, seed=2)
    _, truth = render_cell_end(spec)
    assert truth.negative_overhang and truth.min_overhang_mm == pytest.approx(-0.35, abs=1e-3)
    for sector in truth.sectors:
        assert sector.overhang_mm == pytest.approx(sector.anode_end_mm - sector.cathode_end_mm)
    at = {round(s.angle_deg): s for s in truth.sectors}
    assert at[90].overhang_mm == pytest.approx(-0.35, abs=1e-6)
    assert at[270].overhang_mm == pytest.approx(spec.overhang_mm, abs=spec.overhang_variation_mm + 1e-6)
    _, normal = render_cell_end(spec.model_copy(update={"negative": None}))
    assert not normal.negative_overhang and normal.min_overhang_mm > 0


def test_the_cathode_and_the_anode_end_where_the_truth_says() -> None:
    """Noise-free and unblurred: along the ray at 0 degrees, the brightest (cathode) pixels of the
    roll fall to the void at the cathode end, the copper foil's pixels at the anode end."""
    spec = CellEndSpec(end_variation_mm=0.0, overhang_variation_mm=0.0, **CLEAN)
    volume, truth = render_cell_end(spec)
    level = volume.astype(np.float64) / (spec.gain * 65535)
    row, col = (round(c) for c in truth.centre_px)
    inner = (spec.core_radius_mm + spec.pitch_mm) / spec.pixel_mm
    outer = (spec.can_radius_mm - spec.can_wall_mm - spec.pitch_mm) / spec.pixel_mm
    ray = level[:, row, col + math.ceil(inner) : col + int(outer)]
    m = spec.materials
    cathode = np.flatnonzero(np.abs(ray[0] - m.cathode) < 0.01)  # fully covered by the cathode
    foil = np.flatnonzero(ray[0] > m.cathode + 0.03)  # only the copper is brighter than the cathode
    assert cathode.size >= 3 and foil.size >= 3
    sector = truth.sectors[0]
    for pixels, end in ((cathode, sector.cathode_end_mm), (foil, sector.anode_end_mm)):
        present = (ray[:, pixels] > 0.5 * (ray[0, pixels].mean() + m.core)).mean(axis=1)
        assert _end_slice(present) * spec.slice_mm == pytest.approx(end, abs=spec.slice_mm)


def _end_slice(present: np.ndarray) -> float:
    """The height (in slices) where a layer's share of present pixels first falls through a half."""
    return float(np.flatnonzero(present < 0.5)[0]) - 0.5


def test_the_can_runs_through_every_slice_and_the_cap_lies_above_the_electrodes() -> None:
    spec = CellEndSpec(**CLEAN)
    volume, truth = render_cell_end(spec)
    level = volume.astype(np.float64) / (spec.gain * 65535)
    row, col = (round(c) for c in truth.centre_px)
    wall = round((spec.can_radius_mm - spec.can_wall_mm / 2) / spec.pixel_mm)
    assert np.all(level[:, row, col + wall] > 0.9)
    highest = max(max(s.anode_end_mm, s.cathode_end_mm) for s in truth.sectors)
    cap = np.flatnonzero(level[:, row, col + 2] > 0.5 * (spec.materials.tab + spec.materials.core))
    assert cap.size and cap.min() * spec.slice_mm > highest + spec.separator_margin_mm
