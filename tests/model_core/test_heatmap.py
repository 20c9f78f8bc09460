import io

import numpy as np
import pytest
from PIL import Image

from model_core.heatmap import render_heatmap_png


def test_heatmap_is_a_png_of_the_slice_with_the_hot_spot_in_colour() -> None:
    image = np.full((32, 32), 0.5, np.float32)
    error_map = np.zeros((32, 32), np.float32)
    error_map[10:14, 20:24] = 1.0
    png = Image.open(io.BytesIO(render_heatmap_png(image, error_map)))
    assert png.format == "PNG" and png.size == (32, 32) and png.mode == "RGB"
    pixels = np.asarray(png).astype(int)
    hot, cold = pixels[12, 22], pixels[2, 2]
    assert cold[0] == cold[1] == cold[2]  # untouched gray
    assert hot[0] > hot[2] + 50  # coloured


def test_heatmap_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        render_heatmap_png(np.zeros((8, 8)), np.zeros((4, 4)))
