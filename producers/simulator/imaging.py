"""What the CT machine does to the ideal cross-section: beam hardening, the point-spread function,
ring and streak artefacts, edge overshoot, correlated noise, gain drift, and 16-bit quantisation."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from producers.simulator.geometry import Array, CellCoordinates, axis_radius, pixel_grid
from producers.simulator.spec import CellSpec, ImagingSpec


def optics(ideal: Array, coords: CellCoordinates, cell: CellSpec, imaging: ImagingSpec, size: int) -> Array:
    """The deterministic, local part: cupping and blur. Defect masks are measured after this step."""
    inside = coords.r < cell.radius
    cupped = ideal * np.where(inside, 1 - imaging.cupping * (1 - (coords.r / cell.radius) ** 2), 1.0)
    sigma = imaging.blur_sigma * size / 256
    return np.asarray(ndimage.gaussian_filter(cupped, sigma) if sigma > 0 else cupped, dtype=np.float32)


def _rings(imaging: ImagingSpec, size: int, rng: np.random.Generator) -> Array:
    # a miscalibrated detector element draws a circle around the rotation axis, not the cell's centre
    # a radial profile on a fine grid, looked up per pixel: one pass over the image for all rings
    radii = np.linspace(0, 0.75 * size, 6 * size)
    profile = np.zeros_like(radii)
    for _ in range(imaging.ring_count):
        at = rng.uniform(0.03, 0.48) * size
        width = rng.uniform(0.4, 0.9) * size / 256
        profile += float(rng.choice([-1.0, 1.0])) * imaging.ring_amplitude * np.exp(-(((radii - at) / width) ** 2))
    if imaging.ring_count == 0:
        return np.zeros((size, size), dtype=np.float32)
    return np.asarray(np.interp(axis_radius(size), radii, profile), dtype=np.float32)


def _streaks(imaging: ImagingSpec, size: int, rng: np.random.Generator) -> Array:
    rows, cols = pixel_grid(size)
    streaks = np.zeros((size, size), dtype=np.float32)
    for _ in range(imaging.streak_count):
        direction = rng.uniform(0, np.pi)
        through = [float(t) * size for t in rng.uniform(0.3, 0.7, 2)]
        across = (cols - through[0]) * math.sin(direction) - (rows - through[1]) * math.cos(direction)
        width = rng.uniform(0.5, 1.5) * size / 256
        streaks += float(rng.choice([-1.0, 1.0])) * imaging.streak_amplitude * np.exp(-((across / width) ** 2))
    return streaks


def _noise(signal: Array, imaging: ImagingSpec, size: int, rng: np.random.Generator) -> Array:
    std = np.sqrt(imaging.noise_sigma**2 + imaging.shot_noise**2 * np.clip(signal, 0, None))
    white = rng.standard_normal((size, size), dtype=np.float32)
    # reconstruction correlates neighbouring pixels; rescale so the per-pixel std stays as asked
    correlated = ndimage.gaussian_filter(white, 0.5 * size / 256)
    correlated /= max(float(correlated.std()), 1e-12)
    return np.asarray(std * correlated, dtype=np.float32)


def detector(blurred: Array, imaging: ImagingSpec, size: int) -> npt.NDArray[np.uint16]:
    """Artefacts, noise and the output transfer of the reconstructed slice, quantised to 16 bits."""
    rng = np.random.default_rng(imaging.seed)
    image = blurred + _rings(imaging, size, rng) + _streaks(imaging, size, rng)
    if imaging.edge_enhancement > 0:
        image = image + imaging.edge_enhancement * (image - ndimage.gaussian_filter(image, 1.5 * size / 256))
    image = image + _noise(blurred, imaging, size, rng)
    rows, cols = pixel_grid(size)
    image = image * (1 + imaging.drift_x * (cols / size - 0.5) + imaging.drift_y * (rows / size - 0.5))
    level = np.clip(imaging.offset + imaging.gain * np.clip(image, 0, None) ** imaging.gamma, 0, 1)
    return np.asarray(np.round(level * 65535), dtype=np.uint16)
