import numpy as np
import pytest

from model_core.evaluation import auroc, operating_point, pixel_auroc


def test_auroc_extremes_and_ties() -> None:
    assert auroc([0, 1], [2, 3]) == 1.0
    assert auroc([2, 3], [0, 1]) == 0.0
    assert auroc([1, 1], [1, 1]) == 0.5


def test_auroc_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(1)
    neg, pos = rng.normal(0, 1, 40), rng.normal(1, 1, 30)
    pairs = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert auroc(neg, pos) == pytest.approx(pairs)


def test_operating_point() -> None:
    point = operating_point([0.1, 0.6], [0.7, 0.2], 0.5)
    assert (point.precision, point.recall, point.false_positive_rate) == (0.5, 0.5, 0.5)


def test_pixel_auroc_rewards_maps_that_light_up_the_mask() -> None:
    mask = np.zeros((8, 8), bool)
    mask[2:4, 2:4] = True
    good = mask.astype(np.float32) + 0.1
    assert pixel_auroc([good], [mask]) == 1.0
    assert pixel_auroc([1 - good], [mask]) == 0.0
