"""The simulator's slices: deterministic, varied, and every defect changes exactly what its mask says."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producers.simulator import (
    DEFECT_TYPES,
    SEVERITIES,
    SliceSpec,
    random_defect_slice,
    random_normal_slice,
    random_spec,
    render_slice,
)

SIZE = 64
# defects are sized for 256 px slices and shrink with the slice; 128 px keeps the smallest ones a few pixels wide
DEFECT_SIZE = 128


def _without_defect(spec: SliceSpec) -> SliceSpec:
    return spec.model_copy(update={"defect": None})


def _with_severity(spec: SliceSpec, severity: str) -> SliceSpec:
    assert spec.defect is not None
    return spec.model_copy(update={"defect": spec.defect.model_copy(update={"severity": severity})})


def test_a_normal_slice_is_16_bit_with_an_empty_mask() -> None:
    image, mask = random_normal_slice(np.random.default_rng(0), SIZE)
    assert image.dtype == np.uint16 and image.shape == (SIZE, SIZE)
    assert mask.dtype == np.uint8 and mask.shape == (SIZE, SIZE)
    assert not mask.any()
    assert image.max() - image.min() > 10_000  # uses the 16-bit range, not 8 bits of it


def test_the_same_seed_gives_the_same_slice_and_another_seed_another() -> None:
    first, _ = random_defect_slice(np.random.default_rng(7), SIZE, "pore", "medium")
    again, _ = random_defect_slice(np.random.default_rng(7), SIZE, "pore", "medium")
    other, _ = random_defect_slice(np.random.default_rng(8), SIZE, "pore", "medium")
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_a_spec_survives_json_and_renders_the_same_pixels() -> None:
    spec = random_spec(np.random.default_rng(3), SIZE, "crack", "high")
    restored = SliceSpec.model_validate_json(spec.model_dump_json())
    assert restored == spec
    for a, b in zip(render_slice(spec), render_slice(restored), strict=True):
        np.testing.assert_array_equal(a, b)


def test_normal_slices_vary_in_geometry_and_intensity() -> None:
    rng = np.random.default_rng(11)
    specs = [random_spec(rng, SIZE) for _ in range(20)]
    images = [render_slice(s)[0].astype(np.float64) for s in specs]
    assert np.ptp([s.cell.radius for s in specs]) > 0.03 * SIZE
    assert np.ptp([s.cell.core_radius / s.cell.radius for s in specs]) > 0.05
    assert np.ptp([s.cell.pitch / s.cell.radius for s in specs]) > 0.005
    # a mean-intensity detector has no fixed "normal" level to hold on to
    means = [img.mean() for img in images]
    assert max(means) > 1.3 * min(means)


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("defect_type", DEFECT_TYPES)
def test_every_defect_changes_the_pixels_inside_its_mask_far_more_than_outside(defect_type: str, severity: str) -> None:
    spec = random_spec(np.random.default_rng(21), DEFECT_SIZE, defect_type, severity)  # type: ignore[arg-type]
    image, mask = render_slice(spec)
    clean, _ = render_slice(_without_defect(spec))
    inside = mask > 0
    assert set(np.unique(mask)) <= {0, 255}
    assert 10 <= inside.sum() < 0.1 * mask.size
    change = np.abs(image.astype(np.float64) - clean.astype(np.float64))
    assert change[inside].mean() > 10 * max(change[~inside].mean(), 1.0)
    # outside the mask the slice is the clean one, but for faint tails (streaks, the PSF, edge overshoot)
    assert (change[~inside] > 0.2 * change[inside].mean()).mean() < 0.01


@pytest.mark.parametrize("defect_type", DEFECT_TYPES)
def test_the_mask_grows_with_severity(defect_type: str) -> None:
    spec = random_spec(np.random.default_rng(5), DEFECT_SIZE, defect_type, "low")  # type: ignore[arg-type]
    areas = [int((render_slice(_with_severity(spec, s))[1] > 0).sum()) for s in SEVERITIES]
    assert areas[0] < areas[1] < areas[2], areas


def test_defect_sizes_stay_within_the_designed_range_at_256_px() -> None:
    rng = np.random.default_rng(2)
    for defect_type in DEFECT_TYPES:
        for severity in SEVERITIES:
            _, mask = random_defect_slice(rng, 256, defect_type, severity)
            assert 25 <= (mask > 0).sum() <= 2000, (defect_type, severity)


def test_an_unknown_defect_type_or_severity_is_refused() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown defect type"):
        random_defect_slice(rng, SIZE, "rust", "low")
    with pytest.raises(ValueError, match="unknown severity"):
        random_defect_slice(rng, SIZE, "pore", "extreme")


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    defect_type=st.sampled_from(DEFECT_TYPES),
    severity=st.sampled_from(SEVERITIES),
    size=st.sampled_from([48, 64, 96]),
)
def test_any_seed_and_size_gives_a_well_formed_slice(seed: int, defect_type: str, severity: str, size: int) -> None:
    image, mask = random_defect_slice(np.random.default_rng(seed), size, defect_type, severity)
    assert image.shape == mask.shape == (size, size)
    assert image.dtype == np.uint16 and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 255} and mask.any()
    assert np.ptp(image) > 1000
