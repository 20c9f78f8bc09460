"""A cell judged from its slices: neighbour-confirmed evidence and 3-D findings, on exact inputs."""

from __future__ import annotations

import numpy as np
import pytest

from model_core.cell_judgement import (
    MAP_CELL,
    CellEvidence,
    CellJudgement,
    SliceGeometry,
    confirmed_evidence,
    find_regions,
    judge_slabs,
    to_findings,
)

SIZE = 64


def test_a_lone_noisy_slice_is_not_confirmed_a_continuing_defect_is() -> None:
    scores = np.array([0.1, 0.1, 0.9, 0.1, 0.1, 0.7, 0.8, 0.75, 0.1])
    confirmed = confirmed_evidence(scores)
    assert confirmed[2] == pytest.approx(0.1)  # the spike: no neighbour backs it
    assert confirmed[5:8] == pytest.approx([0.7, 0.75, 0.75])
    assert confirmed.max() == pytest.approx(0.75)
    assert confirmed_evidence(np.array([0.4])) == pytest.approx([0.4])  # a single slice stands alone


def _ball_maps(slices: int, centre: tuple[float, float, float], radius: float) -> np.ndarray:
    cells = SIZE // MAP_CELL
    z, r, c = np.meshgrid(np.arange(slices), np.arange(cells), np.arange(cells), indexing="ij")
    distance = np.sqrt((z - centre[0]) ** 2 + (r - centre[1]) ** 2 + (c - centre[2]) ** 2)
    return np.where(distance <= radius, 2.0, 0.1).astype(np.float32)


def test_a_ball_across_slices_is_one_finding_with_its_extent() -> None:
    maps = _ball_maps(10, (5.0, 8.0, 4.0), 1.5)
    confirmed = confirmed_evidence(maps.max(axis=(1, 2)))
    geometry = SliceGeometry(SIZE, SIZE, SIZE)
    (region,) = find_regions(maps, confirmed, 1.0, geometry)
    assert (region.z_first, region.z_last) == (4, 6)
    assert region.centroid[0] == pytest.approx(5.0)
    # coarse cell (8, 4) is model px 32-35 x 16-19: its centre 33.5, 17.5
    assert region.centroid[1:] == pytest.approx((33.5, 17.5))
    assert region.low[1] <= 33 <= region.high[1] and region.low[2] <= 17 <= region.high[2]
    assert region.peak_score == pytest.approx(2.0)


def test_a_blob_on_one_slice_only_is_no_finding() -> None:
    maps = np.full((6, SIZE // MAP_CELL, SIZE // MAP_CELL), 0.1, dtype=np.float32)
    maps[3, 5:8, 5:8] = 2.0
    assert find_regions(maps, confirmed_evidence(maps.max(axis=(1, 2))), 1.0, SliceGeometry(SIZE, SIZE, SIZE)) == ()


def test_positions_map_back_through_the_centre_crop_of_a_wide_slice() -> None:
    geometry = SliceGeometry(height=128, width=200, size=SIZE)  # the 128 px square from column 36, halved
    y, x = geometry.to_voxel(0, 0, 1)
    assert (y, x) == pytest.approx((0.5, 36.5))
    findings = to_findings(_judged(geometry), slice_mm=0.1, pixel_mm=0.05, heatmap_url="s3://h/{z}.png")
    assert findings and findings[0].extent.centroid_mm is not None
    assert findings[0].extent.centroid_mm[0] == pytest.approx(findings[0].extent.centroid[0] * 0.1, abs=1e-3)
    assert findings[0].heatmap_url == f"s3://h/{findings[0].strongest_slice}.png"


def _judged(geometry: SliceGeometry) -> CellJudgement:
    evidence = CellEvidence(geometry)
    for z in range(5):
        heat = np.full((SIZE, SIZE), 0.1, dtype=np.float32)
        if 1 <= z <= 3:
            heat[20:28, 30:38] = 3.0
        evidence.add([float(heat.max())], [0.01], [heat])
    return evidence.judge(1.0)


def test_slabs_are_scored_as_they_come_and_judged_as_one_cell() -> None:
    volume = np.full((7, 80, 80), 0.2, dtype=np.float32)
    volume[2:5, 30:40, 30:40] = 5.0  # bright over three slices: the fake scorer's anomaly
    seen: list[int] = []

    def score(inputs: np.ndarray) -> list[tuple[float, float, np.ndarray | None]]:
        assert inputs.shape[1:] == (SIZE, SIZE)
        bright = inputs > 0.9
        return [
            (float(b.mean()), float(plane.mean()), b.astype(np.float32))
            for b, plane in zip(bright, inputs, strict=True)
        ]

    slabs = ((start, volume[start : start + 3]) for start in range(0, 7, 3))
    judgement = judge_slabs(slabs, score, SIZE, threshold=0.01, progress=seen.append)
    assert seen == [3, 6, 7]
    assert len(judgement.scores) == 7
    assert judgement.findings and (judgement.findings[0].z_first, judgement.findings[0].z_last) == (2, 4)
