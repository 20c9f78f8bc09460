"""The fast scoring path against the exact reference: the same neighbours, grids and maps, and the
checkpoint forms (an older, exact one keeps scoring as before; a fresh training is fast)."""

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from model_core import fast_path
from model_core.cell_view import cell_view
from model_core.checkpoint import read_metadata, write_metadata
from model_core.detector import MEMORY_FILE, SPEC_FILE, Detector, DetectorCore
from model_core.fast_search import FastSearchConfig, Projection, PrunedIndex
from model_core.geometry import find_can, unwrap, unwrap_fast
from model_core.network import NetworkConfig
from model_core.patch_memory import PatchMemory, _nearest, patch_rows, patches, row_patches
from model_core.scoring import PatchMemoryConfig, column_trend, image_anomaly_map, layer_grid
from model_core.training import TrainedDetector, TrainingConfig, train_detector

SIZE = 64


@pytest.fixture(scope="module")
def trained(spiral: Callable[..., np.ndarray]) -> TrainedDetector:
    rng = np.random.default_rng(0)
    config = TrainingConfig(
        network=NetworkConfig(image_size=SIZE, depth=2, base_filters=4),
        memory=PatchMemoryConfig.for_image_size(SIZE, bank_per_row=100),
        epochs=1,
    )
    normal = np.stack([spiral(rng) for _ in range(10)])
    defects = np.stack([spiral(rng, pore=True) for _ in range(3)])
    return train_detector(normal, defects, config)


def _grids(images: np.ndarray, config: PatchMemoryConfig) -> list[np.ndarray]:
    return [layer_grid(image, config)[0] for image in images]


def test_the_pruned_search_finds_the_exact_nearest_patches_of_a_small_memory(
    make_slices: Callable[..., np.ndarray],
) -> None:
    config = PatchMemoryConfig.for_image_size(128, bank_per_row=120)
    memory = PatchMemory.fit(_grids(make_slices(6, seed=1), config), config, np.random.default_rng(0))
    fast = FastSearchConfig(dims=48, clusters=8, min_list=16, probes=3)
    memory = memory.with_fast_index(fast, np.random.default_rng(0))
    index = memory._fast_index
    assert index is not None
    hits = total = 0
    for grid in _grids(make_slices(2, seed=2, pore=True), config):
        cut = patches(grid, config)
        for row in range(cut.shape[0]):
            distance, exact = _nearest(cut[row], memory._neighbours[row], memory._bank_sq[row])
            found_distance, found = index.nearest(row, cut[row], index.projection(cut[row]))
            # the found patch's distance is measured in full: never below the exact nearest one,
            # equal to it where the same patch was found
            assert np.all(found_distance >= distance - 1e-4)
            np.testing.assert_allclose(found_distance[found == exact], distance[found == exact], rtol=1e-4, atol=1e-5)
            hits += int((found == exact).sum())
            total += exact.size
    # with 3 of 8 lists searched on a small memory; the default index (1 of 64 lists) finds the
    # exact patch for about half the patches at 256 px and keeps the AUROC (docs/DETECTION.md)
    assert hits / total >= 0.8


def test_with_every_list_probed_the_pruned_search_is_exhaustive(make_slices: Callable[..., np.ndarray]) -> None:
    config = PatchMemoryConfig.for_image_size(SIZE, bank_per_row=60)
    memory = PatchMemory.fit(_grids(make_slices(4, seed=3), config), config, np.random.default_rng(0))
    memory = memory.with_fast_index(
        FastSearchConfig(dims=64, clusters=4, min_list=1, probes=4), np.random.default_rng(1)
    )
    grid = _grids(make_slices(1, seed=4, pore=True), config)[0]
    # equal up to float32 round-off (where two memory patches are nearly tied, either may win)
    np.testing.assert_allclose(memory.fast_patch_maps(grid[None])[0], memory.patch_map(grid), rtol=2e-3, atol=1e-4)


def test_projection_keeps_the_principal_axes() -> None:
    rng = np.random.default_rng(0)
    points = (rng.normal(size=(500, 3)) * [10.0, 1.0, 0.01]).astype(np.float32) @ np.eye(3, dtype=np.float32)
    projection = Projection.fit(points, 2)
    assert projection.basis.shape == (3, 2)
    assert abs(projection.basis[0, 0]) > 0.99 and abs(projection.basis[1, 1]) > 0.99
    assert PrunedIndex.centre_count([300, 200], FastSearchConfig(clusters=64, min_list=48)) == 4


def test_the_fast_grid_steps_match_the_exact_ones(make_slices: Callable[..., np.ndarray]) -> None:
    config = PatchMemoryConfig.for_image_size(128)
    image = make_slices(1, seed=5, pore=True)[0]
    grids = np.random.default_rng(0).normal(size=(2, 32, 256)).astype(np.float32)
    for wrap in (True, False):
        expected = np.stack([column_trend(grid, 32, wrap=wrap) for grid in grids])
        np.testing.assert_array_equal(fast_path.column_trends(grids, 32, wrap=wrap), expected)
        stacked = np.stack([grids, 0.5 * grids], axis=1)
        cut = [patches(grid, config, wrap=wrap) for grid in stacked]
        for row in (0, patch_rows(stacked, config) - 1):
            expected_row = np.concatenate([rows[row] for rows in cut])
            np.testing.assert_array_equal(row_patches(stacked, row, config, wrap=wrap), expected_row)
    smooth = ndimage.gaussian_filter(image, sigma=1.0)
    np.testing.assert_allclose(fast_path.denoise(image, 1.0), smooth, atol=1e-5)
    geometry = find_can(image)
    reference = unwrap(smooth, geometry, config.grid)
    # cv2.remap interpolates at 1/32 pixel
    assert np.abs(unwrap_fast(smooth, geometry, config.grid) - reference).max() < 0.02 * np.ptp(reference)


def test_the_fast_map_back_draws_the_exact_map(make_slices: Callable[..., np.ndarray]) -> None:
    config = PatchMemoryConfig.for_image_size(SIZE)
    image = make_slices(1, seed=6)[0]
    view = cell_view()
    location = view.locate(image)
    shape = ((config.rows - config.patch) // config.stride + 1, config.columns // config.stride)
    patch_map = np.random.default_rng(1).random(shape).astype(np.float32)
    patch_map = ndimage.gaussian_filter(patch_map, 1.0, mode="wrap")
    exact = image_anomaly_map(patch_map, location, config, image.shape, view)
    fast = fast_path.anomaly_map(patch_map, location, config, image.shape, view)
    assert np.corrcoef(exact.ravel(), fast.ravel())[0, 1] > 0.99
    assert np.abs(fast - exact).max() < 0.1 * np.ptp(patch_map)


def test_a_fresh_training_is_fast_and_its_checkpoint_keeps_the_index(
    trained: TrainedDetector, tmp_path: Path, make_slices: Callable[..., np.ndarray]
) -> None:
    assert trained.core.search == "fast" and trained.core.spec.search == "fast"
    assert trained.core.memory.has_fast_index
    checkpoint = trained.save(tmp_path / "ckpt")
    with np.load(checkpoint / MEMORY_FILE) as arrays:
        assert {"projection_mean", "projection_basis", "centres"} <= set(arrays.files)
    loaded = Detector.load(checkpoint)
    assert loaded.search == "fast"
    images = make_slices(3, seed=7, pore=True)
    for a, b in zip(loaded.score_batch(images), trained.core.scores(images, trained.threshold.threshold), strict=True):
        assert a.anomaly_score == pytest.approx(b.anomaly_score, rel=1e-5)
        np.testing.assert_allclose(a.error_map, b.error_map, rtol=1e-5, atol=1e-6)
    # the reference stays one setting away, on the same files
    exact = Detector.load(checkpoint, search="exact")
    assert exact.search == "exact"
    reference = DetectorCore(trained.core.spec, trained.core.autoencoder, trained.core.memory, search="exact")
    for a, b in zip(exact.score_batch(images), reference.scores(images, 0.0), strict=True):
        assert a.anomaly_score == pytest.approx(b.anomaly_score, rel=1e-5)


def test_an_old_checkpoint_without_the_fast_parts_loads_and_scores_as_before(
    trained: TrainedDetector, tmp_path: Path, make_slices: Callable[..., np.ndarray]
) -> None:
    checkpoint = trained.save(tmp_path / "old")
    # detector.json and memory.npz as they were written before the fast path
    spec = json.loads((checkpoint / SPEC_FILE).read_text())
    spec.pop("search"), spec.pop("fast")
    (checkpoint / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
    with np.load(checkpoint / MEMORY_FILE) as arrays:
        old_arrays = {"bank": arrays["bank"], "row_scale": arrays["row_scale"]}
    np.savez_compressed(checkpoint / MEMORY_FILE, **old_arrays)
    write_metadata(checkpoint, read_metadata(checkpoint))
    old = Detector.load(checkpoint)
    assert old.search == "exact" and not old.core.memory.has_fast_index
    images = make_slices(3, seed=8, pore=True)
    # the exact path, step by step as before the fast one existed
    core = old.core
    for image, score in zip(images, old.score_batch(images), strict=True):
        grid, location = layer_grid(image, core.spec.memory, core.view)
        patch_map = core.memory.patch_map(grid)
        expected = image_anomaly_map(patch_map, location, core.spec.memory, image.shape, core.view)
        np.testing.assert_array_equal(score.error_map, expected)
        assert score.anomaly_score == pytest.approx(float(np.sort(patch_map.ravel())[-core.spec.memory.top_k :].mean()))
    # asked to run fast, it fits the index at load, the same on every load
    first, second = Detector.load(checkpoint, search="fast"), Detector.load(checkpoint, search="fast")
    assert first.search == "fast"
    for a, b in zip(first.score_batch(images), second.score_batch(images), strict=True):
        assert a.anomaly_score == b.anomaly_score
