"""The queue of cells to review, one cell's page, and the decision an operator posts about it."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from facade.api.deps import ServicesDep
from facade.web.deps import CheckedFormDep, DatabaseDep, PersonDep, in_database
from facade.web.errors import PageError
from facade.web.forms import DecisionForm, QueueQuery
from facade.web.render import PREFIX, cell_url, redirect, render
from reviews.decisions import DecisionRequest, OverrideRequired, UnknownCell, decide
from reviews.queue import CellDetail, QueueChoices, QueuePage, cell_detail, queue, summary
from schemas.base import summarise_errors

router = APIRouter()

REASONS = {
    "anomaly": "Flagged",
    "out_of_tolerance": "Out of tolerance",
    "unusable": "Unusable",
    "audit": "Audit sample",
}


def queue_query(request: Request) -> QueueQuery:
    try:
        return QueueQuery.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise PageError(422, "Filter not understood", summarise_errors(exc.errors(), whole="filter")) from exc


QueueQueryDep = Annotated[QueueQuery, Depends(queue_query)]


def _queue_view(session: Session, query: QueueQuery) -> tuple[QueuePage, QueueChoices, dict[str, int]]:
    wanted = query.to_filter()
    counts, available = summary(session, wanted)
    return queue(session, wanted), available, {reason: counts.get(reason, 0) for reason in REASONS}


@router.get("/", response_class=HTMLResponse)
async def queue_page(request: Request, person: PersonDep, database: DatabaseDep, query: QueueQueryDep) -> Response:
    page, available, counts = await in_database(database, lambda s: _queue_view(s, query))
    return render(
        request,
        "queue.html",
        person=person,
        title="Review queue",
        nav="queue",
        page=page,
        choices=available,
        counts=counts,
        reasons=REASONS,
        query=query,
        here=query.query_string(),
    )


def _remembered_queue(raw: str | None) -> QueueQuery:
    """The queue the person came from (a query string carried by the cell page); the whole queue
    when there is none or it no longer parses."""
    try:
        return QueueQuery.model_validate(dict(parse_qsl(raw or "")) | {"page": 1})
    except ValidationError:
        return QueueQuery()


def _queue_link(query: QueueQuery) -> str:
    text = query.query_string()
    return f"{PREFIX}/" + (f"?{text}" if text else "")


@router.get("/cells/{scan_id:path}/decisions", include_in_schema=False)
async def decisions_get(scan_id: str) -> Response:
    # A reload of the page a decision answered (override, error) lands on the cell, not on a 405.
    return redirect(cell_url(scan_id))


@router.post("/cells/{scan_id:path}/decisions", response_class=HTMLResponse)
async def post_decision(
    request: Request,
    scan_id: str,
    person: PersonDep,
    database: DatabaseDep,
    services: ServicesDep,
    fields: CheckedFormDep,
) -> Response:
    try:
        form = DecisionForm.model_validate(fields)
        wanted: DecisionRequest = form.to_request()
    except ValidationError as exc:
        raise PageError(422, "Decision not understood", summarise_errors(exc.errors(), whole="decision")) from exc
    settings = services.settings
    try:
        decision = await in_database(
            database,
            lambda s: decide(s, scan_id, wanted, username=person.username, topic_accepted=settings.topic_accepted),
        )
    except UnknownCell as exc:
        raise PageError(404, "No such cell", f"There is no cell {scan_id!r} in the review database.") from exc
    except OverrideRequired as exc:
        return render(
            request,
            "override.html",
            person=person,
            title="Confirm the override",
            nav="queue",
            scan_id=scan_id,
            current=exc.current,
            form=form,
            status_code=409,
        )
    services.review.wake()
    kind = f" ({decision.kind.replace('_', ' ')})" if decision.kind else ""
    message = f"{scan_id}: {decision.label}{kind}, decision #{decision.id}."
    remembered = _remembered_queue(form.queue)
    following = await in_database(database, lambda s: queue(s, remembered.to_filter(page_size=1)))
    if not following.cells:
        return redirect(
            _queue_link(remembered), flash=f"{message} The queue is empty.", secure=settings.review_secure_cookies
        )
    target = following.cells[0].scan_id
    queue_text = remembered.query_string()
    location = cell_url(target) + (f"?{queue_text}" if queue_text else "")
    return redirect(location, flash=f"{message} Next: {target}.", secure=settings.review_secure_cookies)


@router.get("/cells/{scan_id:path}", response_class=HTMLResponse)
async def cell_page(
    request: Request, scan_id: str, person: PersonDep, database: DatabaseDep, query: QueueQueryDep
) -> Response:
    detail: CellDetail | None = await in_database(database, lambda s: cell_detail(s, scan_id))
    if detail is None:
        raise PageError(404, "No such cell", f"There is no cell {scan_id!r} in the review database.")
    return render(
        request,
        "cell.html",
        person=person,
        title=f"Cell {scan_id}",
        nav="queue",
        detail=detail,
        measurements=measurement_rows(detail.measurements),
        reasons=REASONS,
        queue_text=query.query_string(),
        queue_link=_queue_link(query),
    )


def measurement_rows(measurements: dict[str, object]) -> list[dict[str, object]]:
    """One row per measurement: its value, and its tolerance and verdict where the verdict gives them.

    A measurement is an object as `reviews.materialise.measurement_rows` stores it, e.g.
    `{"value": 21.3, "unit": "mm", "min": 20.95, "max": 21.25, "ok": false, "check": "..."}`, or
    a bare number (older verdicts); what is not given stays empty rather than guessed.
    """
    rows: list[dict[str, object]] = []
    for name, raw in sorted(measurements.items()):
        if isinstance(raw, dict):
            value = raw.get("value")
            low, high = raw.get("min", raw.get("low")), raw.get("max", raw.get("high"))
            ok = raw.get("ok", raw.get("conforms"))
            numeric = all(isinstance(v, int | float) or v is None for v in (value, low, high))
            if ok is None and numeric and value is not None and (low is not None or high is not None):
                ok = (low is None or value >= low) and (high is None or value <= high)
            note = raw.get("check") or raw.get("reason")
            rows.append(
                {
                    "name": name,
                    "value": value,
                    "low": low,
                    "high": high,
                    "unit": raw.get("unit"),
                    "ok": ok,
                    "note": note,
                }
            )
        else:
            rows.append({"name": name, "value": raw, "low": None, "high": None, "unit": None, "ok": None, "note": None})
    return rows
