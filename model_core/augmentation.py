"""Augmentation suited to CT slices of cylindrical cells, seeded.

A cell may sit at any angle, mirrored, slightly off centre; scanners differ in exposure and
contrast, and every scan has noise. Nothing here changes the structure of a normal cell.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage


class AugmentationConfig(BaseModel):
    """Ranges of the random changes."""

    model_config = ConfigDict(frozen=True)

    rotation: bool = Field(True, description="Any rotation angle (cells have no preferred orientation)")
    flips: bool = Field(True, description="Random horizontal/vertical mirror")
    max_shift: float = Field(0.03, ge=0, description="Largest shift as a fraction of the image side")
    intensity: float = Field(0.05, ge=0, description="Largest additive intensity offset")
    contrast: float = Field(0.1, ge=0, description="Largest relative contrast change")
    noise: float = Field(0.02, ge=0, description="Largest standard deviation of added Gaussian noise")


def augment(image: np.ndarray, config: AugmentationConfig, rng: np.random.Generator) -> np.ndarray:
    """One randomly changed copy of a normalised slice (values stay in [0, 1])."""
    out: np.ndarray = image.astype(np.float32)
    angle = np.deg2rad(rng.uniform(0, 360)) if config.rotation else 0.0
    limit = config.max_shift * out.shape[0]
    shift = rng.uniform(-limit, limit, size=2) if config.max_shift > 0 else np.zeros(2)
    if angle or shift.any():
        # One cubic resampling for rotation and shift together: two linear ones blur the fine
        # spiral, and copies softer than real scans teach the memory the wrong texture.
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        centre = (np.array(out.shape) - 1) / 2
        out = ndimage.affine_transform(
            out, rotation, offset=centre - rotation @ centre - shift, order=3, mode="nearest"
        ).astype(np.float32)
    if config.flips:
        if rng.random() < 0.5:
            out = out[:, ::-1]
        if rng.random() < 0.5:
            out = out[::-1, :]
    mean = float(out.mean())
    gain = 1.0 + float(rng.uniform(-config.contrast, config.contrast))
    offset = float(rng.uniform(-config.intensity, config.intensity))
    out = (out - mean) * gain + mean + offset
    if config.noise > 0:
        out = out + rng.normal(0.0, float(rng.uniform(0, config.noise)), size=out.shape)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def augment_batch(images: np.ndarray, config: AugmentationConfig, rng: np.random.Generator) -> np.ndarray:
    return np.stack([augment(image, config, rng) for image in images])
