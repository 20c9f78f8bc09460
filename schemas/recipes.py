"""A recipe: one cell design's nominal values and tolerances per measurement, and what a verdict
says of a cell measured against it (`Conformance`).

Recipes are JSON or YAML files people write (`battery-ct recipes import FILE`); the registry
bucket keeps every version (`model_core.recipe_book`). A scan event names its recipe (`recipe`),
or the `default_recipe` setting does.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from schemas.measurements import Family, MeasurementName, family_of

RecipeName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


class Tolerance(BaseModel):
    """The accepted range of one measurement: `min` and/or `max` (inclusive), around `nominal`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    nominal: float | None = None
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _a_range(self) -> Self:
        if self.min is None and self.max is None:
            raise ValueError("a tolerance needs a min, a max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        if self.nominal is not None and not self.admits(self.nominal):
            raise ValueError(f"nominal {self.nominal} lies outside its own range [{self.min}, {self.max}]")
        return self

    def admits(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


class Recipe(BaseModel):
    """A cell design. `version` is given by the registry on import (a file may leave it out)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: RecipeName
    version: int | None = Field(None, ge=1, description="set by the registry on import")
    description: str = Field("", max_length=2000)
    pixel_mm: float | None = Field(
        None, gt=0, le=10, description="pixel size of this design's scans when the scan event gives none"
    )
    tolerances: dict[MeasurementName, Tolerance] = Field(default_factory=dict)

    def families(self) -> frozenset[Family]:
        """The measurement families its checks need: the rest is not measured for this recipe."""
        return frozenset(family_of(name) for name in self.tolerances)


class CheckResult(BaseModel):
    """One tolerance check of one measurement: passed, failed, or `passed: null` with the reason."""

    model_config = ConfigDict(frozen=True)

    name: MeasurementName
    value: float | None
    unit: str
    nominal: float | None = None
    min: float | None = None
    max: float | None = None
    passed: bool | None
    reason: str | None = None


class Conformance(BaseModel):
    """A cell against its recipe: `conforms` true, false (naming every failed check) or null with
    the reason (no recipe, no pixel size, a checked value that could not be measured)."""

    model_config = ConfigDict(frozen=True)

    recipe: RecipeName | None
    recipe_version: int | None = None
    conforms: bool | None
    failed: tuple[MeasurementName, ...] = ()
    reason: str | None = None
    checks: tuple[CheckResult, ...] = ()
