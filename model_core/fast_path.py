"""The fast scoring path of a batch: the same steps as `model_core.scoring`, cheaper.

- the denoise and the unroll through OpenCV (`cv2.GaussianBlur`, `cv2.remap` on sampling maps
  built from cached unit grids) instead of scipy's general filters and interpolator;
- the running medians of the detrend for the whole batch at once, on a sliding window (the same
  medians, exactly, as `scoring.column_trend`'s median filter);
- the patches cut and searched for the whole batch per patch row, the rows spread over threads
  (`PatchMemory.fast_patch_maps`);
- the map back in one `cv2.remap` from the patch map straight to the pixels (the exact path
  spreads the patch map over the layer grid first, then maps the grid back: two interpolations).

Which path scores is the detector spec's `search` ("exact" | "fast"); the exact path stays the
reference (`benchmarks.detector_speed` measures both on the same slices).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from model_core.cell_view import CellView
from model_core.scoring import PatchMemoryConfig

Mapper = Callable[..., Iterable[Any]]  # map, or a thread pool's map


def denoise(image: np.ndarray, sigma: float) -> np.ndarray:
    """`ndimage.gaussian_filter(image, sigma)` (reflecting edges, kernel cut at 4 sigma) by OpenCV."""
    import cv2

    radius = int(4.0 * sigma + 0.5)
    size = 2 * radius + 1
    source = np.ascontiguousarray(image, dtype=np.float32)
    return np.asarray(cv2.GaussianBlur(source, (size, size), sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT))


def column_trends(grids: np.ndarray, window: int, *, wrap: bool = True) -> np.ndarray:
    """`scoring.column_trend` of a stack of grids (..., rows, columns) at once: the running median
    of every `step`-th column over an odd window, by partition on a sliding window view."""
    step = max(1, window // 16)
    coarse = grids[..., ::step]
    width = max(1, window // step) | 1
    half = width // 2
    if wrap:
        padded = np.concatenate([coarse[..., -half:], coarse, coarse[..., :half]], axis=-1) if half else coarse
    else:
        padded = np.pad(coarse, [(0, 0)] * (coarse.ndim - 1) + [(half, half)], mode="edge")
    windows = sliding_window_view(padded, width, axis=-1)
    median = np.partition(windows, half, axis=-1)[..., half]
    columns = (np.arange(grids.shape[-1]) / step).astype(np.int64) % coarse.shape[-1]
    return np.asarray(median[..., columns], dtype=np.float32)


def layer_grids(
    images: np.ndarray, config: PatchMemoryConfig, view: CellView[Any], mapper: Mapper = map
) -> tuple[np.ndarray, list[Any]]:
    """`scoring.layer_grid` of every slice of a batch: grids (N, [channels,] rows, columns) and
    where the view found each cell. `mapper` runs the per-slice part (a thread pool's `map`
    spreads it over the cores: OpenCV and most of numpy release the GIL)."""

    def unroll(image: np.ndarray) -> tuple[np.ndarray, Any]:
        location = view.locate_fast(image)
        source = denoise(image, config.denoise) if config.denoise > 0 else np.asarray(image, dtype=np.float32)
        return view.unroll_fast(source, location, config.grid), location

    unrolled = list(mapper(unroll, images))
    stacked = np.stack([grid for grid, _ in unrolled])
    locations = [location for _, location in unrolled]
    if config.detrend <= 0:
        return stacked, locations
    windows = [max(3, round(config.detrend * config.columns))]
    if config.detrend_long > 0:
        windows.append(max(3, round(config.detrend_long * config.columns)))
    trends = list(mapper(lambda window: column_trends(stacked, window, wrap=view.wraps), windows))
    residual = stacked - trends[0]
    if len(trends) == 1:
        return residual, locations
    return np.stack([residual, config.detrend_long_weight * (stacked - trends[1])], axis=1), locations


def anomaly_map(
    patch_map: np.ndarray,
    location: Any,
    config: PatchMemoryConfig,
    shape: tuple[int, int],
    view: CellView[Any],
) -> np.ndarray:
    """The patch map drawn onto the slice's pixels in one bilinear remap: each pixel's place on the
    layer grid (`view.grid_coordinates`) taken to patch coordinates (patch centres at
    `stride * i + (patch - 1) / 2`; rows clamped to the first and last patch row, columns wrapping
    where the view's do); 0 outside the grid, as `scoring.image_anomaly_map`."""
    import cv2

    rows_p, cols_p = patch_map.shape
    grid_row, grid_col = view.grid_coordinates(location, config.grid, shape)
    offset = np.float32((config.patch - 1) / 2)
    patch_row = np.clip((grid_row - offset) / np.float32(config.stride), 0, rows_p - 1)
    if view.wraps:
        patch_col = ((grid_col - offset) / np.float32(config.stride)) % np.float32(cols_p)
        source = np.concatenate([patch_map, patch_map[:, :1]], axis=1)
    else:
        patch_col = np.clip((grid_col - offset) / np.float32(config.stride), 0, cols_p - 1)
        source = patch_map
    values = cv2.remap(
        np.ascontiguousarray(source, dtype=np.float32),
        np.ascontiguousarray(patch_col, dtype=np.float32),
        np.ascontiguousarray(patch_row, dtype=np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    values[grid_row > config.rows - 0.5] = 0.0
    return np.asarray(values, dtype=np.float32)
