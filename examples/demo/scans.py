"""Simulated scans with known truth: what the demo streams and what the report shows next to the verdicts."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from producers.simulator import planned_slice, render_slice

CAN_DIAMETER_MM = 21.0


@dataclass(frozen=True)
class SimulatedScan:
    """One slice as the CT machine would send it (16-bit PNG bytes) and what the simulator knows of it."""

    scan_id: str
    png: bytes
    image: np.ndarray  # uint16, as rendered
    mask: np.ndarray | None  # uint8 0/255 for a defect, None for a normal slice
    defect_type: str | None
    severity: str | None
    pixel_mm: float  # as the CT machine reports it: this cell's can is 21 mm across (a 21700 cell)

    @property
    def is_defect(self) -> bool:
        return self.defect_type is not None


def png_of(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def simulated_scans(count: int, defect_share: float, *, size: int, seed: int, prefix: str) -> list[SimulatedScan]:
    """`count` slices, about `defect_share` of them defective (cycling through the defect types and
    severities), shuffled; ids `<prefix>-<n>`. The same arguments give the same scans."""
    rng = np.random.default_rng(seed)
    defects = round(count * defect_share)
    kinds = [True] * defects + [False] * (count - defects)
    rng.shuffle(kinds)
    scans, n_defect, n_normal = [], 0, 0
    for number, defect in enumerate(kinds):
        index = n_defect if defect else n_normal
        plan = planned_slice(seed, index, size=size, defect=defect)
        n_defect, n_normal = n_defect + defect, n_normal + (not defect)
        image, mask = render_slice(plan.spec)
        spec = plan.spec.defect
        scans.append(
            SimulatedScan(
                scan_id=f"{prefix}-{number:04d}",
                png=png_of(image),
                image=image,
                mask=mask if spec is not None else None,
                defect_type=None if spec is None else spec.type,
                severity=None if spec is None else spec.severity,
                pixel_mm=CAN_DIAMETER_MM / 2 / plan.spec.cell.radius,
            )
        )
    return scans
