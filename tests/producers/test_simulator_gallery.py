"""The comparison pictures for docs/SIMULATOR.md are made from the shipped real slices."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from producers.simulator import gallery


def test_the_gallery_writes_real_next_to_simulated_and_the_defect_sheet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["gallery", "--out", str(tmp_path), "--seed", "1"])
    assert gallery.main() == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "defects.png",
        "real_vs_simulated_cell_vol.png",
        "real_vs_simulated_im_1.png",
        "real_vs_simulated_im_2_buckled.png",
    ]
    pair = np.asarray(Image.open(tmp_path / "real_vs_simulated_im_1.png"))
    assert pair.shape == (2 * gallery.SIZE, 3 * gallery.SIZE)  # three columns, slice over 2x zoom
    sheet = np.asarray(Image.open(tmp_path / "defects.png"))
    red = (sheet[..., 0] == 255) & (sheet[..., 1] == 40)
    assert red.any()  # the mask outlines are drawn
