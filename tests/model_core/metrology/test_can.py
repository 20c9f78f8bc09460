"""The can's measurements on shapes with exact answers, on the real ellipse mask and a real slice."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage
from scipy.special import ndtr

from model_core.metrology.can import CAN_NAMES, CanResult, can_along_z, measure_can
from model_core.metrology.can_edges import percentiles, row_nanmedian, two_step_fit
from schemas.measurements import Measurement

PIXEL_MM = 0.1
SUPERSAMPLE = 6


def _wall(
    size: int,
    centre: tuple[float, float],
    axes: tuple[float, float],
    thickness: float,
    angle: float = 0.0,
    dent: tuple[float, float, float] = (0.0, 0.0, 1.0),
) -> np.ndarray:
    """A can wall's pixel coverage (0-1): outer edge the ellipse with semi-axes `axes` (the first
    along `angle` radians) less a raised-cosine dent (depth px, centre and half-width radians), the
    inner edge `thickness` px inside it along each ray from the centre."""
    offsets = (np.arange(size * SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5
    rows, cols = np.meshgrid(offsets - centre[0], offsets - centre[1], indexing="ij")
    theta, rho = np.arctan2(rows, cols), np.hypot(rows, cols)
    major, minor = axes
    ellipse = major * minor / np.hypot(minor * np.cos(theta - angle), major * np.sin(theta - angle))
    depth, at, half = dent
    off = np.abs((theta - at + np.pi) % (2 * np.pi) - np.pi)
    outer = ellipse - depth * 0.5 * (1 + np.cos(np.pi * np.clip(off / half, 0, 1)))
    inside = (rho < outer) & (rho >= outer - thickness)
    return np.asarray(inside.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3)))


def _scan(coverage: np.ndarray, roll: float = 0.35) -> np.ndarray:
    """A CT-like slice of the wall: air 0.05, a flat roll inside, the steel 1, a 0.6 px blur."""
    filled = ndimage.binary_fill_holes(coverage > 0.5)
    image = 0.05 + (roll - 0.05) * filled + (1 - roll) * coverage * filled + (0.95 - 0.0) * coverage * ~filled
    return np.asarray(ndimage.gaussian_filter(image, 0.6), dtype=np.float32)


def _as_8_bit(image: np.ndarray) -> np.ndarray:
    return np.asarray(np.clip(np.round(image * 200 + 20), 0, 255), dtype=np.uint8)


def _as_16_bit(image: np.ndarray) -> np.ndarray:
    """Another scanner's window: a different gain and offset over the 16-bit range."""
    return np.asarray(np.clip(np.round(image * 41_000 + 9_000), 0, 65535), dtype=np.uint16)


def _value(result: CanResult, name: str) -> float:
    value = result.measurements[name].value  # type: ignore[index]
    assert value is not None, result.measurements[name].reason  # type: ignore[index]
    return value


def test_a_round_can_has_its_diameters_and_wall_and_no_eccentricity() -> None:
    image = _scan(_wall(256, (127.3, 128.6), (100.0, 100.0), 3.0))
    result = measure_can(image, PIXEL_MM)
    assert set(result.measurements) == set(CAN_NAMES)
    assert _value(result, "can.outer_diameter_mm") == pytest.approx(20.0, abs=0.05)
    assert _value(result, "can.inner_diameter_mm") == pytest.approx(19.4, abs=0.05)
    for name in ("can.wall_mean_mm", "can.wall_min_mm", "can.wall_max_mm"):
        assert _value(result, name) == pytest.approx(0.3, abs=0.03), name
    # a circle's eccentricity grows as the square root of the axes' difference: 0.01 is 0.005 px of 100
    assert _value(result, "can.eccentricity") < 0.02
    assert _value(result, "can.max_dent_mm") < 0.03
    assert result.measurements["can.outer_diameter_mm"].unit == "mm"
    assert result.measurements["can.outer_diameter_mm"].confidence == 1.0
    assert result.fit is not None
    assert (result.fit.centre_row, result.fit.centre_col) == pytest.approx((127.3, 128.6), abs=0.05)


def test_an_elliptic_can_with_a_dent_gives_its_axes_eccentricity_and_the_dent() -> None:
    axes, angle = (104.0, 98.0), math.radians(30)
    dent = (4.0, math.radians(250), math.radians(12))
    result = measure_can(_scan(_wall(256, (128.0, 127.0), axes, 2.5, angle, dent)), PIXEL_MM)
    assert result.fit is not None
    assert result.fit.semi_axes == pytest.approx(axes, abs=0.3)
    assert result.fit.orientation_deg == pytest.approx(30.0, abs=1.0)
    assert _value(result, "can.eccentricity") == pytest.approx(math.sqrt(1 - (98 / 104) ** 2), abs=0.01)
    assert _value(result, "can.max_dent_mm") == pytest.approx(0.4, abs=0.05)
    assert _value(result, "can.max_dent_angle_deg") == pytest.approx(250.0, abs=2.0)
    assert result.measurements["can.max_dent_mm"].angle_deg == _value(result, "can.max_dent_angle_deg")
    assert result.deepest_dent is not None
    # a raised cosine is at least half as deep over its half-width on either side of the centre
    arc = math.radians(12) * float(np.mean(axes)) * PIXEL_MM
    assert result.deepest_dent.arc_length == pytest.approx(arc, rel=0.15)
    assert result.fit.inward_depth.max() == pytest.approx(_value(result, "can.max_dent_mm"))
    assert _value(result, "can.wall_mean_mm") == pytest.approx(0.25, abs=0.03)


def test_8_and_16_bit_slices_in_other_display_windows_measure_the_same() -> None:
    image = _scan(_wall(256, (126.0, 129.5), (103.0, 99.0), 2.8, 0.4, (3.0, 1.0, 0.2)))
    eight, sixteen = measure_can(_as_8_bit(image), PIXEL_MM), measure_can(_as_16_bit(image), PIXEL_MM)
    for name in CAN_NAMES:
        tolerance = 1.0 if name == "can.max_dent_angle_deg" else 0.01
        assert _value(eight, name) == pytest.approx(_value(sixteen, name), abs=tolerance), name


def test_without_a_pixel_size_lengths_are_in_pixels() -> None:
    result = measure_can(_scan(_wall(256, (127.3, 128.6), (100.0, 100.0), 3.0)), None)
    assert result.measurements["can.outer_diameter_mm"].unit == "px"
    assert _value(result, "can.outer_diameter_mm") == pytest.approx(200.0, abs=0.5)
    assert result.measurements["can.eccentricity"].unit == "ratio"
    assert result.measurements["can.max_dent_angle_deg"].unit == "deg"


def test_a_can_cut_by_the_border_is_null_with_the_reason() -> None:
    result = measure_can(_as_16_bit(_scan(_wall(256, (127.0, 40.0), (100.0, 100.0), 3.0))), PIXEL_MM)
    assert result.fit is None and result.deepest_dent is None
    for name in CAN_NAMES:
        assert result.measurements[name].value is None
        assert "field of view" in str(result.measurements[name].reason)


def test_a_roll_without_its_can_is_null_with_the_reason(spiral: object) -> None:
    rng = np.random.default_rng(3)
    image = spiral(rng, 256)  # type: ignore[operator]
    crop = image[60:196, 60:196]  # inside the can: layers to the border
    result = measure_can(crop, PIXEL_MM)
    assert result.fit is None
    assert "no closed can" in str(result.measurements["can.outer_diameter_mm"].reason)


def test_along_z_takes_the_median_and_keeps_the_extremes_and_where() -> None:
    slices = [
        _scan(_wall(256, (128.0, 128.0), (radius, radius), 3.0, dent=(depth, 2.0, 0.25)))
        for radius, depth in ((99.0, 0.0), (100.0, 3.0), (101.0, 1.5))
    ]
    cut = _scan(_wall(256, (128.0, 30.0), (100.0, 100.0), 3.0))
    results = [measure_can(image, PIXEL_MM) for image in [*slices, cut]]
    volume = can_along_z(results)
    outer = volume["can.outer_diameter_mm"]
    assert outer.value == pytest.approx(_value(results[1], "can.outer_diameter_mm"))
    assert outer.along_z is not None
    assert (outer.along_z.min_slice, outer.along_z.max_slice) == (0, 2)
    assert outer.along_z.max - outer.along_z.min == pytest.approx(0.4, abs=0.02)
    dent = volume["can.max_dent_mm"]
    assert dent.along_z is not None and dent.along_z.max_slice == 1
    assert volume["can.max_dent_angle_deg"].value == pytest.approx(math.degrees(2.0), abs=2.0)
    nothing = can_along_z([results[3]])
    assert nothing["can.wall_mean_mm"] == Measurement.missing("mm", nothing["can.wall_mean_mm"].reason or "")
    assert "field of view" in str(nothing["can.wall_mean_mm"].reason)


def test_the_real_synthetic_ellipse_mask_has_its_dent_at_the_top(real_scans: Path) -> None:
    mask = tifffile.imread(real_scans / "ellipse_dent.tif")
    result = measure_can(mask, 0.0479)
    print({name: result.measurements[name].value for name in CAN_NAMES}, result.deepest_dent)
    assert _value(result, "can.max_dent_mm") > 0.5
    assert _value(result, "can.max_dent_angle_deg") == pytest.approx(270.0, abs=15.0)  # rows grow downwards
    assert _value(result, "can.eccentricity") > 0.3


def test_a_real_21700_slice_has_a_can_of_about_21_mm(real_scans: Path) -> None:
    result = measure_can(tifffile.imread(real_scans / "cell_vol" / "im075.tif"), 0.03397)
    print({name: result.measurements[name].value for name in CAN_NAMES}, result.deepest_dent)
    assert 20.5 < _value(result, "can.outer_diameter_mm") < 21.8
    assert 0.1 < _value(result, "can.wall_mean_mm") < 0.4
    assert _value(result, "can.eccentricity") < 0.2
    assert (result.measurements["can.outer_diameter_mm"].confidence or 0) > 0.9


def test_the_partial_sort_percentiles_are_numpys() -> None:
    values = np.random.default_rng(5).gamma(2.0, size=10_001).astype(np.float32)
    for percents in ((0.5, 99.5), (0.0, 100.0), (37.3,)):
        assert percentiles(values, percents) == pytest.approx(tuple(np.percentile(values, percents)), rel=1e-6)


def test_the_row_nanmedian_is_numpys() -> None:
    rng = np.random.default_rng(6)
    for columns in (1, 2, 7, 12):
        values = rng.random((300, columns))
        values[rng.random(values.shape) < 0.3] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # its all-NaN rows
            expected = np.nanmedian(values, axis=1)
        np.testing.assert_allclose(row_nanmedian(values), expected, equal_nan=True)


def test_the_blur_fit_recovers_a_blurred_wall_and_its_clipped_top() -> None:
    offsets = np.arange(-6.0, 6.0, 0.25)
    true = np.array([0.3, 1.2, 0.05, -1.1, 1.4, 0.7])  # roll, wall, air; edges (px) and blur

    def blurred(x: np.ndarray) -> np.ndarray:
        b_in, level, b_out, edge_in, edge_out, sigma = x
        return np.asarray(
            b_in
            + (level - b_in) * ndtr((offsets - edge_in) / sigma)
            + (b_out - level) * ndtr((offsets - edge_out) / sigma)
        )

    start = np.array([0.35, 1.0, 0.1, -1.5, 1.0, 0.5])
    for clip in (math.inf, 0.9):
        profile = np.minimum(blurred(true), clip)
        fitted, converged = two_step_fit(offsets, profile, start, clip)
        assert converged
        assert fitted[3:5] == pytest.approx(true[3:5], abs=1e-3), clip
        assert abs(fitted[5]) == pytest.approx(true[5], abs=1e-3)


def test_a_can_clipped_at_the_scanners_full_scale_keeps_its_wall() -> None:
    # the steel at 1.3 of full scale: its wall's top is flat, its half level too low
    image = np.minimum(_scan(_wall(256, (127.3, 128.6), (100.0, 100.0), 3.0)) * 1.3, 1.0)
    result = measure_can(image, PIXEL_MM)
    assert _value(result, "can.outer_diameter_mm") == pytest.approx(20.0, abs=0.05)
    assert _value(result, "can.inner_diameter_mm") == pytest.approx(19.4, abs=0.05)
    assert _value(result, "can.wall_mean_mm") == pytest.approx(0.3, abs=0.02)
