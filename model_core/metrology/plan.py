"""What to measure of one scan, and against which recipe (a service makes one per scan)."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.measurements import Family
from schemas.recipes import Recipe


@dataclass(frozen=True)
class MeasurePlan:
    recipe: Recipe
    pixel_mm: float | None
    families: frozenset[Family]
