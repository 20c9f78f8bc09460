"""The roll measurements on shapes with exact answers, simulated cells and the real slices."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from model_core.metrology.roll import RollResult, _median, _percentile, _weighted_median, measure_roll, robust_unit
from model_core.metrology.segmentation import robust_unit as shared_unit
from producers.simulator.jellyroll import turn_count
from producers.simulator.render import render_slice
from producers.simulator.spec import CellSpec, DefectSpec, ImagingSpec, SliceSpec

CENTRE = (128.3, 127.6)  # (row, col)
START, PITCH, TURNS = 20.0, 8.0, 9.5


def spiral_slice(
    *,
    centre: tuple[float, float] = CENTRE,
    direction: int = 1,
    displaced: tuple[tuple[int, ...], float, float, float] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """A bright 3 px band on dark wound as `r = START + PITCH * t` (0 <= t <= TURNS) from angle
    0.7 rad, blurred and noisy. `displaced` = (turns from 0, first and last angle along the turn in
    rad, shift in px): those turns move outward by the shift there, with 0.15 rad ramps."""
    size = 256
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    d_row, d_col = rows - centre[0], cols - centre[1]
    r, theta = np.hypot(d_row, d_col), np.arctan2(d_row, d_col)
    along = (direction * (theta - 0.7)) % (2 * np.pi)
    image = np.zeros((size, size))
    for turn in range(math.ceil(TURNS) + 1):
        t = turn + along / (2 * np.pi)
        band = START + PITCH * t
        if displaced is not None and turn in displaced[0]:
            _, first, last, shift = displaced
            band = band + shift * np.clip(np.minimum(along - first, last - along) / 0.15, 0, 1)
        image = np.maximum(image, np.clip(1.5 - np.abs(r - band) + 0.5, 0, 1) * (t <= TURNS))
    image = ndimage.gaussian_filter(0.1 + 0.8 * image, 0.7)
    return np.asarray(image + np.random.default_rng(seed).normal(0, 0.02, image.shape), dtype=np.float32)


def layer_deviations(result: RollResult) -> dict[int, tuple[float, float]]:
    layers = result.measurements["roll.layer_max_deviation_mm"].layers
    assert layers is not None
    return {layer.layer: (layer.max_abs, layer.angle_deg) for layer in layers}


def test_a_spiral_gives_its_turns_core_and_no_deviation() -> None:
    result = measure_roll(spiral_slice(), None)
    m = result.measurements
    assert m["roll.turns"].value == pytest.approx(TURNS, abs=0.05)
    assert m["roll.core_diameter_mm"].value == pytest.approx(2 * START, abs=0.5)
    assert m["roll.core_diameter_mm"].unit == "px"
    deviations = layer_deviations(result)
    assert sorted(deviations) == list(range(1, 11))
    assert max(value for value, _ in deviations.values()) < 0.35
    assert result.spiral is not None
    assert result.spiral.pitch == pytest.approx(PITCH, rel=0.005)
    assert result.spiral.centre == pytest.approx(CENTRE, abs=0.1)
    assert result.layer_radii.shape == result.ideal_radii.shape == (10, len(result.angles_deg))
    assert result.unrolled.shape == (len(result.angles_deg), len(result.radii_px))


def test_the_winding_direction_does_not_matter() -> None:
    result = measure_roll(spiral_slice(direction=-1), 0.05)
    assert result.spiral is not None and result.spiral.direction == -1
    assert result.measurements["roll.turns"].value == pytest.approx(TURNS, abs=0.05)
    assert result.measurements["roll.core_diameter_mm"].value == pytest.approx(2 * START * 0.05, abs=0.025)


@pytest.mark.parametrize(("turns", "shift"), [((4,), 2.5), ((4,), -3.0), ((0, 1, 2), -6.0)])
def test_displaced_turns_show_their_displacement_where_it_is(turns: tuple[int, ...], shift: float) -> None:
    # turns move between 60 and 150 degrees along them; the inner three together, into the core,
    # by more than half a pitch
    first, last = math.radians(60), math.radians(150)
    result = measure_roll(spiral_slice(displaced=(turns, first, last, shift)), None)
    deviations = layer_deviations(result)
    for layer in (turn + 1 for turn in turns):
        value, angle = deviations[layer]
        assert value == pytest.approx(abs(shift), abs=0.4)
        # along the turn from its start at 0.7 rad, image angles increasing (direction +1)
        assert math.degrees(0.7 + first) - 2 < angle < math.degrees(0.7 + last) + 2
    assert all(value < 0.5 for layer, (value, _) in deviations.items() if layer - 1 not in turns)


def test_16_bit_with_another_display_window_gives_the_same_answers() -> None:
    image = spiral_slice()
    reference = measure_roll(image, 0.1).measurements
    # another window: offset and gain, the brightest tenth saturated, 16-bit
    windowed = np.clip(3000 + 70000 * image, 0, 65535).astype(np.uint16)
    assert windowed.max() == 65535
    other = measure_roll(windowed, 0.1).measurements
    for name in ("roll.turns", "roll.core_diameter_mm", "roll.layer_max_deviation_mm"):
        assert other[name].value == pytest.approx(reference[name].value, abs=0.01)


def test_core_offset_and_gap_from_a_given_can() -> None:
    axis = (CENTRE[0] + 3.0, CENTRE[1] - 4.0)
    inner_wall = START + PITCH * TURNS + 12.0
    result = measure_roll(spiral_slice(), 0.1, axis=axis, can_inner_radius_px=inner_wall)
    m = result.measurements
    assert m["roll.core_offset_mm"].value == pytest.approx(0.5, abs=0.02)
    assert m["roll.core_offset_mm"].unit == "mm"
    # from the winding's outer end (half a turn past its start angle) along its ray to the circle about the axis
    end_angle = 0.7 + 2 * math.pi * (TURNS % 1)
    direction = np.array([math.sin(end_angle), math.cos(end_angle)])
    end = np.array(CENTRE) + (START + PITCH * TURNS) * direction
    d = end - np.array(axis)
    along = float(d @ direction)
    to_wall = -along + math.sqrt(along**2 - float(d @ d) + inner_wall**2)
    assert m["roll.gap_mm"].value == pytest.approx(0.1 * to_wall, abs=0.03)
    assert 0 < m["roll.gap_mm"].confidence <= 1


def test_without_a_can_the_can_relative_values_are_null_with_a_reason() -> None:
    m = measure_roll(spiral_slice(), 0.1).measurements
    for name in ("roll.core_offset_mm", "roll.gap_mm"):
        assert m[name].value is None and m[name].reason
    assert m["roll.core_diameter_mm"].value is not None


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((128, 128), dtype=np.uint16),
        np.random.default_rng(3).normal(0.5, 0.1, (256, 256)).astype(np.float32),
    ],
    ids=["blank", "noise"],
)
def test_no_spiral_gives_nulls_with_reasons(image: np.ndarray) -> None:
    result = measure_roll(image, 0.1, axis=(64.0, 64.0), can_inner_radius_px=50.0)
    assert set(result.measurements) == {
        "roll.core_diameter_mm",
        "roll.core_offset_mm",
        "roll.gap_mm",
        "roll.turns",
        "roll.layer_max_deviation_mm",
    }
    for measurement in result.measurements.values():
        assert measurement.value is None and measurement.reason
    assert result.spiral is None


def cell(core_radius: float, pitch: float, *, seed: int) -> CellSpec:
    return CellSpec(
        centre_x=128.6,
        centre_y=126.9,
        radius=108.0,
        can_thickness=2.6,
        core_radius=core_radius,
        pitch=pitch,
        winding_start=1.1 * seed,
        outer_gap=0.8,
        cathode_fraction=0.4,
        anode_fraction=0.3,
        thickness_jitter=0.05,
        wobble=0.1,
        detail_seed=seed,
    )


def measure_simulated(spec: SliceSpec) -> tuple[RollResult, float]:
    image, _ = render_slice(spec)
    pixel_mm = 10.5 / spec.cell.radius
    can = spec.cell
    result = measure_roll(
        image, pixel_mm, axis=(can.centre_y, can.centre_x), can_inner_radius_px=can.radius - can.can_thickness
    )
    return result, pixel_mm


@pytest.mark.parametrize(("core_radius", "pitch", "seed"), [(16.0, 4.0, 1), (21.5, 4.4, 2), (13.0, 3.7, 3)])
def test_simulated_slices_give_the_core_and_the_turns(core_radius: float, pitch: float, seed: int) -> None:
    spec = SliceSpec(cell=cell(core_radius, pitch, seed=seed), imaging=ImagingSpec(blur_sigma=0.6, noise_sigma=0.01))
    result, pixel_mm = measure_simulated(spec)
    m = result.measurements
    assert m["roll.core_diameter_mm"].value == pytest.approx(2 * core_radius * pixel_mm, abs=0.05)
    assert m["roll.turns"].value == pytest.approx(turn_count(spec.cell), abs=0.2)
    assert m["roll.core_offset_mm"].value == pytest.approx(0.0, abs=0.02)
    assert m["roll.gap_mm"].value == pytest.approx(0.8 * pitch * pixel_mm, abs=0.05)


@pytest.mark.parametrize("defect", ["fold", "core_collapse"])
def test_a_simulated_fold_or_collapse_raises_the_layer_deviation(defect: str) -> None:
    normal = SliceSpec(cell=cell(17.0, 4.0, seed=4), imaging=ImagingSpec(blur_sigma=0.6, noise_sigma=0.01))
    depth = 0.0 if defect == "core_collapse" else 0.35

    def deviations(severity: str | None) -> tuple[float, float]:
        """The largest deviation over all layers and over all but the innermost (mm): the simulator
        cuts the innermost band to half its width, which moves its centre line by a fraction of a px."""
        spec = normal
        if severity is not None:
            defect_spec = DefectSpec(type=defect, severity=severity, depth=depth, angle=0.8, seed=5)  # type: ignore[arg-type]
            spec = normal.model_copy(update={"defect": defect_spec})
        layers = layer_deviations(measure_simulated(spec)[0])
        return max(value for value, _ in layers.values()), max(value for k, (value, _) in layers.items() if k > 1)

    overall, outside = deviations(None)
    assert outside < 0.06
    assert deviations("medium")[1] > 3 * outside
    assert deviations("high")[0] > 1.7 * overall


def test_the_buckled_real_slice_stands_far_above_the_normal_one_near_the_centre(real_scans: Path) -> None:
    normal = layer_deviations(measure_roll(tifffile.imread(real_scans / "im_1.tif"), None))
    buckled = layer_deviations(measure_roll(tifffile.imread(real_scans / "im_2.tif"), None))
    central = range(1, 4)
    assert min(buckled[k][0] for k in central) > 2 * max(normal[k][0] for k in central)
    assert max(buckled.values())[0] > 3 * max(normal[k][0] for k in central)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_the_unit_image_matches_the_shared_robust_scaling(dtype: type) -> None:
    """Exact where every pixel counts (up to 2^14 of them), within a small range error where the
    range comes from a subsample."""
    rng = np.random.default_rng(3)
    top = 255 if dtype is np.uint8 else 60000
    for size, tolerance in ((128, 1e-6), (300, 0.02)):
        image: np.ndarray = (rng.gamma(2.0, top / 10, (size, size)).clip(0, top)).astype(dtype)
        assert np.abs(robust_unit(image) - shared_unit(image)).max() <= tolerance
    assert not robust_unit(np.full((64, 64), 7, dtype=dtype)).any()


def test_the_order_statistics_are_numpys() -> None:
    rng = np.random.default_rng(4)
    for n in (1, 2, 3, 10, 101, 1000):
        values = rng.random(n)
        assert _median(values) == float(np.median(values))
        for q in (0.5, 50.0, 90.0, 99.5):
            assert _percentile(values, q) == pytest.approx(float(np.percentile(values, q)), abs=1e-12)
        counts = rng.integers(1, 40, n)
        assert _weighted_median(values, counts) == float(np.median(np.repeat(values, counts)))
