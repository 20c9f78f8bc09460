"""GET /checkpoints and POST /checkpoints/{version}/rollback."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path

from facade.api.deps import ApiKeyDep, ServicesDep
from facade.api.errors import ApiError, DependencyDownError
from facade.api.openapi import errors
from schemas.api import CheckpointInfo
from schemas.model_updates import MODEL_UPDATE_KEY

router = APIRouter(tags=["checkpoints"])

Version = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


@router.get("/checkpoints", response_model=list[CheckpointInfo], responses=errors(503))
async def list_checkpoints(services: ServicesDep) -> list[CheckpointInfo]:
    """Every version in the registry, oldest first; `current` marks the one serving."""
    return await asyncio.to_thread(services.catalog.checkpoints)


@router.post("/checkpoints/{version}/rollback", response_model=CheckpointInfo, responses=errors(401, 404, 409, 503))
async def rollback(version: Version, services: ServicesDep, _: ApiKeyDep) -> CheckpointInfo:
    """Make `version` current again and broadcast it, so every consumer and facade serves it."""
    known = {c.version: c for c in await asyncio.to_thread(services.catalog.checkpoints)}
    if version not in known:
        raise ApiError(404, "checkpoint_not_found", f"no version {version} in the registry")
    if known[version].current:
        raise ApiError(409, "already_current", f"{version} is already the current version")
    update = await asyncio.to_thread(services.catalog.rollback, version)
    await services.served.load(version, patient=False)  # serves it now, without waiting for the broadcast
    try:
        await services.publisher.publish(services.settings.topic_model_updates, MODEL_UPDATE_KEY, update.to_json())
    except Exception as exc:
        raise DependencyDownError(
            "kafka_unavailable",
            f"the registry now serves {version}, but announcing it failed ({exc}); consumers load it when they restart",
        ) from exc
    listed = await asyncio.to_thread(services.catalog.checkpoints)
    return next((c for c in listed if c.version == version), known[version].model_copy(update={"current": True}))
