"""The models page: every version in the registry with its gate figures and which one serves, the
model that judged each recipe's latest cell, and, for engineers, a rollback that asks for
confirmation before it asks the registry's single writer."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from facade.api.checkpoints import request_rollback
from facade.api.deps import ServicesDep
from facade.api.errors import ApiError, as_api_error
from facade.web.deps import CheckedFormDep, DatabaseDep, EngineerDep, PersonDep, in_database
from facade.web.errors import PageError
from facade.web.forms import RollbackForm
from facade.web.render import render
from reviews.stats import models_by_recipe
from schemas.api import CheckpointInfo, JobAccepted

router = APIRouter()

Version = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


async def _listed(services: ServicesDep) -> list[CheckpointInfo]:
    try:
        return await asyncio.to_thread(services.catalog.checkpoints)
    except Exception as exc:
        error = as_api_error(exc)
        if error is None:
            raise
        raise PageError(error.status, "Registry unavailable", error.message) from exc


def _refusal(exc: Exception) -> ApiError:
    from aiokafka.errors import KafkaError

    if isinstance(exc, KafkaError):
        return ApiError(503, "kafka_unavailable", f"the request was not published: Kafka is unavailable ({exc})")
    error = as_api_error(exc)
    if error is None:
        raise exc
    return error


@router.get("/models", response_class=HTMLResponse)
async def models_page(request: Request, person: PersonDep, services: ServicesDep, database: DatabaseDep) -> Response:
    versions = await _listed(services)
    recipes = await in_database(database, models_by_recipe)
    return render(
        request,
        "models.html",
        person=person,
        title="Models",
        nav="models",
        versions=list(reversed(versions)),  # newest first, as people read a history
        recipes=recipes,
        current=next((v.version for v in versions if v.current), None),
        serving=services.served.current.version if services.served.current is not None else None,
    )


@router.post("/models/{version}/rollback", response_class=HTMLResponse)
async def rollback(
    request: Request, version: Version, person: EngineerDep, fields: CheckedFormDep, services: ServicesDep
) -> Response:
    try:
        form = RollbackForm.model_validate(fields)
    except ValidationError as exc:
        raise PageError(422, "Rollback not understood", str(exc)) from exc
    if not form.confirmed:
        known = {c.version: c for c in await _listed(services)}
        if version not in known:
            raise PageError(404, "No such version", f"There is no version {version} in the registry.")
        current = next((c for c in known.values() if c.current), None)
        return render(
            request,
            "rollback_confirm.html",
            person=person,
            title=f"Roll back to {version}?",
            nav="models",
            target=known[version],
            current=current,
        )
    try:
        outcome = await request_rollback(services, version, reason=f"rollback by {person.username} (review station)")
    except Exception as exc:
        refused = _refusal(exc)
        return render(
            request,
            "rollback_done.html",
            person=person,
            title="Rollback not done",
            nav="models",
            version=version,
            error=refused.message,
            status_code=refused.status,
        )
    return render(
        request,
        "rollback_done.html",
        person=person,
        title=f"Rolled back to {version}" if isinstance(outcome, CheckpointInfo) else "Rollback requested",
        nav="models",
        version=version,
        checkpoint=outcome if isinstance(outcome, CheckpointInfo) else None,
        job=outcome if isinstance(outcome, JobAccepted) else None,
        status_code=200 if isinstance(outcome, CheckpointInfo) else 202,
    )
