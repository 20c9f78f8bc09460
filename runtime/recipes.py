"""The recipes a service measures scans against: read from the registry's store, kept for
`recipe_refresh_s`, and the measurement plan of one scan (which families, at which pixel size).

A recipe that is not in the registry is an answer too (the verdict says so), kept as long; an
unreachable store is retried by the caller like any transient failure of the object store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from model_core.metrology.conformance import conformance
from model_core.metrology.plan import MeasurePlan
from model_core.recipe_book import RecipeBook, UnknownRecipe
from schemas.measurements import Measurements
from schemas.recipes import Conformance, Recipe


@dataclass(frozen=True)
class NoPlan:
    """Why a scan is not measured: no recipe named, or one the registry does not have."""

    recipe: str | None
    reason: str


class RecipeCache:
    def __init__(self, book: RecipeBook, *, refresh_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._book = book
        self._refresh_s = refresh_s
        self._clock = clock
        self._kept: dict[str, tuple[float, Recipe | str]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, name: str) -> Recipe | str:
        """The newest version of recipe `name`, or why there is none. Store errors propagate."""
        kept = self._kept.get(name)
        if kept is not None and self._clock() - kept[0] < self._refresh_s:
            return kept[1]
        async with self._locks.setdefault(name, asyncio.Lock()):  # one read per recipe, not one per scan
            kept = self._kept.get(name)
            if kept is not None and self._clock() - kept[0] < self._refresh_s:
                return kept[1]
            try:
                found: Recipe | str = await asyncio.to_thread(self._book.get, name)
            except UnknownRecipe as exc:
                found = str(exc)
            self._kept[name] = (self._clock(), found)
            return found

    async def plan(self, recipe: str | None, *, default: str | None, pixel_mm: float | None) -> MeasurePlan | NoPlan:
        """The plan of a scan whose event names `recipe` (else `default`) and `pixel_mm`."""
        name = recipe or default
        if name is None:
            return NoPlan(None, "no recipe: the scan event names none and no default_recipe is set")
        found = await self.get(name)
        if isinstance(found, str):
            return NoPlan(name, found)
        return MeasurePlan(found, pixel_mm if pixel_mm is not None else found.pixel_mm, found.families())


@dataclass(frozen=True)
class CellCheck:
    """What a verdict says of a scan's measurements: the fields it adds (schema 1.1)."""

    recipe: str | None = None
    pixel_mm: float | None = None
    measurements: Measurements | None = None
    conforms: bool | None = None
    conformance: Conformance | None = None


def cell_check(plan: MeasurePlan | NoPlan | None, measured: Measurements | None, error: str | None) -> CellCheck:
    """The verdict's measurement fields for a scan measured (or not) under `plan`."""
    if plan is None:
        return CellCheck()
    if isinstance(plan, NoPlan):
        return CellCheck(
            recipe=plan.recipe,
            conformance=Conformance(recipe=plan.recipe, conforms=None, reason=plan.reason),
        )
    if error is not None:
        judged = Conformance(recipe=plan.recipe.name, recipe_version=plan.recipe.version, conforms=None, reason=error)
    else:
        judged = conformance(measured, plan.recipe)
    return CellCheck(plan.recipe.name, plan.pixel_mm, measured, judged.conforms, judged)
