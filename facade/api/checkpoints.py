"""GET /checkpoints and POST /checkpoints/{version}/rollback."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from facade.api.deps import ApiKeyDep, ServicesDep
from facade.api.errors import ApiError, DependencyDownError
from facade.api.openapi import errors
from facade.api.services import Services
from schemas.api import CheckpointInfo, JobAccepted
from schemas.control import RollbackRequest

router = APIRouter(tags=["checkpoints"])

Version = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


@router.get("/checkpoints", response_model=list[CheckpointInfo], responses=errors(503))
async def list_checkpoints(services: ServicesDep) -> list[CheckpointInfo]:
    """Every version in the registry, oldest first; `current` marks the one serving."""
    return await asyncio.to_thread(services.catalog.checkpoints)


@router.post(
    "/checkpoints/{version}/rollback",
    response_model=CheckpointInfo,
    responses={
        202: {"model": JobAccepted, "description": "Not rolled back within the wait setting: GET the location later"},
        **errors(401, 404, 409, 503),
    },
)
async def rollback(version: Version, services: ServicesDep, _: ApiKeyDep) -> CheckpointInfo | JSONResponse:
    """Make `version` current again: the retrain consumer (the registry's single writer) is asked on
    the control topic, moves the pointer and broadcasts it, so every consumer and facade serves it;
    the answer comes once that update arrives (or 202 and a job id past the wait setting)."""
    outcome = await request_rollback(services, version, reason="rollback through the HTTP facade")
    if isinstance(outcome, JobAccepted):
        return JSONResponse(outcome.model_dump(), status_code=202, headers={"Location": outcome.location})
    return outcome


async def request_rollback(services: Services, version: str, *, reason: str) -> CheckpointInfo | JobAccepted:
    """Ask the registry's single writer to serve `version` again and wait for its update (the HTTP
    endpoint and the review station's models page share this); raises ApiError 404, 409 or 503."""
    known = {c.version: c for c in await asyncio.to_thread(services.catalog.checkpoints)}
    if version not in known:
        raise ApiError(404, "checkpoint_not_found", f"no version {version} in the registry")
    if known[version].current:
        raise ApiError(409, "already_current", f"{version} is already the current version")
    if not services.served.feed_open.is_set():
        raise DependencyDownError("kafka_unavailable", "not following model updates yet (is Kafka up?)")
    settings = services.settings
    job = services.jobs.create(f"rollback:{version}", None)
    request = RollbackRequest(request_id=job.job_id, version=version, reason=reason)
    try:
        await services.publisher.publish(settings.topic_control, version.encode(), request.to_json())
    except Exception as exc:
        services.jobs.fail(job, f"not published: {exc}")
        raise
    if not await services.jobs.wait(job, settings.api_wait_s):
        return JobAccepted(job_id=job.job_id, location=f"/jobs/{job.job_id}")
    with contextlib.suppress(TimeoutError):  # the update that finished the job is being applied
        await asyncio.wait_for(services.served.wait_for_version(version), settings.api_wait_s)
    listed = await asyncio.to_thread(services.catalog.checkpoints)
    return next((c for c in listed if c.version == version), known[version].model_copy(update={"current": True}))
