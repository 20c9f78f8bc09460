"""The statistics page: per recipe and day, cells judged and flagged and what operators made of
the flags, which is the detector's precision on the line, with the trend drawn per recipe."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from facade.web.chart import Series, trend_svg
from facade.web.deps import DatabaseDep, PersonDep, in_database
from facade.web.render import render
from reviews.stats import DayFigures, daily

router = APIRouter()


def recipe_chart(figures: list[DayFigures]) -> Markup:
    """Counts per day of one recipe, oldest day first; days without cells are zeros, not gaps."""
    by_day = {f.day: f for f in figures}
    first, last = min(by_day), max(by_day)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]

    def column(name: str) -> list[float | None]:
        return [float(getattr(by_day[d], name)) if d in by_day else 0.0 for d in days]

    return trend_svg(
        days,
        [
            Series("flagged", "s-flagged", column("flagged")),
            Series("confirmed defects", "s-defects", column("confirmed_defects")),
            Series("false alarms", "s-false", column("false_alarms")),
        ],
        title=f"{figures[0].recipe}: flagged, confirmed defects and false alarms per day",
    )


@router.get("/stats", response_class=HTMLResponse)
async def stats_page(
    request: Request, person: PersonDep, database: DatabaseDep, days: Annotated[int, Query(ge=1, le=366)] = 30
) -> Response:
    figures = await in_database(database, lambda s: daily(s, days=days))
    per_recipe: dict[str, list[DayFigures]] = defaultdict(list)
    for f in figures:
        per_recipe[f.recipe].append(f)
    recipes = [
        {
            "recipe": recipe,
            "rows": rows,
            "chart": recipe_chart(rows),
            "totals": _totals(rows),
        }
        for recipe, rows in sorted(per_recipe.items())
    ]
    return render(request, "stats.html", person=person, title="Statistics", nav="stats", recipes=recipes, days=days)


def _totals(rows: list[DayFigures]) -> DayFigures:
    return DayFigures(
        recipe=rows[0].recipe,
        day=max(r.day for r in rows) if rows else date.today(),
        judged=sum(r.judged for r in rows),
        flagged=sum(r.flagged for r in rows),
        confirmed_defects=sum(r.confirmed_defects for r in rows),
        false_alarms=sum(r.false_alarms for r in rows),
        unusable=sum(r.unusable for r in rows),
        out_of_tolerance=sum(r.out_of_tolerance for r in rows),
    )
