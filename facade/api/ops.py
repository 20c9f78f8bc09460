"""GET /healthz (liveness), GET /readyz (Kafka, S3, model) and GET /metrics."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from facade.api.deps import ServicesDep
from facade.api.services import Services
from schemas.api import ReadinessReport

router = APIRouter(tags=["operations"])

PROBE_TIMEOUT_S = 3.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers. Says nothing about its dependencies (see /readyz)."""
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadinessReport, responses={503: {"model": ReadinessReport}})
async def readyz(services: ServicesDep) -> Response:
    """Ready when Kafka answers, the object store answers and a model is loaded; 503 otherwise."""
    kafka, s3 = await asyncio.gather(_kafka_ok(services), _s3_ok(services))
    detector = services.served.current
    report = ReadinessReport(
        ready=kafka and s3 and detector is not None,
        kafka=kafka,
        s3=s3,
        model_loaded=detector is not None,
        model_version=None if detector is None else detector.version,
    )
    return JSONResponse(report.model_dump(), status_code=200 if report.ready else 503)


@router.get("/metrics", response_class=Response)
async def metrics(services: ServicesDep) -> Response:
    """Prometheus metrics of this facade process."""
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _kafka_ok(services: Services) -> bool:
    if not services.served.feed_open.is_set():
        return False
    with contextlib.suppress(Exception):
        return await asyncio.wait_for(services.publisher.ping(), PROBE_TIMEOUT_S)
    return False


async def _s3_ok(services: Services) -> bool:
    settings = services.settings
    with contextlib.suppress(Exception):
        await asyncio.wait_for(
            asyncio.to_thread(services.store.exists, settings.bucket_models, "current.json"), PROBE_TIMEOUT_S
        )
        return True
    return False
