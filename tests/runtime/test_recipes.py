"""Recipes as a service reads them: kept for a while, a missing one is an answer, and the
measurement fields a verdict gets from a plan."""

from __future__ import annotations

from pathlib import Path

from model_core.blob_store import LocalBlobStore
from model_core.metrology.plan import MeasurePlan
from model_core.recipe_book import RecipeBook
from runtime.recipes import NoPlan, RecipeCache, cell_check
from schemas.measurements import Measurement
from schemas.recipes import Recipe

RECIPE = Recipe.model_validate(
    {"name": "21700", "pixel_mm": 0.034, "tolerances": {"can.outer_diameter_mm": {"min": 20.9, "max": 21.3}}}
)


class CountingStore(LocalBlobStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.lists = 0

    def list(self, prefix: str) -> list[str]:
        self.lists += 1
        return super().list(prefix)


async def test_a_recipe_is_read_once_per_refresh_and_a_missing_one_says_so(tmp_path: Path) -> None:
    store = CountingStore(tmp_path)
    book = RecipeBook(store)
    book.add(RECIPE)
    now = [0.0]
    cache = RecipeCache(book, refresh_s=60, clock=lambda: now[0])
    first = await cache.get("21700")
    reads = store.lists
    assert isinstance(first, Recipe) and first.version == 1
    assert await cache.get("21700") == first and store.lists == reads  # kept
    book.add(RECIPE.model_copy(update={"description": "wider"}))
    assert await cache.get("21700") == first  # until the refresh
    now[0] = 61.0
    second = await cache.get("21700")
    assert isinstance(second, Recipe) and second.version == 2
    missing = await cache.get("4680")
    assert isinstance(missing, str) and "not in the registry" in missing


async def test_a_plan_takes_the_events_recipe_else_the_default_and_the_events_pixel_size(tmp_path: Path) -> None:
    book = RecipeBook(LocalBlobStore(tmp_path))
    book.add(RECIPE)
    cache = RecipeCache(book, refresh_s=60)
    plan = await cache.plan(None, default="21700", pixel_mm=None)
    assert isinstance(plan, MeasurePlan) and plan.pixel_mm == 0.034 and plan.families == {"can"}
    plan = await cache.plan("21700", default=None, pixel_mm=0.05)
    assert isinstance(plan, MeasurePlan) and plan.pixel_mm == 0.05
    none = await cache.plan(None, default=None, pixel_mm=None)
    assert isinstance(none, NoPlan) and none.recipe is None and "no recipe" in none.reason


def test_the_verdict_fields_of_a_measured_scan_a_failed_check_and_no_plan() -> None:
    plan = MeasurePlan(RECIPE.model_copy(update={"version": 2}), 0.034, frozenset({"can"}))
    measured = {"can.outer_diameter_mm": Measurement(value=21.5, unit="mm", confidence=0.9)}
    check = cell_check(plan, measured, None)
    assert (check.recipe, check.pixel_mm, check.conforms) == ("21700", 0.034, False)
    assert check.conformance is not None and check.conformance.failed == ("can.outer_diameter_mm",)
    assert check.conformance.recipe_version == 2
    failed = cell_check(plan, None, "measuring failed: boom")
    assert (
        failed.conforms is None
        and failed.conformance is not None
        and failed.conformance.reason == ("measuring failed: boom")
    )
    unknown = cell_check(NoPlan("4680", "recipe '4680' is not in the registry"), None, None)
    assert (unknown.recipe, unknown.conforms, unknown.measurements) == ("4680", None, None)
    assert cell_check(None, None, None).conformance is None
