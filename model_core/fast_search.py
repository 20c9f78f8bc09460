"""The fast nearest-normal-patch search: a projection of the patches to fewer dimensions and a
cluster-pruned search over each patch row's memory, the found patch's distance measured exactly.

The exact search (`model_core.patch_memory`) compares every query patch with every memory patch
of its band of rows in all 128 dimensions: ~18 million distances per 256 px slice. Here:

- `Projection`: the principal axes of the memory's own patches (fitted at training time, stored
  in the checkpoint). The patches are denoised stripes; 64 of 128 axes hold 99.8 % of their
  variance on the quality bench.
- `PrunedIndex`: per patch row, the band's projected patches clustered by k-means (`clusters`
  centres, stored), each patch listed under its `spill` nearest centres; a query is compared with
  the centres, then with the patches listed under its `probes` nearest ones, grouped so that every
  list is one matrix product for all the batch's queries that probe it.
- the winner's distance is then measured in the full dimensions, so a reported distance is the
  exact distance to a real memory patch: never below the exact search's, equal when the pruned
  search found the same patch (its recall, measured in tests/model_core/test_fast_search.py and
  by `benchmarks.detector_speed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class FastSearchConfig(BaseModel):
    """How the fast path's index is built (stored in the detector's spec)."""

    model_config = ConfigDict(frozen=True)

    dims: int = Field(64, ge=4, description="Dimensions the patches are projected to (all of them when fewer)")
    clusters: int = Field(64, ge=1, description="k-means centres per patch row's band")
    min_list: int = Field(48, ge=1, description="Fewer centres where a band holds fewer than clusters * min_list")
    spill: int = Field(1, ge=1, description="Centres each memory patch is listed under")
    probes: int = Field(1, ge=1, description="Nearest centres whose lists a query patch searches")
    iterations: int = Field(12, ge=1, description="k-means rounds at training time")


@dataclass(frozen=True)
class Projection:
    """Centre and principal axes of the memory patches: x -> (x - mean) @ basis."""

    mean: np.ndarray  # (D,)
    basis: np.ndarray  # (D, d)

    @classmethod
    def fit(cls, patches: np.ndarray, dims: int) -> Projection:
        mean = patches.mean(axis=0, dtype=np.float64)
        centred = patches - mean
        covariance = centred.T @ centred / max(1, len(patches) - 1)
        _, vectors = np.linalg.eigh(covariance)
        basis = vectors[:, ::-1][:, : min(dims, patches.shape[1])]
        return cls(mean.astype(np.float32), np.ascontiguousarray(basis, dtype=np.float32))

    def __call__(self, patches: np.ndarray) -> np.ndarray:
        # (x - mean) @ basis without the centred copy of x
        return np.asarray(patches @ self.basis - self.mean @ self.basis, dtype=np.float32)


def _squared(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return np.asarray(
        (points * points).sum(axis=1, keepdims=True) - 2 * points @ centres.T + (centres * centres).sum(axis=1)[None]
    )


def kmeans(points: np.ndarray, count: int, rng: np.random.Generator, iterations: int) -> np.ndarray:
    """Lloyd's k-means from `count` distinct random points; an emptied centre keeps its place."""
    centres = points[rng.choice(len(points), size=count, replace=False)].copy()
    for _ in range(iterations):
        assigned = _squared(points, centres).argmin(axis=1)
        membership = np.zeros((count, len(points)), dtype=np.float32)
        membership[assigned, np.arange(len(points))] = 1.0
        counts = membership.sum(axis=1)
        filled = counts > 0
        centres[filled] = (membership[filled] @ points) / counts[filled, None]
    return np.ascontiguousarray(centres, dtype=np.float32)


@dataclass(frozen=True)
class _RowLists:
    centres: np.ndarray  # (C, d)
    centre_sq: np.ndarray  # (C,)
    members: list[np.ndarray]  # per centre: indices into the band's patches
    scaled: list[np.ndarray]  # per centre: -2 times their projections, transposed, (d, n_c)
    vector_sq: list[np.ndarray]  # per centre: squared norms of those projections


class PrunedIndex:
    """The projected, clustered memory of every patch row's band (`neighbours[row]`)."""

    def __init__(
        self,
        neighbours: Sequence[np.ndarray],
        projection: Projection,
        centres: Sequence[np.ndarray],
        config: FastSearchConfig,
    ) -> None:
        self.config = config
        self.projection = projection
        self.neighbours = list(neighbours)
        self.rows: list[_RowLists] = []
        for band, row_centres in zip(self.neighbours, centres, strict=True):
            projected = projection(band)
            spill = min(config.spill, len(row_centres))
            nearest = np.argpartition(_squared(projected, row_centres), spill - 1, axis=1)[:, :spill]
            members = [np.flatnonzero((nearest == c).any(axis=1)) for c in range(len(row_centres))]
            self.rows.append(
                _RowLists(
                    centres=np.ascontiguousarray(row_centres, dtype=np.float32),
                    centre_sq=(row_centres * row_centres).sum(axis=1).astype(np.float32),
                    members=members,
                    scaled=[np.ascontiguousarray(-2 * projected[m].T) for m in members],
                    vector_sq=[(projected[m] * projected[m]).sum(axis=1) for m in members],
                )
            )

    @staticmethod
    def centre_count(band_sizes: Sequence[int], config: FastSearchConfig) -> int:
        return max(1, min(config.clusters, min(band_sizes) // config.min_list))

    @classmethod
    def fit_centres(
        cls,
        neighbours: Sequence[np.ndarray],
        projection: Projection,
        config: FastSearchConfig,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """k-means centres of every row's projected band, (rows, C, d): what the checkpoint stores."""
        count = cls.centre_count([len(band) for band in neighbours], config)
        return np.stack([kmeans(projection(band), count, rng, config.iterations) for band in neighbours])

    def nearest(self, row: int, queries: np.ndarray, projected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance (full dimensions) to the nearest band patch found and its index, per query."""
        lists = self.rows[row]
        count = len(lists.centres)
        probes = min(self.config.probes, count)
        to_centres = lists.centre_sq[None, :] - 2 * projected @ lists.centres.T
        if probes < count:
            probe = np.argpartition(to_centres, probes - 1, axis=1)[:, :probes]
        else:
            probe = np.broadcast_to(np.arange(count), (len(queries), count))
        flat = probe.ravel()
        order = np.argsort(flat, kind="stable")
        bounds = np.searchsorted(flat[order], np.arange(count + 1))
        grouped = projected[order // probes]  # the queries, centre by centre: one gather per row
        best = np.full(flat.size, np.inf, dtype=np.float32)
        found = np.zeros(flat.size, dtype=np.int64)
        for centre in range(count):
            start, stop = bounds[centre], bounds[centre + 1]
            if start == stop or lists.members[centre].size == 0:
                continue
            squared = grouped[start:stop] @ lists.scaled[centre]  # |m|^2 - 2 q.m, |q|^2 left out
            squared += lists.vector_sq[centre]
            winner = squared.argmin(axis=1)
            picked = order[start:stop]
            best[picked] = np.take_along_axis(squared, winner[:, None], axis=1)[:, 0]
            found[picked] = lists.members[centre][winner]
        best_probe = best.reshape(-1, probes).argmin(axis=1)
        index = found.reshape(-1, probes)[np.arange(len(queries)), best_probe]
        difference = queries - self.neighbours[row][index]
        distance = np.sqrt(np.einsum("ij,ij->i", difference, difference))
        return distance.astype(np.float32), index
