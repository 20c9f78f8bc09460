"""The CT-machine simulator: synthetic axial slices of cylindrical Li-ion cells, normal or defective.

    image, mask = render_slice(spec)                       # one slice from its description
    image, mask = random_normal_slice(rng, 256)            # uint16 slice, all-zero uint8 mask
    image, mask = random_defect_slice(rng, 256, "pore", "medium")
    generate_dataset(Path("data"), normal=200, defect=80, seed=1)   # what `battery-ct synth` writes

Images are uint16 (full 16-bit range), masks uint8 0/255. See docs/SIMULATOR.md.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from producers.simulator.dataset import DatasetError, generate_dataset, plan_dataset, planned_slice
from producers.simulator.render import render_slice
from producers.simulator.sampling import random_spec
from producers.simulator.spec import (
    DEFECT_TYPES,
    SEVERITIES,
    CellSpec,
    DefectSpec,
    DefectType,
    ImagingSpec,
    Severity,
    SliceSpec,
)

__all__ = [
    "DEFECT_TYPES",
    "SEVERITIES",
    "CellSpec",
    "DatasetError",
    "DefectSpec",
    "DefectType",
    "ImagingSpec",
    "Severity",
    "SliceSpec",
    "generate_dataset",
    "plan_dataset",
    "planned_slice",
    "random_defect_slice",
    "random_normal_slice",
    "random_spec",
    "render_slice",
]

Slice = tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint8]]


def random_normal_slice(rng: np.random.Generator, size: int = 256) -> Slice:
    """A random normal slice and its (empty) mask."""
    return render_slice(random_spec(rng, size))


def random_defect_slice(
    rng: np.random.Generator, size: int = 256, defect_type: DefectType = "pore", severity: Severity = "medium"
) -> Slice:
    """A random slice with one defect of the given type and severity, and the defect's mask."""
    if defect_type not in DEFECT_TYPES:
        raise ValueError(f"unknown defect type {defect_type!r}; known: {', '.join(DEFECT_TYPES)}")
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}; known: {', '.join(SEVERITIES)}")
    return render_slice(random_spec(rng, size, defect_type, severity))
