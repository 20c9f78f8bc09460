import numpy as np
import pytest

from model_core.network import NetworkConfig, build_autoencoder


@pytest.mark.parametrize("depth", [1, 3])
def test_autoencoder_maps_slices_to_slices(depth: int) -> None:
    model = build_autoencoder(NetworkConfig(image_size=32, depth=depth, base_filters=4))
    out = np.asarray(model(np.random.default_rng(0).random((2, 32, 32, 1), dtype=np.float32), training=False))
    assert out.shape == (2, 32, 32, 1)
    assert out.min() >= 0.0 and out.max() <= 1.0  # sigmoid output, like the normalised input


def test_dropout_is_part_of_the_network_and_can_be_switched_off() -> None:
    names = [layer.name for layer in build_autoencoder(NetworkConfig(image_size=32, depth=2)).layers]
    assert any("dropout" in n for n in names)
    plain = build_autoencoder(NetworkConfig(image_size=32, depth=2, dropout=0.0))
    assert not any("dropout" in layer.name for layer in plain.layers)


def test_same_seed_same_initial_weights() -> None:
    config = NetworkConfig(image_size=32, depth=2, base_filters=4)
    a, b = build_autoencoder(config, seed=7), build_autoencoder(config, seed=7)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_resolution_must_divide_by_the_depth() -> None:
    with pytest.raises(ValueError, match="multiple"):
        build_autoencoder(NetworkConfig(image_size=40, depth=4))
