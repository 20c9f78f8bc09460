"""The convolutional autoencoder of the original spec (Keras, TensorFlow backend).

Its mean squared reconstruction error is reported as `reconstruction_error`. Resolution and depth
are configurable; DESIGN notes that depth adds little on these low-detail slices, so the default
stays shallow enough to train on two CPU cores.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class NetworkConfig(BaseModel):
    """Shape of the autoencoder."""

    model_config = ConfigDict(frozen=True)

    image_size: int = Field(256, ge=16, description="Input resolution (square); a multiple of 2**depth")
    depth: int = Field(4, ge=1, le=6, description="Down-sampling stages of the encoder")
    base_filters: int = Field(16, ge=4, description="Filters of the first stage; doubled per stage, capped at 128")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout after each encoder stage")


def build_autoencoder(config: NetworkConfig, *, seed: int = 0) -> Any:
    """A Keras model mapping (N, S, S, 1) in [0, 1] to its reconstruction of the same shape."""
    import keras
    from keras import layers

    if config.image_size % (2**config.depth):
        raise ValueError(f"image_size {config.image_size} must be a multiple of 2**depth = {2**config.depth}")
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(config.image_size, config.image_size, 1), name="slice")
    x = inputs
    filters = [min(config.base_filters * 2**i, 128) for i in range(config.depth)]
    # Every convolution but the last runs at half resolution or less: on two CPU cores the
    # full-resolution layers cost most of the training time and add nothing to the mean error.
    for i, f in enumerate(filters):
        x = layers.Conv2D(f, 3, strides=2, padding="same", activation="relu", name=f"enc{i}_down")(x)
        x = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"enc{i}_conv")(x)
        if config.dropout > 0:
            x = layers.Dropout(config.dropout, name=f"enc{i}_dropout")(x)
    for i, f in reversed(list(enumerate(filters[:-1]))):
        x = layers.Conv2DTranspose(f, 3, strides=2, padding="same", activation="relu", name=f"dec{i}_up")(x)
        x = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"dec{i}_conv")(x)
    outputs = layers.Conv2DTranspose(1, 3, strides=2, padding="same", activation="sigmoid", name="reconstruction")(x)
    return keras.Model(inputs, outputs, name="ct_autoencoder")
