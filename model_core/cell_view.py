"""The seam between a cell's geometry and the patch memory: a *cell view* unrolls a slice to a
layer grid and draws values on that grid back onto the slice.

A layer grid is a 2-D array whose rows follow the cell's layers (row 0 at the cell's core or one
wall, the last row just outside the casing) and whose columns run along each layer. Laid out like
this, every cell's layers become near-horizontal stripes at comparable rows, so the patch memory
can compare like with like without knowing the cell's shape. Some views close on themselves: the
last column of a cylindrical cell's grid continues into its first (one full turn), and a rotation
of the cell becomes a circular shift. A view says so with `wraps`; the memory's patches,
smoothing and trends wrap across that seam only when it does.

Views are chosen by name (`cell_view(name)`), the name the detector's spec records, so a
checkpoint always scores with the geometry it was trained on. Today there is one view,
`cylindrical` (the can's ellipse and a polar unwrap along it, `model_core.geometry`); a prismatic
or pouch view plugs in by adding a class with the same members to `CELL_VIEWS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from model_core.geometry import CanGeometry, find_can, grid_coordinates, rewrap, unwrap, unwrap_fast

CYLINDRICAL = "cylindrical"
DEFAULT_CELL_VIEW = CYLINDRICAL

Location = TypeVar("Location")


@dataclass(frozen=True)
class LayerGrid:
    """Sampling of the unrolled slice: `rows` across the layers (from the core out to `extent`
    times the cell's own size: can radii for a cylindrical cell), `columns` along them."""

    rows: int
    columns: int
    extent: float = 1.04


class CellView(Protocol[Location]):
    """How one kind of cell is found in a slice and laid out as a layer grid."""

    @property
    def name(self) -> str:
        """The name detector specs record (`DetectorSpec.cell_view`)."""
        ...

    @property
    def wraps(self) -> bool:
        """Whether the grid's last column continues into its first."""
        ...

    def locate(self, image: np.ndarray) -> Location:
        """Where the cell is in the slice (pixel coordinates); any square slice gets an answer."""
        ...

    def unroll(self, image: np.ndarray, location: Location, grid: LayerGrid) -> np.ndarray:
        """The slice resampled on the layer grid: (grid.rows, grid.columns) float32."""
        ...

    def map_back(self, values: np.ndarray, location: Location, grid: LayerGrid, shape: tuple[int, int]) -> np.ndarray:
        """Values on the layer grid drawn onto the slice's pixels, `shape`; 0 outside the grid."""
        ...

    def locate_fast(self, image: np.ndarray) -> Location:
        """`locate` for the fast scoring path: the same search with cheaper filters."""
        ...

    def unroll_fast(self, image: np.ndarray, location: Location, grid: LayerGrid) -> np.ndarray:
        """`unroll` for the fast scoring path (`model_core.fast_path`): the same sampling through
        a cheaper interpolator, equal to within its fixed-point precision."""
        ...

    def grid_coordinates(
        self, location: Location, grid: LayerGrid, shape: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every pixel's fractional (row, column) on the layer grid, as `map_back` samples it
        (rows beyond `grid.rows - 0.5` lie outside the grid); the fast path's map back."""
        ...


class CylindricalView:
    """A cylindrical cell's axial slice: the can fitted as an ellipse and the slice unwrapped in
    polar coordinates along it (rows: radius in can radii, columns: one full turn, wrapping)."""

    name = CYLINDRICAL
    wraps = True

    def locate(self, image: np.ndarray) -> CanGeometry:
        return find_can(image)

    def unroll(self, image: np.ndarray, location: CanGeometry, grid: LayerGrid) -> np.ndarray:
        return unwrap(image, location, grid)

    def map_back(
        self, values: np.ndarray, location: CanGeometry, grid: LayerGrid, shape: tuple[int, int]
    ) -> np.ndarray:
        return rewrap(values, location, shape, grid.extent)

    def locate_fast(self, image: np.ndarray) -> CanGeometry:
        return find_can(image, fast=True)

    def unroll_fast(self, image: np.ndarray, location: CanGeometry, grid: LayerGrid) -> np.ndarray:
        return unwrap_fast(image, location, grid)

    def grid_coordinates(
        self, location: CanGeometry, grid: LayerGrid, shape: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        return grid_coordinates(location, shape, grid)


CELL_VIEWS: dict[str, Callable[[], CellView[Any]]] = {CYLINDRICAL: CylindricalView}


def cell_view(name: str = DEFAULT_CELL_VIEW) -> CellView[Any]:
    """The view registered under `name`; `ValueError` for a name no view has."""
    try:
        factory = CELL_VIEWS[name]
    except KeyError:
        raise ValueError(f"unknown cell view {name!r}; known: {', '.join(sorted(CELL_VIEWS))}") from None
    return factory()
