"""Finding the can and the polar unwrap along it: the geometry behind the cylindrical cell view
(its round trip through `CylindricalView` is in test_cell_view.py)."""

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pytest

from model_core.cell_view import LayerGrid
from model_core.geometry import CanGeometry, find_can, rewrap, unwrap


def ring_image(size: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size]
    r = np.hypot(rows - centre[0], cols - centre[1])
    image = np.where(r < radius, 0.4, 0.05).astype(np.float32)
    image[np.abs(r - radius) < 1.5] = 1.0
    return image


@pytest.mark.parametrize(("centre", "radius"), [((64.0, 64.0), 50.0), ((60.5, 70.0), 44.0)])
def test_find_can_locates_the_ring(centre: tuple[float, float], radius: float) -> None:
    found = find_can(ring_image(128, centre, radius))
    assert found.center_row == pytest.approx(centre[0], abs=1.0)
    assert found.center_col == pytest.approx(centre[1], abs=1.0)
    assert found.radius == pytest.approx(radius, abs=1.5)


def test_find_can_ignores_a_bright_inclusion() -> None:
    image = ring_image(128, (64, 64), 50)
    image[40:44, 60:64] = 1.0
    assert find_can(image).radius == pytest.approx(50, abs=1.5)


def test_find_can_falls_back_to_the_centre_on_featureless_input() -> None:
    found = find_can(np.zeros((64, 64), np.float32))
    assert (found.center_row, found.center_col) == (31.5, 31.5)


def test_rotation_becomes_a_circular_shift(make_slices: Callable[..., np.ndarray]) -> None:
    image = make_slices(1, seed=3)[0]
    circle = dataclasses.replace(find_can(image), ellipticity=0.0, axis_angle=0.0)
    grid = LayerGrid(32, 128)
    polar = unwrap(image, circle, grid)
    turned = unwrap(np.rot90(image).copy(), CanGeometry(63 - circle.center_col, circle.center_row, circle.radius), grid)
    # rot90 turns by 90 degrees = a quarter of the columns.
    shifted = np.roll(turned, 32, axis=1)
    assert np.abs(shifted - polar)[4:-4].mean() < 0.02


def test_the_ellipse_turns_with_the_slice(make_slices: Callable[..., np.ndarray]) -> None:
    image = make_slices(1, seed=3)[0]
    geometry = find_can(image)
    grid = LayerGrid(32, 128)
    turned = dataclasses.replace(
        geometry,
        center_row=63 - geometry.center_col,
        center_col=geometry.center_row,
        axis_angle=geometry.axis_angle - math.pi / 2,
    )
    # The grid's columns start at the ellipse's own axis, so a rotated slice unwraps to the same stripes.
    assert np.abs(unwrap(np.rot90(image).copy(), turned, grid) - unwrap(image, geometry, grid))[4:-4].mean() < 0.02


def test_find_can_fits_a_squeezed_can(ellipse: Callable[..., np.ndarray]) -> None:
    # 3 % squeezed: the outer turns move by 3 px around the turn, as much as a fold displaces them
    found = find_can(ellipse(256, (130.0, 126.0), (103.0, 97.0), 0.6))
    assert (found.center_row, found.center_col) == (pytest.approx(130.0, abs=0.5), pytest.approx(126.0, abs=0.5))
    assert found.semi_axes == (pytest.approx(103.0, abs=1.0), pytest.approx(97.0, abs=1.0))
    # an axis has no direction: 0.6 and 0.6 - pi are the same ellipse
    assert math.remainder(found.axis_angle - 0.6, math.pi) == pytest.approx(0.0, abs=0.05)


def test_unwrap_of_a_squeezed_can_puts_the_wall_on_one_row(ellipse: Callable[..., np.ndarray]) -> None:
    image = ellipse(256, (128.0, 128.0), (106.0, 98.0), -1.0)
    polar = unwrap(image, find_can(image), LayerGrid(128, 256, extent=1.04))
    wall_rows = polar.argmax(axis=0)
    assert wall_rows.max() - wall_rows.min() <= 2


def test_rewrap_puts_polar_values_back_where_they_came_from() -> None:
    geometry = CanGeometry(31.5, 31.5, 28.0)
    polar = np.zeros((32, 128), np.float32)
    polar[:, 0:16] = 1.0  # angles 0..45 degrees: right of the centre, just below the row axis
    image = rewrap(polar, geometry, (64, 64), extent=1.04)
    assert image[36, 55] == pytest.approx(1.0, abs=0.05)
    assert image[31, 8] == 0.0
    assert image[0, 0] == 0.0  # outside the unwrapped disc
