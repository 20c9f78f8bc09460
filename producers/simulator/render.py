"""`render_slice`: a `SliceSpec` in, the 16-bit slice and its defect mask out."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from producers.simulator.defects import alteration
from producers.simulator.geometry import Array, CellCoordinates, cell_coordinates
from producers.simulator.imaging import detector, optics
from producers.simulator.jellyroll import phantom
from producers.simulator.spec import SliceSpec

# a pixel belongs to the mask when the defect changes its noise-free value by this much (can = 1);
# the layer contrast is about 0.1-0.25, the noise about 0.01-0.02
MASK_THRESHOLD = 0.02


def _defective(spec: SliceSpec, coords: CellCoordinates) -> Array:
    assert spec.defect is not None
    change = alteration(spec.cell, coords, spec.defect, spec.size)
    image = phantom(spec.cell, coords, change.radius)
    if change.weight is not None:
        image = image + (change.value - image) * change.weight
    if change.additive is not None:
        image = image + change.additive
    return image


def _mask(normal: Array, defective: Array) -> npt.NDArray[np.uint8]:
    changed = np.abs(defective - normal) > MASK_THRESHOLD
    # a displaced layer leaves unchanged pixels where old and new material agree: close those gaps
    # (no hole filling: a collapsing core or a dent would enclose pixels that did not change)
    closed = ndimage.binary_closing(changed, iterations=2) | changed
    return np.asarray(closed, dtype=np.uint8) * 255


def render_slice(spec: SliceSpec) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint8]]:
    """The slice (uint16, size x size) and its defect mask (uint8 0/255; all zero for a normal slice)."""
    coords = cell_coordinates(spec.cell, spec.size)
    normal = optics(phantom(spec.cell, coords), coords, spec.cell, spec.imaging, spec.size)
    if spec.defect is None:
        return detector(normal, spec.imaging, spec.size), np.zeros((spec.size, spec.size), dtype=np.uint8)
    defective = optics(_defective(spec, coords), coords, spec.cell, spec.imaging, spec.size)
    return detector(defective, spec.imaging, spec.size), _mask(normal, defective)
