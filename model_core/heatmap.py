"""The heat map: the slice in gray with the anomaly map overlaid in colour, as PNG bytes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def _colour(values: np.ndarray) -> np.ndarray:
    # A compact ramp red -> yellow (never white, so the peak stands out on a bright can wall).
    red = np.clip(values * 2, 0, 1)
    green = np.clip(values * 2 - 1, 0, 1)
    blue = np.zeros_like(values)
    return np.stack([red, green, blue], axis=-1)


def render_heatmap_png(image: np.ndarray, error_map: np.ndarray, *, floor_quantile: float = 0.5) -> bytes:
    """Overlay `error_map` (same shape as `image`) on the slice.

    The map is scaled to its own range above its median, so the strongest evidence in the slice
    is always visible; the overlay's opacity follows the map, so quiet areas show the slice itself.
    """
    image = np.asarray(image, dtype=np.float32)
    error_map = np.asarray(error_map, dtype=np.float32)
    if image.ndim != 2 or image.shape != error_map.shape:
        raise ValueError(f"image {image.shape} and error map {error_map.shape} must be equal 2-D shapes")
    lo, hi = np.percentile(image, [0.5, 99.5])
    gray = np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1)
    floor = float(np.quantile(error_map, floor_quantile))
    peak = float(error_map.max())
    heat = np.clip((error_map - floor) / max(peak - floor, 1e-6), 0, 1)
    alpha = (0.75 * heat)[..., None]
    rgb = (1 - alpha) * gray[..., None] + alpha * _colour(heat)
    buffer = io.BytesIO()
    Image.fromarray((rgb * 255).round().astype(np.uint8), mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()
