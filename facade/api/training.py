"""POST /retrain, POST /anomaly and GET /jobs/{job_id}: check the scan, publish an AcceptedScan,
wait for the model update that includes it.

The scan is fetched and decoded first, so that bad input is a 4xx now rather than a dead letter
in the retrain consumer and a job that never finishes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from facade.api.deps import ApiKeyDep, ServicesDep
from facade.api.errors import ApiError, DependencyDownError
from facade.api.openapi import errors
from facade.api.services import Services
from schemas.accepted import AcceptedScan, Label
from schemas.api import ImageRequest, JobAccepted, JobStatus, TrainingResponse
from schemas.scans import scan_id_from_key

router = APIRouter(tags=["training"])

_RESPONSES = {
    202: {"model": JobAccepted, "description": "Still training after the wait setting: GET the location later"},
    **errors(400, 401, 404, 413, 422, 503),
}
JobId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


@router.post("/retrain", response_model=TrainingResponse, responses=_RESPONSES)
async def retrain(body: ImageRequest, services: ServicesDep, _: ApiKeyDep) -> TrainingResponse | JSONResponse:
    """Add a scan known to be good to the training data; answers with the model update that
    includes it (or 202 and a job id when that takes longer than the wait setting)."""
    return _answer(await accept(services, body.image_url, "normal"))


@router.post("/anomaly", response_model=TrainingResponse, responses=_RESPONSES)
async def anomaly(body: ImageRequest, services: ServicesDep, _: ApiKeyDep) -> TrainingResponse | JSONResponse:
    """Add a scan known to be defective to the anomaly set; errors and threshold are re-evaluated."""
    return _answer(await accept(services, body.image_url, "defect"))


@router.get("/jobs/{job_id}", response_model=JobStatus, responses=errors(404))
async def job_status(job_id: JobId, services: ServicesDep) -> JobStatus:
    """A /retrain or /anomaly job of this facade process: pending, done (with the result) or failed."""
    job = services.jobs.get(job_id)
    if job is None:
        raise ApiError(404, "job_not_found", f"no job {job_id} in this facade process")
    return job.status()


def _answer(outcome: TrainingResponse | JobAccepted) -> TrainingResponse | JSONResponse:
    if isinstance(outcome, JobAccepted):
        return JSONResponse(outcome.model_dump(), status_code=202, headers={"Location": outcome.location})
    return outcome


async def accept(services: Services, image_url: str, label: Label) -> TrainingResponse | JobAccepted:
    settings = services.settings
    ref, data = await services.fetch_scan(image_url)
    detector = services.served.current
    await services.decode_scan(data, detector.image_size if detector is not None else settings.image_size)
    if not services.served.feed_open.is_set():
        # Without the feed the update would be missed and the job could never finish.
        raise DependencyDownError("kafka_unavailable", "not following model updates yet (is Kafka up?)")
    scan_id = scan_id_from_key(ref.key)
    job = services.jobs.create(scan_id, label)
    try:
        message = AcceptedScan(
            scan_id=scan_id, image_url=f"s3://{ref.bucket}/{ref.key}", label=label, job_id=job.job_id
        )
    except ValidationError as exc:
        services.jobs.fail(job, "invalid scan id")
        raise ApiError(400, "invalid_scan_id", f"the object key cannot serve as a scan id: {ref.key!r}") from exc
    try:
        await services.publisher.publish(settings.topic_accepted, scan_id.encode(), message.to_json())
    except Exception as exc:
        services.jobs.fail(job, f"not published: {exc}")
        raise
    if await services.jobs.wait(job, settings.api_wait_s):
        assert job.result is not None
        return job.result
    return JobAccepted(job_id=job.job_id, location=f"/jobs/{job.job_id}")
