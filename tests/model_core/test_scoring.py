from collections.abc import Callable

import numpy as np

from model_core.evaluation import auroc
from model_core.patch_memory import PatchMemory, patches
from model_core.scoring import PatchMemoryConfig, column_trend, image_anomaly_map, layer_grid


def test_without_wrap_nothing_borrows_across_the_seam() -> None:
    # A flat normal memory; the query is flat but for something bright in its first columns.
    config = PatchMemoryConfig(rows=16, columns=64, patch=4, stride=4, band=0, density_k=0, denoise=0)
    flat = np.zeros((16, 64), np.float32)
    query = flat.copy()
    query[:, 0:2] = 1.0
    for wrap in (True, False):
        memory = PatchMemory.fit([flat, flat], config, np.random.default_rng(0), wrap=wrap)
        assert memory.wrap is wrap
        raw, smooth = memory.raw_distances(query), memory.patch_map(query)
        assert raw.shape == (4, 16) and raw[:, 0].min() > 1.0
        if wrap:  # the last column's patches and smoothing reach round to the first columns
            assert smooth[:, -1].min() > 0.01
        else:
            assert raw[:, 1:].max() == 0.0 and smooth[:, -1].max() == 0.0
    # The trend along a row wraps only when asked: a bright run at the end of the row and in
    # column 1 make the median at column 0 bright across the seam, dark without it.
    row = np.zeros((1, 128), np.float32)
    row[0, -10:] = 1.0
    row[0, 1] = 1.0
    assert column_trend(row, 9)[0, 0] == 1.0
    assert column_trend(row, 9, wrap=False)[0, 0] == 0.0


def test_memory_finds_pores_and_points_at_them(make_slices: Callable[..., np.ndarray]) -> None:
    config = PatchMemoryConfig.for_image_size(64, bank_per_row=300)
    train = [layer_grid(x, config)[0] for x in make_slices(24, seed=0)]
    memory = PatchMemory.fit(train[:20], config, np.random.default_rng(0))
    memory.calibrate_rows(train[20:])
    normal = make_slices(10, seed=1)
    defect = make_slices(10, seed=2, pore=True)
    normal_scores = [float(memory.patch_map(layer_grid(x, config)[0]).max()) for x in normal]
    defect_scores = [float(memory.patch_map(layer_grid(x, config)[0]).max()) for x in defect]
    assert auroc(normal_scores, defect_scores) > 0.9
    # The map's peak lies on the pore (the darkest pixels inside the can).
    image = defect[0]
    layers, location = layer_grid(image, config)
    amap = image_anomaly_map(memory.patch_map(layers), location, config, image.shape)
    peak = np.unravel_index(np.argmax(amap), amap.shape)
    pore = np.argwhere(image[8:56, 8:56] < 0.06) + 8
    assert np.min(np.hypot(*(pore - np.array(peak)).T)) < 5


def test_column_trend_keeps_stripes_and_leaves_a_local_kink() -> None:
    rows = np.arange(32, dtype=np.float32)[:, None]
    stripes = np.sin(rows * 1.3) * np.ones((1, 256), dtype=np.float32)
    kinked = stripes.copy()
    kinked[10:14, 100:110] += 1.0  # a short departure along the angle, like a fold's kink
    assert np.abs(stripes - column_trend(stripes, 33)).max() < 1e-5
    residual = kinked - column_trend(kinked, 33)
    assert residual[10:14, 100:110].min() > 0.9
    assert np.abs(residual[:, 130:]).max() < 1e-5


def test_a_long_arc_shows_in_the_quarter_turn_channel_only() -> None:
    # A missing electrode spans most of an eighth of a turn: the short window's median follows it,
    # the quarter-turn window's does not.
    config = PatchMemoryConfig(rows=32, columns=256, detrend=0.125, detrend_long=0.25, denoise=0)
    rows = np.arange(32, dtype=np.float32)[:, None]
    stripes = np.sin(rows * 1.3) * np.ones((1, 256), dtype=np.float32)
    arc = stripes.copy()
    arc[10:13, 100:124] -= 1.0  # 24 of the short window's 32 columns
    short, long = arc - column_trend(arc, 32), arc - column_trend(arc, 64)
    assert np.abs(short[10:13, 106:118]).max() < 0.1
    assert long[10:13, 106:118].max() < -0.9
    # layer_grid stacks both channels and every patch carries both
    image = np.zeros((64, 64), np.float32)
    channels, _ = layer_grid(image, config)
    assert channels.shape == (2, 32, 256)
    assert patches(channels, config).shape[-1] == 2 * config.patch**2
