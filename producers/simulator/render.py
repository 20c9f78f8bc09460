"""`render_slice`: a `SliceSpec` in, the 16-bit slice and its defect mask out."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from producers.simulator.defects import Alteration, alteration
from producers.simulator.geometry import Array, CellCoordinates, cell_coordinates
from producers.simulator.imaging import detector, optics
from producers.simulator.jellyroll import phantom
from producers.simulator.spec import SliceSpec

# a pixel belongs to the mask when the defect changes its noise-free value by this much (can = 1);
# the layer contrast is about 0.1-0.25, the noise about 0.01-0.02
MASK_THRESHOLD = 0.02


Window = tuple[slice, slice]
# smaller changes than these are the far tails of smooth windows: they do not reach the 16-bit output
_SHIFT_EPS, _WEIGHT_EPS, _ADDITIVE_EPS = 1e-3, 1e-3, 1e-4


def _support(change: Alteration, coords: CellCoordinates) -> npt.NDArray[np.bool_]:
    support = np.zeros(coords.r.shape, dtype=bool)
    if change.radius is not None:
        support |= np.abs(change.radius - coords.r) > _SHIFT_EPS
    if change.weight is not None:
        support |= change.weight > _WEIGHT_EPS
    if change.additive is not None:
        support |= np.abs(change.additive) > _ADDITIVE_EPS
    return support


def _window(support: npt.NDArray[np.bool_], margin: int) -> Window | None:
    rows, cols = np.flatnonzero(support.any(axis=1)), np.flatnonzero(support.any(axis=0))
    if rows.size == 0:
        return None
    size = support.shape[0]
    return (
        slice(max(int(rows[0]) - margin, 0), min(int(rows[-1]) + 1 + margin, size)),
        slice(max(int(cols[0]) - margin, 0), min(int(cols[-1]) + 1 + margin, size)),
    )


def _within(inner: Window, outer: Window) -> Window:
    return tuple(slice(i.start - o.start, i.stop - o.start) for i, o in zip(inner, outer, strict=True))  # type: ignore[return-value]


def _defective(spec: SliceSpec, coords: CellCoordinates, normal: Array) -> tuple[Array, Window | None]:
    """The blurred slice with its defect, and the window outside which it equals `normal`.

    Only the defect's neighbourhood is rendered again: `inner` is where the blurred change can
    reach, `outer` adds what the blur of `inner` reads, so `inner` comes out exactly as a
    full-slice render would."""
    assert spec.defect is not None
    change = alteration(spec.cell, coords, spec.defect, spec.size)
    margin = int(np.ceil(4 * spec.imaging.blur_sigma * spec.size / 256)) + 3
    support = _support(change, coords)
    inner, outer = _window(support, margin), _window(support, 2 * margin)
    if inner is None or outer is None:
        return normal, None
    local = phantom(spec.cell, coords.crop(outer), None if change.radius is None else change.radius[outer])
    if change.weight is not None:
        local = local + (change.value - local) * change.weight[outer]
    if change.additive is not None:
        local = local + change.additive[outer]
    blurred = optics(local, coords.crop(outer), spec.cell, spec.imaging, spec.size)
    defective = normal.copy()
    defective[inner] = blurred[_within(inner, outer)]
    return defective, inner


def _mask(normal: Array, defective: Array, window: Window | None) -> npt.NDArray[np.uint8]:
    mask = np.zeros(normal.shape, dtype=np.uint8)
    if window is None:
        return mask
    changed = np.abs(defective[window] - normal[window]) > MASK_THRESHOLD
    # a displaced layer leaves unchanged pixels where old and new material agree: close those gaps
    # (no hole filling: a collapsing core or a dent would enclose pixels that did not change)
    closed = ndimage.binary_closing(changed, iterations=2) | changed
    mask[window] = closed.astype(np.uint8) * 255
    return mask


def render_slice(spec: SliceSpec) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint8]]:
    """The slice (uint16, size x size) and its defect mask (uint8 0/255; all zero for a normal slice)."""
    coords = cell_coordinates(spec.cell, spec.size)
    normal = optics(phantom(spec.cell, coords), coords, spec.cell, spec.imaging, spec.size)
    if spec.defect is None:
        return detector(normal, spec.imaging, spec.size), np.zeros((spec.size, spec.size), dtype=np.uint8)
    defective, window = _defective(spec, coords, normal)
    return detector(defective, spec.imaging, spec.size), _mask(normal, defective, window)
