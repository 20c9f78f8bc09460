"""A whole cell judged from its slices: the evidence of each slice, confirmed by its neighbours,
becomes the cell's score, and the anomalous voxels connected across slices become 3-D findings.

A defect continues over adjacent slices; a noisy slice does not. So a slice's evidence counts only
as far as a neighbouring slice confirms it: `confirmed[z] = min(score[z], max(score[z-1],
score[z+1]))`, and the cell's score is the highest confirmed evidence. A finding is a connected
region (26-neighbourhood, over slices) of the slices' heat maps above the threshold that reaches a
slice whose confirmed evidence is above it.

Slices are scored in micro-batches as they are read (`CellEvidence.add`), so a volume is never
held whole: only each slice's scores and a coarse copy of its heat map are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from model_core.imaging import preprocess

if TYPE_CHECKING:
    from schemas.verdicts import Finding

MAP_CELL = 4  # px of the model's heat map per cell of the kept coarse map (its block maximum)


@dataclass(frozen=True)
class SliceGeometry:
    """How a model-size heat map lies in a volume's slice: `preprocess` takes the centred square of
    side `side` at (`top`, `left`) and resizes it to `size`."""

    height: int
    width: int
    size: int

    @property
    def side(self) -> int:
        return min(self.height, self.width)

    @property
    def top(self) -> int:
        return (self.height - self.side) // 2

    @property
    def left(self) -> int:
        return (self.width - self.side) // 2

    def to_voxel(self, row: float, col: float, cell: int) -> tuple[float, float]:
        """The slice position (y, x) of the centre of coarse-map cell (`row`, `col`), `cell` model px wide."""
        scale = self.side / self.size
        return self.top + (row + 0.5) * cell * scale - 0.5, self.left + (col + 0.5) * cell * scale - 0.5


@dataclass(frozen=True)
class FoundRegion:
    """A finding in voxels: slices `z_first..z_last`, centroid and bounding box (z, y, x; inclusive)."""

    z_first: int
    z_last: int
    centroid: tuple[float, float, float]
    low: tuple[int, int, int]
    high: tuple[int, int, int]
    peak_score: float
    strongest_slice: int


@dataclass(frozen=True)
class CellJudgement:
    anomaly_score: float
    is_anomaly: bool
    reconstruction_error: float
    scores: tuple[float, ...]  # per slice, as the detector scored it
    confirmed: tuple[float, ...]  # per slice, the evidence a neighbour confirms
    findings: tuple[FoundRegion, ...]


@dataclass
class CellEvidence:
    """What is kept of a cell's slices while they are scored: their scores, reconstruction errors
    and coarse heat maps (block maxima of `MAP_CELL` model px)."""

    geometry: SliceGeometry
    scores: list[float] = field(default_factory=list)
    errors: list[float] = field(default_factory=list)
    maps: list[np.ndarray] = field(default_factory=list)

    def add(self, scores: Sequence[float], errors: Sequence[float], maps: Sequence[np.ndarray | None]) -> None:
        cells = self.geometry.size // MAP_CELL
        for score, error, heat in zip(scores, errors, maps, strict=True):
            self.scores.append(float(score))
            self.errors.append(float(error))
            if heat is None:
                self.maps.append(np.full((cells, cells), float(score), dtype=np.float16))
            else:
                block = np.asarray(heat, dtype=np.float32)[: cells * MAP_CELL, : cells * MAP_CELL]
                coarse = block.reshape(cells, MAP_CELL, cells, MAP_CELL).max(axis=(1, 3))
                self.maps.append(coarse.astype(np.float16))

    def judge(self, threshold: float) -> CellJudgement:
        if not self.scores:
            raise ValueError("a cell needs at least one scored slice")
        scores = np.asarray(self.scores, dtype=np.float64)
        confirmed = confirmed_evidence(scores)
        cell = float(confirmed.max())
        findings = find_regions(np.stack(self.maps).astype(np.float32), confirmed, threshold, self.geometry)
        return CellJudgement(
            anomaly_score=cell,
            is_anomaly=cell > threshold,
            reconstruction_error=float(np.mean(self.errors)),
            scores=tuple(float(s) for s in scores),
            confirmed=tuple(float(c) for c in confirmed),
            findings=findings,
        )


def confirmed_evidence(scores: np.ndarray) -> np.ndarray:
    """Per slice, its score as far as a neighbouring slice confirms it (a lone slice: its own)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size < 2:
        return scores.copy()
    before = np.concatenate([[-np.inf], scores[:-1]])
    after = np.concatenate([scores[1:], [-np.inf]])
    return np.asarray(np.minimum(scores, np.maximum(before, after)))


def find_regions(
    maps: np.ndarray, confirmed: np.ndarray, threshold: float, geometry: SliceGeometry, most: int = 32
) -> tuple[FoundRegion, ...]:
    """The connected regions of `maps` (z, rows, cols: coarse heat maps) above `threshold` that
    reach a slice whose confirmed evidence is above it, strongest first, at most `most`."""
    above = maps > threshold
    if not above.any():
        return ()
    labels, _ = ndimage.label(above, structure=np.ones((3, 3, 3), dtype=bool))
    confirmed_slices = np.asarray(confirmed) > threshold
    regions = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        inside = labels[box] == index
        z_range = np.arange(box[0].start, box[0].stop)
        if not confirmed_slices[z_range[inside.any(axis=(1, 2))]].any():
            continue
        values = np.where(inside, maps[box], -np.inf)
        peak_at = np.unravel_index(int(np.argmax(values)), values.shape)
        zz, rr, cc = np.nonzero(inside)
        weights = maps[box][inside] - threshold
        z_c, r_c, c_c = (float(np.average(axis, weights=weights)) for axis in (zz, rr, cc))
        y_c, x_c = geometry.to_voxel(r_c + box[1].start, c_c + box[2].start, MAP_CELL)
        y0, x0 = geometry.to_voxel(box[1].start - 0.5, box[2].start - 0.5, MAP_CELL)
        y1, x1 = geometry.to_voxel(box[1].stop - 0.5, box[2].stop - 0.5, MAP_CELL)
        regions.append(
            FoundRegion(
                z_first=int(box[0].start),
                z_last=int(box[0].stop - 1),
                centroid=(z_c + box[0].start, y_c, x_c),
                low=(int(box[0].start), max(0, round(y0)), max(0, round(x0))),
                high=(
                    int(box[0].stop - 1),
                    min(geometry.height - 1, round(y1) - 1),
                    min(geometry.width - 1, round(x1) - 1),
                ),
                peak_score=float(values[peak_at]),
                strongest_slice=int(box[0].start + peak_at[0]),
            )
        )
    regions.sort(key=lambda r: -r.peak_score)
    return tuple(regions[:most])


ScoreBatch = Callable[[np.ndarray], Sequence[tuple[float, float, np.ndarray | None]]]


def judge_slabs(
    slabs: Iterable[tuple[int, np.ndarray]],
    score_batch: ScoreBatch,
    size: int,
    threshold: float,
    progress: Callable[[int], None] | None = None,
) -> CellJudgement:
    """Score a volume's slabs ((first index, (n, y, x) raw slices), in order) as they come, each
    slice reduced to the model's `size` x `size`; `score_batch` gives (score, reconstruction
    error, heat map) per model input. `progress` hears the slices done so far."""
    evidence: CellEvidence | None = None
    for _, slab in slabs:
        if evidence is None:
            evidence = CellEvidence(SliceGeometry(int(slab.shape[1]), int(slab.shape[2]), size))
        inputs = np.stack([preprocess(plane, size) for plane in slab])
        results = score_batch(inputs)
        evidence.add([r[0] for r in results], [r[1] for r in results], [r[2] for r in results])
        if progress is not None:
            progress(len(evidence.scores))
    if evidence is None:
        raise ValueError("the volume has no slices")
    return evidence.judge(threshold)


def to_findings(
    judgement: CellJudgement, slice_mm: float | None, pixel_mm: float | None, heatmap_url: str | None = None
) -> list[Finding]:
    """The judgement's regions as the verdict contract's findings, in mm where the voxel size is
    known; `heatmap_url` (with `{z}` for the slice) names the strongest slice's heat map."""
    from schemas.verdicts import Extent, Finding

    def mm(point: Sequence[float]) -> tuple[float, float, float] | None:
        if slice_mm is None or pixel_mm is None:
            return None
        return (round(point[0] * slice_mm, 4), round(point[1] * pixel_mm, 4), round(point[2] * pixel_mm, 4))

    out = []
    for region in judgement.findings:
        centroid = (round(region.centroid[0], 2), round(region.centroid[1], 2), round(region.centroid[2], 2))
        extent = Extent(
            centroid=centroid,
            low=region.low,
            high=region.high,
            centroid_mm=mm(region.centroid),
            low_mm=mm(region.low),
            high_mm=mm(region.high),
        )
        out.append(
            Finding(
                z_first=region.z_first,
                z_last=region.z_last,
                extent=extent,
                peak_score=region.peak_score,
                strongest_slice=region.strongest_slice,
                heatmap_url=heatmap_url.format(z=region.strongest_slice) if heatmap_url else None,
            )
        )
    return out
