"""A cell's measurements against its recipe's tolerances: which checks pass, which fail, and
whether the cell conforms.

A failed check makes the cell non-conforming even when other checks could not be made; otherwise
a check that could not be made (the value is null, or in pixels for want of a pixel size) leaves
`conforms` null, with the reason, rather than passing a cell nobody measured.
"""

from __future__ import annotations

from schemas.measurements import Measurement, MeasurementName, Measurements
from schemas.recipes import CheckResult, Conformance, Recipe, Tolerance

NO_RECIPE = "no recipe: nothing to check the measurements against"


def check_one(name: MeasurementName, measured: Measurement | None, tolerance: Tolerance) -> CheckResult:
    bounds = {"nominal": tolerance.nominal, "min": tolerance.min, "max": tolerance.max}
    if measured is None:
        return CheckResult(name=name, value=None, unit="", passed=None, reason="not measured", **bounds)
    unknown: str | None = None
    if measured.value is None:
        unknown = measured.reason or "could not be measured"
    elif measured.unit == "px" and name.endswith("_mm"):
        unknown = "no pixel size: the value is in pixels"
    if unknown is not None:
        return CheckResult(name=name, value=measured.value, unit=measured.unit, passed=None, reason=unknown, **bounds)
    assert measured.value is not None
    passed = tolerance.admits(measured.value)
    reason = None if passed else _outside(measured.value, tolerance)
    return CheckResult(name=name, value=measured.value, unit=measured.unit, passed=passed, reason=reason, **bounds)


def _outside(value: float, tolerance: Tolerance) -> str:
    if tolerance.min is not None and value < tolerance.min:
        return f"{value:.4g} is below the minimum {tolerance.min:g}"
    return f"{value:.4g} is above the maximum {tolerance.max:g}"


def conformance(measurements: Measurements | None, recipe: Recipe | None) -> Conformance:
    if recipe is None:
        return Conformance(recipe=None, conforms=None, reason=NO_RECIPE)
    found = measurements or {}
    checks = tuple(check_one(name, found.get(name), tolerance) for name, tolerance in recipe.tolerances.items())
    failed = tuple(c.name for c in checks if c.passed is False)
    unknown = [c for c in checks if c.passed is None]
    conforms: bool | None
    if failed:
        conforms, reason = False, "; ".join(f"{c.name}: {c.reason}" for c in checks if c.passed is False)
    elif unknown:
        conforms, reason = None, "; ".join(f"{c.name}: {c.reason}" for c in unknown)
    elif not checks:
        conforms, reason = None, f"recipe {recipe.name} has no tolerances"
    else:
        conforms, reason = True, None
    return Conformance(
        recipe=recipe.name,
        recipe_version=recipe.version,
        conforms=conforms,
        failed=failed,
        reason=reason,
        checks=checks,
    )
