from collections.abc import Callable

import numpy as np

from model_core.augmentation import AugmentationConfig, augment, augment_batch


def test_augment_is_seeded_bounded_and_changes_the_slice(make_slices: Callable[..., np.ndarray]) -> None:
    image = make_slices(1, seed=0)[0]
    config = AugmentationConfig()
    a = augment(image, config, np.random.default_rng(5))
    b = augment(image, config, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert a.shape == image.shape and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert np.abs(a - image).mean() > 0.01


def test_no_augmentation_keeps_the_slice(make_slices: Callable[..., np.ndarray]) -> None:
    images = make_slices(2, seed=0)
    off = AugmentationConfig(rotation=False, flips=False, max_shift=0, intensity=0, contrast=0, noise=0)
    np.testing.assert_allclose(augment_batch(images, off, np.random.default_rng(0)), images, atol=1e-6)
