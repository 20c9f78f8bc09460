"""The anomaly score: a memory of normal patches of the slice unrolled to a layer grid.

Why not the autoencoder's error: the network cannot hold the fine spiral, so its error map is
texture everywhere and a 40-pixel pore drowns in it (DESIGN, "The hard part"). Instead every
slice is unrolled by its cell view (`model_core.cell_view`: rows across the layers, columns along
them; for a cylindrical cell, around its can), cut into small patches, and each patch is compared
with the nearest normal patch seen at the same depth in the cell (a band of grid rows; any column,
since a rotation of a cylindrical cell is a circular shift): `model_core.patch_memory`. A defect
is a patch unlike anything normal there. Distances are divided by the spread normal slices show
at that depth, smoothed, and the slice's score is the mean of the map's highest values.

This module holds the configuration, the slice's layer grid (`layer_grid`, with its detrend),
the score of a patch map and the map drawn back onto the slice. Where the view's columns wrap
(the last continues into the first), trends and the map wrap across that seam; where they do
not, nothing borrows across it.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from scipy import ndimage

from model_core.cell_view import CellView, LayerGrid, cell_view


class PatchMemoryConfig(BaseModel):
    """How slices are unrolled and cut into patches, and how big the memory may grow.

    The layer grid's fields were named for the polar unwrap before cell views (`radial`,
    `angular`, `outer`); checkpoints that store those names still load."""

    model_config = ConfigDict(frozen=True)

    rows: int = Field(
        128,
        ge=16,
        validation_alias=AliasChoices("rows", "radial"),
        description="Rows of the layer grid, across the layers (cylindrical: centre to just outside the can)",
    )
    columns: int = Field(
        512,
        ge=32,
        validation_alias=AliasChoices("columns", "angular"),
        description="Columns of the layer grid, along the layers (cylindrical: one full turn)",
    )
    extent: float = Field(
        1.04,
        gt=0.5,
        validation_alias=AliasChoices("extent", "outer"),
        description="How far out the layer grid reaches, in the cell's own size (cylindrical: can radii)",
    )
    patch: int = Field(8, ge=2, description="Patch side on the layer grid")
    stride: int = Field(4, ge=1, description="Step between patches")
    band: int = Field(1, ge=0, description="Neighbouring patch rows a patch is compared with")
    bank_per_row: int = Field(1500, ge=16, description="Normal patches kept per patch row")
    denoise: float = Field(
        1.0,
        ge=0,
        description="Gaussian sigma (pixels) applied before unwrapping: CT noise is white, structures are not",
    )
    detrend: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Window (fraction of the grid's columns) of the running median taken off each grid row; 0 = off",
    )
    detrend_long: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Window (fraction of the grid's columns) of a second residual channel, for long arcs; 0 = off",
    )
    detrend_long_weight: float = Field(
        0.5,
        gt=0,
        description="Scale of the long-window channel in patch distances (half: folds want the short window)",
    )
    density_k: int = Field(
        3,
        ge=0,
        description="Neighbour rank that measures how sparse the memory is around a patch (0 = off)",
    )
    level: bool = Field(False, description="Divide a slice's distances by their median (scan-to-scan noise)")
    top_k: int = Field(10, ge=1, description="The slice's score is the mean of its top_k map values")
    sampling: Literal["coreset", "random"] = Field(
        "coreset",
        description="How the memory is thinned: greedy k-centre coreset (keeps rare normal patterns) or random",
    )
    salient: int = Field(
        4,
        ge=0,
        description="Patches of highest variance per slice and patch row always offered to the coreset",
    )
    candidates: int = Field(6, ge=1, description="Candidate patches collected per kept patch before thinning")
    smoothing: float = Field(1.0, ge=0, description="Gaussian sigma (patch steps) of the distance map")
    scale_quantile: float = Field(0.95, gt=0, lt=1, description="Quantile of normal distances that scales a row")

    @classmethod
    def for_image_size(cls, size: int, **overrides: object) -> PatchMemoryConfig:
        """Defaults scaled to a model resolution: about one grid row per pixel of radius."""
        # top_k: about 0.75 % of the patch map (30 at 256 px; 10, the field's default, below 150 px)
        top_k = max(10, round(30 * (size / 256) ** 2))
        # detrend: measured at 256 px only; at 64 px (the tests' tiny models) it kept a batch of
        # pore-riddled slices from lowering the gate's AUROC, so small grids keep the raw patches.
        detrend = 0.125 if size >= 128 else 0.0
        # a second channel with a quarter-turn window: a missing electrode or a collapsed core spans
        # most of an eighth of a turn, so the short window's median takes it for the roll itself
        detrend_long = 0.25 if size >= 128 else 0.0
        base = {
            "rows": max(16, size // 2),
            "columns": max(32, 2 * size),
            "detrend": detrend,
            "detrend_long": detrend_long,
            "top_k": top_k,
        }
        return cls.model_validate({**base, **overrides})

    @property
    def grid(self) -> LayerGrid:
        return LayerGrid(self.rows, self.columns, self.extent)


def column_trend(grid: np.ndarray, window: int, *, wrap: bool = True) -> np.ndarray:
    """Running median along the columns of each grid row, over `window` columns (wrapping around
    the seam when the grid's columns wrap).

    Computed on every `step`-th column and spread back: the stripes drift by less than a row over
    the window, so the coarse median is as good and 16x cheaper than the full one."""
    step = max(1, window // 16)
    mode = "wrap" if wrap else "nearest"
    coarse = ndimage.median_filter(grid[:, ::step], size=(1, max(1, window // step) | 1), mode=mode)
    columns = (np.arange(grid.shape[1]) / step).astype(np.int64) % coarse.shape[1]
    return np.asarray(coarse[:, columns], dtype=np.float32)


def layer_grid(
    image: np.ndarray, config: PatchMemoryConfig, view: CellView[Any] | None = None
) -> tuple[np.ndarray, Any]:
    """The slice unrolled by its cell view (cylindrical by default) around its own cell, and where
    the view found the cell; with `detrend`, what departs from the grid's own stripes.

    Why the detrend: a healthy roll's stripes barely change along a layer, so a fold's kink, a
    delamination's gap, a missing electrode or a collapsed core stand out against the row's own
    running median, whereas raw patches of displaced stripes still look like normal stripes at
    another phase, and brightness and contrast vary more from scan to scan than such a defect."""
    view = view or cell_view()
    location = view.locate(image)
    if config.denoise > 0:
        image = ndimage.gaussian_filter(image.astype(np.float32), sigma=config.denoise)
    grid = view.unroll(image, location, config.grid)
    if config.detrend > 0:
        residual = grid - column_trend(grid, max(3, round(config.detrend * config.columns)), wrap=view.wraps)
        if config.detrend_long > 0:
            window = max(3, round(config.detrend_long * config.columns))
            long = grid - column_trend(grid, window, wrap=view.wraps)
            return np.stack([residual, config.detrend_long_weight * long]), location
        grid = residual
    return grid, location


def slice_score(patch_map: np.ndarray, config: PatchMemoryConfig) -> float:
    """The mean of the map's `top_k` highest values: as local as the maximum, less noisy."""
    flat = patch_map.ravel()
    k = min(config.top_k, flat.size)
    return float(np.partition(flat, flat.size - k)[flat.size - k :].mean())


def patch_map_to_grid(patch_map: np.ndarray, config: PatchMemoryConfig, *, wrap: bool = True) -> np.ndarray:
    """Spread patch values over the layer grid (each value at its patch's centre); with `wrap`
    the columns between the last patch and the first interpolate across the seam."""
    rows_p, cols_p = patch_map.shape
    centres_r = np.arange(rows_p) * config.stride + (config.patch - 1) / 2
    centres_c = np.arange(cols_p) * config.stride + (config.patch - 1) / 2
    target_r = np.interp(np.arange(config.rows), centres_r, np.arange(rows_p))
    if wrap:
        # index positions modulo the number of patch columns
        target_c = ((np.arange(config.columns) - centres_c[0]) / config.stride) % cols_p
        patch_map = np.concatenate([patch_map, patch_map[:, :1]], axis=1)
    else:
        target_c = np.interp(np.arange(config.columns), centres_c, np.arange(cols_p))
    rr, cc = np.meshgrid(target_r, target_c, indexing="ij")
    return np.asarray(ndimage.map_coordinates(patch_map, [rr, cc], order=1, mode="nearest"), dtype=np.float32)


def image_anomaly_map(
    patch_map: np.ndarray,
    location: Any,
    config: PatchMemoryConfig,
    shape: tuple[int, int],
    view: CellView[Any] | None = None,
) -> np.ndarray:
    """The patch map drawn back onto the slice's pixels by the cell view that unrolled it
    (cylindrical by default), at the `location` it found the cell."""
    view = view or cell_view()
    return view.map_back(patch_map_to_grid(patch_map, config, wrap=view.wraps), location, config.grid, shape)
