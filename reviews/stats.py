"""The detector in production, per recipe and day: cells judged and flagged, and what operators
made of the flags (confirmed defects, false alarms), which gives its precision on the line."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, computed_field
from sqlalchemy import Date, and_, case, cast, func, select
from sqlalchemy.orm import Session

from reviews.tables import Cell
from schemas.base import utc_now


class DayFigures(BaseModel):
    model_config = ConfigDict(frozen=True)

    recipe: str
    day: date
    judged: int
    flagged: int
    confirmed_defects: int
    false_alarms: int
    unusable: int
    out_of_tolerance: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def precision(self) -> float | None:
        """Confirmed defects over the flags operators have decided; null before any decision."""
        decided = self.confirmed_defects + self.false_alarms
        return self.confirmed_defects / decided if decided else None


NO_RECIPE = "(none)"


def _count(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def daily(session: Session, *, days: int = 30, now: datetime | None = None) -> list[DayFigures]:
    """Figures of the last `days` days (UTC), newest day first, recipes by name."""
    since = (now or utc_now()) - timedelta(days=days)
    day: Any
    if session.get_bind().dialect.name == "sqlite":
        day = func.date(Cell.judged_at)
    else:
        day = cast(func.timezone("UTC", Cell.judged_at), Date)
    recipe = func.coalesce(Cell.recipe, NO_RECIPE)
    rows = session.execute(
        select(
            recipe,
            day,
            func.count(),
            _count(Cell.is_anomaly.is_(True)),
            _count(and_(Cell.is_anomaly.is_(True), Cell.decided_label == "defect")),
            _count(and_(Cell.is_anomaly.is_(True), Cell.decided_label == "normal")),
            _count(Cell.status == "unusable"),
            _count(Cell.conforms.is_(False)),
        )
        .where(Cell.judged_at >= since)
        .group_by(recipe, day)
    ).all()
    figures = [
        DayFigures(
            recipe=r[0],
            day=r[1] if isinstance(r[1], date) else date.fromisoformat(str(r[1])),
            judged=r[2],
            flagged=r[3],
            confirmed_defects=r[4],
            false_alarms=r[5],
            unusable=r[6],
            out_of_tolerance=r[7],
        )
        for r in rows
    ]
    return sorted(figures, key=lambda f: (-f.day.toordinal(), f.recipe))


class RecipeModel(BaseModel):
    """Which model judged a recipe's cells last, and when: what serves it on the line."""

    model_config = ConfigDict(frozen=True)

    recipe: str
    model_version: str
    judged_at: datetime
    cells: int  # of this recipe judged by that model


def models_by_recipe(session: Session) -> list[RecipeModel]:
    """Per recipe (by name; cells without one under "(none)"), the model of its latest verdict."""
    recipes = session.scalars(select(Cell.recipe).distinct()).all()
    found = []
    for name in recipes:
        same = Cell.recipe.is_(None) if name is None else Cell.recipe == name
        latest = session.execute(
            select(Cell.model_version, Cell.judged_at).where(same).order_by(Cell.judged_at.desc()).limit(1)
        ).one()
        cells = session.scalar(
            select(func.count()).select_from(Cell).where(same, Cell.model_version == latest.model_version)
        )
        version, judged_at = latest.model_version, latest.judged_at
        recipe = name or NO_RECIPE
        found.append(RecipeModel(recipe=recipe, model_version=version, judged_at=judged_at, cells=cells or 0))
    return sorted(found, key=lambda r: r.recipe)
