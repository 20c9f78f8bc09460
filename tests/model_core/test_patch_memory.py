"""The memory of normal patches: patches of a layer grid (wrapping or not), the bank it keeps, its
distances."""

from collections.abc import Callable

import numpy as np

from model_core.patch_memory import PatchMemory, patches
from model_core.scoring import PatchMemoryConfig, layer_grid


def test_patches_wrap_around_the_angle() -> None:
    config = PatchMemoryConfig(rows=16, columns=32, patch=4, stride=2)
    layers = np.arange(16 * 32, dtype=np.float32).reshape(16, 32)
    grid = patches(layers, config)
    assert grid.shape == (7, 16, 16)
    last = grid[0, -1].reshape(4, 4)
    assert last[0, -1] == layers[0, 1]  # the last patch continues at angle 0


def test_patches_of_a_grid_that_does_not_wrap_stop_at_its_edge() -> None:
    config = PatchMemoryConfig(rows=16, columns=32, patch=4, stride=2)
    layers = np.arange(16 * 32, dtype=np.float32).reshape(16, 32)
    grid = patches(layers, config, wrap=False)
    assert grid.shape == (7, 15, 16)  # (32 - 4) / 2 + 1 patch columns, none across the seam
    last = grid[0, -1].reshape(4, 4)
    assert last[0, 0] == layers[0, 28] and last[0, -1] == layers[0, 31]
    np.testing.assert_array_equal(grid, patches(layers, config)[:, :15])  # the rest is the same


def test_memory_round_trips_through_arrays(make_slices: Callable[..., np.ndarray]) -> None:
    config = PatchMemoryConfig.for_image_size(64, bank_per_row=50)
    grids = [layer_grid(x, config)[0] for x in make_slices(4, seed=0)]
    memory = PatchMemory.fit(grids, config, np.random.default_rng(0))
    again = PatchMemory.from_arrays(config, memory.to_arrays())
    np.testing.assert_array_equal(memory.raw_distances(grids[0]), again.raw_distances(grids[0]))


def test_memory_grows_from_a_previous_one_but_stays_bounded(make_slices: Callable[..., np.ndarray]) -> None:
    config = PatchMemoryConfig.for_image_size(64, bank_per_row=40)
    grids = [layer_grid(x, config)[0] for x in make_slices(6, seed=0)]
    first = PatchMemory.fit(grids[:1], config, np.random.default_rng(0))
    second = PatchMemory.fit(grids[1:], config, np.random.default_rng(0), previous=first)
    assert all(row.shape[0] <= 40 for row in second.bank)
    assert second.bank[0].shape[0] >= first.bank[0].shape[0]


def test_the_busiest_patches_of_every_slice_reach_the_memory() -> None:
    # A tab crosses each row in one place: random picks of 4 of 64 patches mostly miss it.
    config = PatchMemoryConfig(rows=16, columns=256, patch=4, stride=4, bank_per_row=1000, salient=1, candidates=1)
    grids = []
    for i in range(8):
        layers = np.zeros((16, 256), np.float32)
        layers[:, 32 * i : 32 * i + 4] = 1.0  # the tab, one patch wide, at another angle in every slice
        grids.append(layers)

    def tab_patches(memory: PatchMemory) -> int:
        return int((memory.bank[1].max(axis=1) == 1.0).sum())

    views = 2 * len(grids)  # each slice and its mirror image
    assert tab_patches(PatchMemory.fit(grids, config, np.random.default_rng(0))) >= views
    without = config.model_copy(update={"salient": 0})
    assert tab_patches(PatchMemory.fit(grids, without, np.random.default_rng(0))) < views // 2


def test_a_sparse_family_of_normal_patches_forgives_its_own_spread() -> None:
    # One patch row: countless near-identical stripe patches and five tabs of different brightness.
    config = PatchMemoryConfig(rows=16, columns=256, patch=4, stride=4, band=0, density_k=1, denoise=0)
    rng = np.random.default_rng(0)
    bar = np.zeros((4, 4), np.float32)
    bar[:, 0] = 1.0  # a radial strip at the patch's left edge
    stripes = rng.normal(0, 0.01, size=(200, 16)).astype(np.float32)
    tabs = np.stack([level * bar.ravel() for level in (1.0, 2.0, 3.0, 4.0, 5.0)])
    bank = [np.concatenate([stripes, tabs])] * 4
    layers = np.zeros((16, 256), np.float32)
    layers[:4, 8] = 2.5  # a tab between two the memory knows: 0.5 * |bar| = 1.0 from both
    layers[1:3, 20:22] = -3.0  # a dark blob (a pore): like nothing in the memory
    forgiving = PatchMemory(config=config, bank=bank).raw_distances(layers)[0]
    strict = PatchMemory(config=config.model_copy(update={"density_k": 0}), bank=bank).raw_distances(layers)[0]
    assert abs(strict[2] - 1.0) < 1e-3
    assert forgiving[2] < 0.1
    assert forgiving[5] > 4.0 and abs(forgiving[5] - strict[5]) < 0.05  # its nearest is a dense stripe
    assert forgiving[10] < 0.1  # a stripe patch stays as close as it was
