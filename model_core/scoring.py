"""The anomaly score: a memory of normal patches of the slice unrolled to a layer grid.

Why not the autoencoder's error: the network cannot hold the fine spiral, so its error map is
texture everywhere and a 40-pixel pore drowns in it (DESIGN, "The hard part"). Instead every
slice is unrolled by its cell view (`model_core.cell_view`: rows across the layers, columns along
them; for a cylindrical cell, around its can), cut into small patches, and each patch is compared
with the nearest normal patch seen at the same depth in the cell (a band of grid rows; any column,
since a rotation of a cylindrical cell is a circular shift). A defect is a patch unlike anything
normal there. Where the view's columns wrap (the last continues into the first), patches,
trends and smoothing wrap across that seam; where they do not, nothing borrows across it.
A nearest patch in a sparse part of the memory (a tab, a winding end: rare normal structures
whose examples lie far apart) forgives a query the excess of its own spread. Distances are divided
by the spread normal slices show at that depth, smoothed, and the slice's score is the mean of the
map's highest values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
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


def patches(grid: np.ndarray, config: PatchMemoryConfig, *, wrap: bool = True) -> np.ndarray:
    """Patches of a layer grid, shape (patch rows, patch columns, patch*patch); with `wrap` the
    last patches continue across the seam into the first columns, without it they stop at the
    grid's edge. A grid with channels (channels, rows, columns) gives each patch all its channels."""
    if grid.ndim == 3:
        return np.concatenate([patches(channel, config, wrap=wrap) for channel in grid], axis=-1)
    padded = np.concatenate([grid, grid[:, : config.patch - 1]], axis=1) if wrap else grid
    windows = sliding_window_view(padded, (config.patch, config.patch))[:: config.stride, :: config.stride]
    rows, cols = windows.shape[:2]
    if wrap:
        cols = min(cols, grid.shape[1] // config.stride)
    return np.ascontiguousarray(windows[:, :cols].reshape(rows, cols, -1), dtype=np.float32)


def coreset(points: np.ndarray, count: int, rng: np.random.Generator, dims: int = 16) -> np.ndarray:
    """Indices of a greedy k-centre coreset (PatchCore): each pick is the point farthest from those
    picked so far, so rare normal patterns (tabs, winding steps) stay in the memory. Distances are
    measured after a random projection to `dims` dimensions, which preserves them roughly and
    makes the greedy loop cheap."""
    projection = rng.normal(size=(points.shape[1], dims)).astype(np.float32) / np.sqrt(dims)
    projected = points @ projection
    chosen = np.empty(count, dtype=np.int64)
    chosen[0] = int(rng.integers(points.shape[0]))
    nearest = np.sum((projected - projected[chosen[0]]) ** 2, axis=1)
    for i in range(1, count):
        chosen[i] = int(np.argmax(nearest))
        np.minimum(nearest, np.sum((projected - projected[chosen[i]]) ** 2, axis=1), out=nearest)
    return chosen


def _squared_distances(queries: np.ndarray, bank: np.ndarray, bank_sq: np.ndarray) -> np.ndarray:
    # |q - m|^2 = |q|^2 - 2 q.m + |m|^2: one matrix product per patch row.
    products = queries @ bank.T
    squared = (queries * queries).sum(axis=1, keepdims=True) - 2 * products + bank_sq[None, :]
    return np.asarray(np.maximum(squared, 0.0))


def _nearest(queries: np.ndarray, bank: np.ndarray, bank_sq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance to the nearest bank patch and that patch's index, for every query."""
    squared = _squared_distances(queries, bank, bank_sq)
    index = squared.argmin(axis=1)
    distance = np.sqrt(squared[np.arange(index.size), index])
    return np.asarray(distance, dtype=np.float32), index


@dataclass
class PatchMemory:
    """Normal patches per patch row, and the normal spread of nearest distances per row.
    `wrap`: whether the layer grids it compares have wrapping columns (the cell view's `wraps`)."""

    config: PatchMemoryConfig
    bank: list[np.ndarray]
    row_scale: np.ndarray = field(default_factory=lambda: np.ones(0, dtype=np.float32))
    wrap: bool = True
    _bank_sq: list[np.ndarray] = field(default_factory=list, repr=False)
    _neighbours: list[np.ndarray] = field(default_factory=list, repr=False)
    _spread: list[np.ndarray] = field(default_factory=list, repr=False)
    _typical_spread: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32), repr=False)

    def __post_init__(self) -> None:
        self._index()

    def _band(self, row: int) -> slice:
        """The patch rows a patch of `row` is compared with."""
        return slice(max(0, row - self.config.band), min(len(self.bank), row + self.config.band + 1))

    def _index(self) -> None:
        rows = len(self.bank)
        self._neighbours = []
        self._bank_sq = []
        for row in range(rows):
            stacked = np.concatenate(self.bank[self._band(row)], axis=0)
            self._neighbours.append(stacked)
            self._bank_sq.append((stacked * stacked).sum(axis=1))
        if self.row_scale.size != rows:
            self.row_scale = np.ones(rows, dtype=np.float32)
        self._index_spread()

    def _index_spread(self) -> None:
        """How far each memory patch is from its `density_k`-th nearest fellow: small among the
        countless stripe patches, large among rare normal structures (tabs, winding ends)."""
        k = self.config.density_k
        rows = len(self.bank)
        if k == 0:
            self._spread, self._typical_spread = [], np.zeros(0, dtype=np.float32)
            return
        own = []
        for row in range(rows):
            squared = _squared_distances(self.bank[row], self._neighbours[row], self._bank_sq[row])
            kth = min(k, squared.shape[1] - 1)  # position 0 is the patch itself
            own.append(np.sqrt(np.partition(squared, kth, axis=1)[:, kth]).astype(np.float32))
        self._spread = [np.concatenate(own[self._band(row)]) for row in range(rows)]
        self._typical_spread = np.array([np.median(spread) for spread in self._spread], dtype=np.float32)

    @classmethod
    def fit(
        cls,
        grids: Sequence[np.ndarray],
        config: PatchMemoryConfig,
        rng: np.random.Generator,
        previous: PatchMemory | None = None,
        *,
        wrap: bool = True,
    ) -> PatchMemory:
        """Collect patches of the layer grids of normal slices (and their mirror images: a flipped
        cell winds the other way), merged with a previous memory's, thinned to `bank_per_row`."""
        per_image = max(4, int(np.ceil(config.candidates * config.bank_per_row / max(1, 2 * len(grids)))))
        collected: list[list[np.ndarray]] = []
        for grid in grids:
            for mirrored in (grid, grid[..., ::-1]):
                cut = patches(mirrored, config, wrap=wrap)
                if not collected:
                    collected = [[] for _ in range(cut.shape[0])]
                for row in range(cut.shape[0]):
                    pick = rng.choice(cut.shape[1], size=min(per_image, cut.shape[1]), replace=False)
                    if config.salient > 0:
                        # random picks miss rare normal structures (a tab crosses a row in a few
                        # columns); the busiest patches of the row always go to the coreset
                        busiest = np.argpartition(cut[row].var(axis=1), -config.salient)[-config.salient :]
                        pick = np.union1d(pick, busiest)
                    collected[row].append(cut[row, pick])
        if previous is not None:
            for row, kept in enumerate(previous.bank):
                collected[row].append(kept)
        bank = []
        for row_patches in collected:
            stacked = np.concatenate(row_patches, axis=0)
            if stacked.shape[0] > config.bank_per_row:
                if config.sampling == "coreset":
                    stacked = stacked[coreset(stacked, config.bank_per_row, rng)]
                else:
                    stacked = stacked[rng.choice(stacked.shape[0], size=config.bank_per_row, replace=False)]
            bank.append(np.ascontiguousarray(stacked, dtype=np.float32))
        return cls(config=config, bank=bank, wrap=wrap)

    def calibrate_rows(self, grids: Sequence[np.ndarray]) -> None:
        """Scale each row's distances by what held-out normal slices reach there, so the busy core
        and can wall do not outshout the quiet layers in the middle."""
        distances = np.stack([self.levelled_distances(grid) for grid in grids])  # (n, rows, cols)
        flat = distances.transpose(1, 0, 2).reshape(distances.shape[1], -1)
        per_row = np.quantile(flat, self.config.scale_quantile, axis=1)
        floor = max(float(np.median(per_row)) * 0.25, 1e-6)
        self.row_scale = np.maximum(per_row, floor).astype(np.float32)

    def raw_distances(self, grid: np.ndarray) -> np.ndarray:
        """Nearest-normal-patch distance of every patch: shape (patch rows, patch columns).

        Where the nearest normal patch lies in a sparse part of the memory (its own neighbours
        are farther apart than is typical for the row), the excess of its spread is forgiven: a
        tab is never as close to another tab as a stripe is to another stripe."""
        cut = patches(grid, self.config, wrap=self.wrap)
        out = np.empty(cut.shape[:2], dtype=np.float32)
        for row in range(cut.shape[0]):
            distance, index = _nearest(cut[row], self._neighbours[row], self._bank_sq[row])
            if self._spread:
                excess = np.maximum(self._spread[row][index] - self._typical_spread[row], 0.0)
                distance = np.maximum(distance - excess, 0.0)
            out[row] = distance
        return out

    def levelled_distances(self, grid: np.ndarray) -> np.ndarray:
        """Nearest distances relative to the slice's own typical distance.

        Noise level and contrast differ from scan to scan and lift every patch's distance alike;
        a defect lifts a few. Dividing by the slice's median keeps the first out of the score."""
        raw = self.raw_distances(grid)
        if not self.config.level:
            return raw
        return raw / max(float(np.median(raw)), 1e-6)

    def patch_map(self, grid: np.ndarray) -> np.ndarray:
        """Scaled, smoothed distance map of a layer grid's patches (patch rows, patch columns)."""
        scaled = self.levelled_distances(grid) / self.row_scale[:, None]
        if self.config.smoothing > 0:
            mode = ("nearest", "wrap" if self.wrap else "nearest")
            scaled = ndimage.gaussian_filter(scaled, sigma=self.config.smoothing, mode=mode)
        return np.asarray(scaled, dtype=np.float32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"bank": np.stack(self.bank), "row_scale": self.row_scale}

    @classmethod
    def from_arrays(cls, config: PatchMemoryConfig, arrays: dict[str, np.ndarray], *, wrap: bool = True) -> PatchMemory:
        bank = [np.ascontiguousarray(row, dtype=np.float32) for row in arrays["bank"]]
        return cls(config=config, bank=bank, row_scale=np.asarray(arrays["row_scale"], dtype=np.float32), wrap=wrap)


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
