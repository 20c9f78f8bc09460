"""A cell's measurements against a recipe: each failed check named, and null where a check could not be made."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from model_core.metrology.conformance import NO_RECIPE, conformance
from schemas.measurements import Measurement, Measurements
from schemas.recipes import Recipe

RECIPE = Recipe.model_validate(
    {
        "name": "21700-nmc",
        "version": 3,
        "tolerances": {
            "can.outer_diameter_mm": {"nominal": 21.1, "min": 20.95, "max": 21.25},
            "can.wall_min_mm": {"min": 0.22},
            "overhang.min_mm": {"min": 0.1},
        },
    }
)


def mm(value: float | None, reason: str | None = None) -> Measurement:
    return Measurement(value=value, unit="mm", reason=reason)


def good() -> Measurements:
    return {"can.outer_diameter_mm": mm(21.12), "can.wall_min_mm": mm(0.25), "overhang.min_mm": mm(0.42)}


def test_a_cell_within_every_tolerance_conforms() -> None:
    result = conformance(good(), RECIPE)
    assert (result.conforms, result.failed, result.recipe, result.recipe_version) == (True, (), "21700-nmc", 3)
    assert [c.passed for c in result.checks] == [True, True, True]


def test_a_failing_tolerance_gives_conforms_false_naming_it() -> None:
    measured = good() | {"overhang.min_mm": mm(-0.05)}
    result = conformance(measured, RECIPE)
    assert result.conforms is False and result.failed == ("overhang.min_mm",)
    assert result.reason is not None and "below the minimum 0.1" in result.reason


def test_a_failure_wins_over_a_check_that_could_not_be_made() -> None:
    measured = good() | {"can.outer_diameter_mm": mm(21.4), "overhang.min_mm": mm(None, "no end region in the volume")}
    result = conformance(measured, RECIPE)
    assert result.conforms is False and result.failed == ("can.outer_diameter_mm",)
    (unknown,) = [c for c in result.checks if c.passed is None]
    assert unknown.reason == "no end region in the volume"


def test_an_unmeasured_value_leaves_conforms_null_with_the_reason() -> None:
    measured = good()
    del measured["overhang.min_mm"]
    result = conformance(measured, RECIPE)
    assert result.conforms is None and result.failed == ()
    assert result.reason == "overhang.min_mm: not measured"


def test_values_in_pixels_are_not_judged() -> None:
    measured = {name: Measurement(value=m.value, unit="px") for name, m in good().items()}
    result = conformance(measured, RECIPE)
    assert result.conforms is None
    assert all(c.reason == "no pixel size: the value is in pixels" for c in result.checks)


def test_no_recipe_means_nothing_to_check() -> None:
    result = conformance(good(), None)
    assert (result.conforms, result.reason) == (None, NO_RECIPE)


def test_a_recipe_refuses_an_empty_or_inverted_tolerance_and_unknown_names() -> None:
    for tolerance in ({}, {"min": 2.0, "max": 1.0}, {"nominal": 3.0, "max": 2.0}):
        with pytest.raises(ValidationError):
            Recipe.model_validate({"name": "r", "tolerances": {"can.wall_min_mm": tolerance}})
    with pytest.raises(ValidationError):
        Recipe.model_validate({"name": "r", "tolerances": {"can.radius_mm": {"max": 1.0}}})
    assert RECIPE.families() == {"can", "overhang"}
