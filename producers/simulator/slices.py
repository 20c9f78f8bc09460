"""Random slices as arrays, for tests, the demo and benchmarks (no files)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from producers.simulator.render import render_slice
from producers.simulator.sampling import random_spec
from producers.simulator.spec import DEFECT_TYPES, SEVERITIES

Slice = tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint8]]


def random_normal_slice(rng: np.random.Generator, size: int = 256) -> Slice:
    """A random normal slice and its (empty) mask."""
    return render_slice(random_spec(rng, size))


def random_defect_slice(
    rng: np.random.Generator, size: int = 256, defect_type: str = "pore", severity: str = "medium"
) -> Slice:
    """A random slice with one defect of the given type and severity, and the defect's mask.
    Plain strings are accepted (and checked) so that callers can pass names read from anywhere."""
    if defect_type not in DEFECT_TYPES:
        raise ValueError(f"unknown defect type {defect_type!r}; known: {', '.join(DEFECT_TYPES)}")
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}; known: {', '.join(SEVERITIES)}")
    return render_slice(random_spec(rng, size, defect_type, severity))  # narrowed by the checks above
