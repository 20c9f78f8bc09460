"""The real XCT slices shipped with the package: present, decodable, small, and licensed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_core.imaging import load_image_file
from producers.real_samples import REAL_DIR, real_samples


def test_the_real_slices_decode_in_their_bit_depth() -> None:
    samples = real_samples()
    assert len(samples.jelly_roll) == 12
    for path in (samples.nominal, samples.buckled):
        image = load_image_file(path, max_pixels=10**6)
        assert image.shape == (256, 256) and image.max() > 255  # 16-bit data
    roll = load_image_file(samples.jelly_roll[0], max_pixels=10**6)
    assert roll.shape == (256, 256) and 100 < roll.max() <= 255  # 8-bit data
    assert not np.array_equal(
        load_image_file(samples.nominal, max_pixels=10**6), load_image_file(samples.buckled, max_pixels=10**6)
    )


def test_they_stay_small_and_carry_their_licence() -> None:
    samples = real_samples()
    assert sum(p.stat().st_size for p in REAL_DIR.iterdir()) < 2 * 1024 * 1024
    assert "MIT License" in samples.licence.read_text()
    assert "10.5281/zenodo.17280289" in samples.attribution.read_text()


def test_a_missing_folder_is_named_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"im_1\.png"):
        real_samples(tmp_path)
