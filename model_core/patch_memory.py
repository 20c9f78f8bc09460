"""The memory of normal patches: patches cut from layer grids, kept per patch row (a coreset of
the training slices' and their mirror images'), and each query patch's distance to its nearest
normal patch at the same depth, forgiving a nearest patch in a sparse part of the memory (a tab,
a winding end: rare normal structures whose examples lie far apart) the excess of its spread.

Where the grid's columns wrap (`PatchMemory.wrap`, the cell view's `wraps`), patches and the
smoothing of the map continue across the seam; where they do not, nothing borrows across it.
How a slice becomes a layer grid and a map becomes a score: `model_core.scoring`.

A memory may also carry the fast path's index (`model_core.fast_search`: a projection and the
cluster centres of every row, fitted at training time): `with_fast_index` fits it,
`fast_patch_maps` scores a whole batch through it. Memories without it (older checkpoints) score
exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from model_core.fast_search import FastSearchConfig, Projection, PrunedIndex
from model_core.scoring import PatchMemoryConfig


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


def patch_rows(grids: np.ndarray, config: PatchMemoryConfig) -> int:
    """How many patch rows a grid (or a stack of grids) of this config has."""
    return int((grids.shape[-2] - config.patch) // config.stride + 1)


def row_patches(grids: np.ndarray, row: int, config: PatchMemoryConfig, *, wrap: bool = True) -> np.ndarray:
    """One patch row of a stack of grids (N, [channels,] rows, columns): (N * patch columns,
    features), grid after grid; for each grid the same as `patches(grid)[row]`."""
    if grids.ndim == 3:
        grids = grids[:, None]
    top = row * config.stride
    band = grids[:, :, top : top + config.patch]
    columns = band.shape[-1]
    if wrap:
        band = np.concatenate([band, band[..., : config.patch - 1]], axis=-1)
    windows = sliding_window_view(band, config.patch, axis=-1)[..., :: config.stride, :]  # N, C, patch, cols, patch
    if wrap:
        windows = windows[:, :, :, : min(windows.shape[3], columns // config.stride)]
    ordered = windows.transpose(0, 3, 1, 2, 4)
    return np.ascontiguousarray(ordered.reshape(-1, ordered[0, 0].size), dtype=np.float32)


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
    projection: Projection | None = None
    centres: np.ndarray | None = None  # (rows, C, d): the fast index's k-means centres
    fast: FastSearchConfig = field(default_factory=FastSearchConfig)
    _fast_index: PrunedIndex | None = field(default=None, repr=False)
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
        self._fast_index = None
        if self.projection is not None and self.centres is not None:
            self._fast_index = PrunedIndex(self._neighbours, self.projection, list(self.centres), self.fast)

    @property
    def has_fast_index(self) -> bool:
        return self._fast_index is not None

    def with_fast_index(self, fast: FastSearchConfig, rng: np.random.Generator) -> PatchMemory:
        """The same memory with the fast path's index fitted on its own patches."""
        projection = Projection.fit(np.concatenate(self.bank), fast.dims)
        centres = PrunedIndex.fit_centres(self._neighbours, projection, fast, rng)
        return PatchMemory(
            config=self.config,
            bank=self.bank,
            row_scale=self.row_scale,
            wrap=self.wrap,
            projection=projection,
            centres=centres,
            fast=fast,
        )

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

    def fast_patch_maps(self, grids: np.ndarray, mapper: Callable[..., Iterable[Any]] = map) -> np.ndarray:
        """`patch_map` of a stack of layer grids (N, [channels,] rows, columns) through the fast
        index: (N, patch rows, patch columns). Each patch row is cut and searched for the whole
        batch at once; `mapper` (a thread pool's `map`) runs the rows."""
        index_ = self._fast_index
        if index_ is None:
            raise ValueError("this memory has no fast index (see with_fast_index)")
        count, rows = grids.shape[0], patch_rows(grids, self.config)
        raw: list[np.ndarray] = [np.empty(0)] * rows

        def search(row: int) -> None:
            queries = row_patches(grids, row, self.config, wrap=self.wrap)
            distance, index = index_.nearest(row, queries, index_.projection(queries))
            if self._spread:
                excess = np.maximum(self._spread[row][index] - self._typical_spread[row], 0.0)
                distance = np.maximum(distance - excess, 0.0)
            raw[row] = distance.reshape(count, -1)

        for _ in mapper(search, range(rows)):
            pass
        levelled = np.stack(raw, axis=1)
        if self.config.level:
            levelled = levelled / np.maximum(np.median(levelled, axis=(1, 2), keepdims=True), 1e-6)
        scaled = levelled / self.row_scale[None, :, None]
        if self.config.smoothing > 0:
            sigma = (0.0, self.config.smoothing, self.config.smoothing)
            scaled = ndimage.gaussian_filter(
                scaled, sigma=sigma, mode=("nearest", "nearest", "wrap" if self.wrap else "nearest")
            )
        return np.asarray(scaled, dtype=np.float32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"bank": np.stack(self.bank), "row_scale": self.row_scale}
        if self.projection is not None and self.centres is not None:
            arrays |= {"projection_mean": self.projection.mean, "projection_basis": self.projection.basis}
            arrays["centres"] = self.centres
        return arrays

    @classmethod
    def from_arrays(
        cls,
        config: PatchMemoryConfig,
        arrays: dict[str, np.ndarray],
        *,
        wrap: bool = True,
        fast: FastSearchConfig | None = None,
    ) -> PatchMemory:
        """A memory from `to_arrays`; the fast index when the arrays hold one (newer checkpoints)."""
        bank = [np.ascontiguousarray(row, dtype=np.float32) for row in arrays["bank"]]
        projection = centres = None
        if "projection_basis" in arrays and "centres" in arrays:
            projection = Projection(
                np.asarray(arrays["projection_mean"], dtype=np.float32),
                np.ascontiguousarray(arrays["projection_basis"], dtype=np.float32),
            )
            centres = np.asarray(arrays["centres"], dtype=np.float32)
        return cls(
            config=config,
            bank=bank,
            row_scale=np.asarray(arrays["row_scale"], dtype=np.float32),
            wrap=wrap,
            projection=projection,
            centres=centres,
            fast=fast or FastSearchConfig(),
        )
