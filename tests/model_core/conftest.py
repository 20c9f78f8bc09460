"""Tiny synthetic jelly-roll slices for the detector's unit tests (64 px, fast, seeded)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from model_core.network import NetworkConfig
from model_core.scoring import PatchMemoryConfig
from model_core.training import TrainingConfig

SIZE = 64
REAL_SCANS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real" / "battery_xct_workflows"


def require_data(path: Path, what: str) -> Path:
    """`path` when it exists. Otherwise the test fails in CI (the environment variable `CI` set),
    where the data must be there, and is skipped locally, saying what is missing and where."""
    if path.exists():
        return path
    missing = f"{what} not present at {path.resolve()}"
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{missing}: CI must provide it (the workplace's ../shared/data)", pytrace=False)
    pytest.skip(missing)


@pytest.fixture(scope="session")
def real_scans() -> Path:
    """The full-resolution real scans (`im_1.tif`, `cell_vol/`) from ../shared."""
    return require_data(REAL_SCANS, "the real CT scans (battery_xct_workflows)")


def spiral_slice(rng: np.random.Generator, size: int = SIZE, pore: bool = False) -> np.ndarray:
    """A can ring around a wound spiral with noise, at a random rotation and offset; optionally a
    dark pore of a few pixels in the windings."""
    centre = size / 2 + rng.uniform(-1.5, 1.5, 2)
    radius = size * rng.uniform(0.42, 0.45)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    d_row, d_col = rows - centre[0], cols - centre[1]
    r, theta = np.hypot(d_row, d_col), np.arctan2(d_row, d_col)
    period = radius * 0.12
    image = 0.45 + 0.2 * np.cos(2 * np.pi * r / period - theta + rng.uniform(0, 2 * np.pi))
    image[r < radius * 0.15] = 0.1
    image[r > radius - 1] = 0.05
    image[np.abs(r - radius) < 1.0] = 1.0
    if pore:
        angle, at = rng.uniform(0, 2 * np.pi), rng.uniform(0.4, 0.7) * radius
        spot = np.hypot(rows - centre[0] - at * np.sin(angle), cols - centre[1] - at * np.cos(angle))
        image[spot < 2.5] = 0.0
    image += rng.normal(0, 0.02, image.shape)
    return np.asarray(np.clip(image, 0, 1), dtype=np.float32)


@pytest.fixture(scope="session")
def spiral() -> Callable[..., np.ndarray]:
    return spiral_slice


def ellipse_image(size: int, centre: tuple[float, float], axes: tuple[float, float], angle: float) -> np.ndarray:
    """A bright elliptic can wall (semi-axes `axes`, the first along `angle` radians from the column
    axis) around a flat interior."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    d_row, d_col = rows - centre[0], cols - centre[1]
    along = (math.cos(angle) * d_col + math.sin(angle) * d_row) / axes[0]
    across = (math.cos(angle) * d_row - math.sin(angle) * d_col) / axes[1]
    r = np.hypot(along, across)
    image = np.where(r < 1, 0.4, 0.05).astype(np.float32)
    image[np.abs(r - 1) < 1.5 / axes[1]] = 1.0
    return image


@pytest.fixture(scope="session")
def ellipse() -> Callable[..., np.ndarray]:
    return ellipse_image


@pytest.fixture
def make_slices() -> Callable[..., np.ndarray]:
    def make(count: int, seed: int, pore: bool = False) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.stack([spiral_slice(rng, pore=pore) for _ in range(count)])

    return make


@pytest.fixture
def tiny_config() -> TrainingConfig:
    return TrainingConfig(
        network=NetworkConfig(image_size=SIZE, depth=2, base_filters=4),
        memory=PatchMemoryConfig.for_image_size(SIZE, bank_per_row=200),
        epochs=2,
        batch_size=8,
    )
