"""The CT-machine simulator: synthetic axial slices of cylindrical Li-ion cells, normal or defective.

    image, mask = render_slice(spec)                       # one slice from its description
    image, mask = random_normal_slice(rng, 256)            # uint16 slice, all-zero uint8 mask
    image, mask = random_defect_slice(rng, 256, "pore", "medium")
    generate_dataset(Path("data"), normal=200, defect=80, seed=1)   # what `battery-ct synth` writes

Images are uint16 (full 16-bit range), masks uint8 0/255. See docs/SIMULATOR.md.
The rendering parts (scipy, Pillow) load on first use, so that `battery-ct --help` stays quick.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from producers.simulator.dataset import DatasetError, generate_dataset, plan_dataset, planned_slice
    from producers.simulator.render import render_slice
    from producers.simulator.sampling import random_spec
    from producers.simulator.slices import random_defect_slice, random_normal_slice

_LAZY = {
    "DatasetError": "dataset",
    "generate_dataset": "dataset",
    "plan_dataset": "dataset",
    "planned_slice": "dataset",
    "render_slice": "render",
    "random_spec": "sampling",
    "random_defect_slice": "slices",
    "random_normal_slice": "slices",
}

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
