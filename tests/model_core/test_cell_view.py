"""The cell-view seam: the registry, the cylindrical view's round trip, and specs that name a view
(or, written before views existed, do not)."""

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from model_core import cell_view as cell_views
from model_core.cell_view import CELL_VIEWS, CellView, CylindricalView, LayerGrid, cell_view
from model_core.detector import DetectorSpec
from model_core.patch_memory import PatchMemory
from model_core.scoring import PatchMemoryConfig, image_anomaly_map, layer_grid


class FlatView:
    """A stand-in for a non-wrapping view (a prismatic cell's layers, say): the slice is its own
    layer grid, rows as layers, columns along them, nothing joining the two side edges."""

    name = "flat"
    wraps = False

    def locate(self, image: np.ndarray) -> None:
        return None

    def unroll(self, image: np.ndarray, location: None, grid: LayerGrid) -> np.ndarray:
        assert image.shape == (grid.rows, grid.columns)
        return image.astype(np.float32)

    def map_back(self, values: np.ndarray, location: None, grid: LayerGrid, shape: tuple[int, int]) -> np.ndarray:
        return values.astype(np.float32)


def test_the_registry_names_the_cylindrical_view_and_refuses_others() -> None:
    view = cell_view()
    assert isinstance(view, CylindricalView) and view.name == "cylindrical" and view.wraps
    assert isinstance(cell_view("cylindrical"), CylindricalView)
    with pytest.raises(ValueError, match="unknown cell view 'pouch'"):
        cell_view("pouch")


def test_the_cylindrical_view_unrolls_and_maps_back(ellipse: Callable[..., np.ndarray]) -> None:
    # (moved from test_geometry: rewrap undoes the unwrap of a squeezed can)
    image = ellipse(128, (66.0, 62.0), (53.0, 48.0), 0.9)
    rows, cols = np.mgrid[0:128, 0:128]
    image = image + 0.2 * np.sin(cols / 3.0) * np.cos(rows / 5.0)  # texture that shows a misplaced pixel
    view: CellView[Any] = CylindricalView()
    grid = LayerGrid(128, 512, extent=1.04)
    location = view.locate(image)
    unrolled = view.unroll(image, location, grid)
    assert unrolled.shape == (128, 512) and unrolled.dtype == np.float32
    back = view.map_back(unrolled, location, grid, image.shape)
    inside = np.hypot(rows - 66.0, cols - 62.0) < 40  # well inside the can: no edge of the grid
    assert np.abs(back - image)[inside].mean() < 0.005  # read back on a circle instead: 0.029
    assert back[0, 0] == 0.0  # outside the grid's extent


def test_a_spec_without_a_view_is_cylindrical_and_old_grid_names_still_load() -> None:
    # detector.json as checkpoints wrote it before cell views: polar field names, no cell_view
    old = {"memory": {"radial": 32, "angular": 128, "outer": 1.1, "patch": 4}}
    spec = DetectorSpec.model_validate(json.loads(json.dumps(old)))
    assert spec.cell_view == "cylindrical"
    assert (spec.memory.rows, spec.memory.columns, spec.memory.extent) == (32, 128, 1.1)
    assert spec.memory.grid == LayerGrid(32, 128, 1.1)
    written = json.loads(spec.model_dump_json())
    assert written["cell_view"] == "cylindrical" and "radial" not in written["memory"]
    assert DetectorSpec.model_validate(written) == spec
    with pytest.raises(ValidationError, match="unknown cell view"):
        DetectorSpec.model_validate({"cell_view": "pouch"})


def test_a_registered_view_plugs_into_the_spec_and_the_scoring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CELL_VIEWS, "flat", FlatView)
    assert DetectorSpec(cell_view="flat").cell_view == "flat"
    view = cell_views.cell_view("flat")
    config = PatchMemoryConfig(rows=16, columns=64, patch=4, stride=4, denoise=0, density_k=0, detrend=0.25)
    rng = np.random.default_rng(0)
    normal = [np.tile(np.sin(np.arange(16) * 1.3)[:, None], (1, 64)).astype(np.float32) for _ in range(3)]
    grids = [layer_grid(image + rng.normal(0, 0.01, image.shape), config, view)[0] for image in normal]
    memory = PatchMemory.fit(grids, config, rng, wrap=view.wraps)
    assert not memory.wrap
    odd = normal[0].copy()
    odd[4:8, 30:34] += 2.0
    grid, location = layer_grid(odd, config, view)
    patch_map = memory.patch_map(grid)
    assert patch_map.shape == (4, 16)
    assert np.unravel_index(np.argmax(patch_map), patch_map.shape) in {(1, 7), (1, 8)}
    assert image_anomaly_map(patch_map, location, config, odd.shape, view).shape == (16, 64)
