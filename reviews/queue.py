"""What operators look at: the queue of cells to review (newest first, filtered) and one cell with
its verdict history and decisions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from reviews.tables import Cell, Decision, VerdictRecord

QueueReason = Literal["anomaly", "out_of_tolerance", "unusable", "audit"]
PAGE_SIZE = 50
AnySelect = TypeVar("AnySelect", bound=Select[*tuple[Any, ...]])  # a query keeps its row type


class QueueFilter(BaseModel):
    """The queue's filters; every one optional. `page` counts from 1."""

    model_config = ConfigDict(frozen=True)

    recipe: str | None = Field(None, max_length=64)
    reason: QueueReason | None = None
    model_version: str | None = Field(None, max_length=64)
    since: datetime | None = None
    until: datetime | None = None
    page: int = Field(1, ge=1, le=10_000)
    page_size: int = Field(PAGE_SIZE, ge=1, le=200)

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, moment: datetime | None) -> datetime | None:
        # A date from a form ("2026-12-01") or a time without a zone means UTC, as the database keeps it.
        if moment is None or moment.tzinfo is not None:
            return moment
        return moment.replace(tzinfo=UTC)


class CellSummary(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)

    scan_id: str
    recipe: str | None
    queue_reason: str | None
    status: str
    is_anomaly: bool
    anomaly_score: float
    threshold: float
    conforms: bool | None
    model_version: str
    judged_at: datetime
    heatmap_url: str | None
    decided_label: str | None


class QueuePage(BaseModel):
    model_config = ConfigDict(frozen=True)

    cells: list[CellSummary]
    total: int
    page: int
    pages: int


class QueueChoices(BaseModel):
    """The values the filters can take (for the queue's drop-downs)."""

    model_config = ConfigDict(frozen=True)

    recipes: list[str]
    model_versions: list[str]


class DecisionView(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: int
    scan_id: str
    username: str
    label: str
    kind: str | None
    comment: str | None
    decided_at: datetime
    overrides_id: int | None
    model_version: str


class VerdictView(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)

    model_version: str
    is_anomaly: bool
    anomaly_score: float
    threshold: float
    judged_at: datetime


class CellDetail(BaseModel):
    model_config = ConfigDict(frozen=True)

    cell: CellSummary
    image_url: str
    reconstruction_error: float
    findings: list[dict[str, Any]]
    measurements: dict[str, Any]
    reasons: list[str]
    history: list[VerdictView] = Field(description="every verdict of the cell, oldest first")
    decisions: list[DecisionView] = Field(description="oldest first; the last one stands")

    @property
    def current_decision(self) -> DecisionView | None:
        return self.decisions[-1] if self.decisions else None


def _filtered(query: AnySelect, f: QueueFilter) -> AnySelect:
    query = query.where(Cell.in_queue.is_(True))
    if f.recipe is not None:
        query = query.where(Cell.recipe == f.recipe)
    if f.reason is not None:
        query = query.where(Cell.queue_reason == f.reason)
    if f.model_version is not None:
        query = query.where(Cell.model_version == f.model_version)
    if f.since is not None:
        query = query.where(Cell.judged_at >= f.since)
    if f.until is not None:
        query = query.where(Cell.judged_at < f.until)
    return query


def queue(session: Session, f: QueueFilter) -> QueuePage:
    """The cells waiting for a decision that match `f`, newest first, one page."""
    total = session.scalar(_filtered(select(func.count()).select_from(Cell), f)) or 0
    rows = session.scalars(
        _filtered(select(Cell), f)
        .order_by(Cell.judged_at.desc(), Cell.scan_id)
        .limit(f.page_size)
        .offset((f.page - 1) * f.page_size)
    ).all()
    pages = max(1, -(-total // f.page_size))
    return QueuePage(cells=[CellSummary.model_validate(r) for r in rows], total=total, page=f.page, pages=pages)


def summary(session: Session, f: QueueFilter) -> tuple[dict[str, int], QueueChoices]:
    """What the queue page shows beside its rows, in one grouped query over the waiting cells in
    `f`'s dates: the cells waiting per reason under `f`'s other filters, and the recipes and model
    versions there are to filter by."""
    dated = f.model_copy(update={"recipe": None, "reason": None, "model_version": None})
    query = _filtered(select(Cell.queue_reason, Cell.recipe, Cell.model_version, func.count()), dated)
    rows = session.execute(query.group_by(Cell.queue_reason, Cell.recipe, Cell.model_version)).all()
    groups: list[tuple[str, str | None, str, int]] = [(str(r[0]), r[1], r[2], int(r[3])) for r in rows]
    counts: dict[str, int] = {}
    for reason, recipe, version, count in groups:
        if (f.recipe is None or recipe == f.recipe) and (f.model_version is None or version == f.model_version):
            counts[reason] = counts.get(reason, 0) + count
    found = QueueChoices(
        recipes=sorted({recipe for _, recipe, _, _ in groups if recipe}),
        model_versions=sorted({version for _, _, version, _ in groups}, reverse=True),
    )
    return counts, found


def cell_detail(session: Session, scan_id: str) -> CellDetail | None:
    cell = session.get(Cell, scan_id)
    if cell is None:
        return None
    history = session.scalars(
        select(VerdictRecord).where(VerdictRecord.scan_id == scan_id).order_by(VerdictRecord.judged_at)
    ).all()
    decisions = session.scalars(select(Decision).where(Decision.scan_id == scan_id).order_by(Decision.id)).all()
    return CellDetail(
        cell=CellSummary.model_validate(cell),
        image_url=cell.image_url,
        reconstruction_error=cell.reconstruction_error,
        findings=list(cell.findings or []),
        measurements=dict(cell.measurements or {}),
        reasons=[str(r) for r in cell.reasons or []],
        history=[VerdictView.model_validate(v) for v in history],
        decisions=[DecisionView.model_validate(d) for d in decisions],
    )
