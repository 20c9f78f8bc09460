"""POST /retrain, POST /anomaly and GET /jobs/{job_id}."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from facade.api import training
from facade.api.deps import ApiKeyDep, ServicesDep
from facade.api.errors import ApiError
from facade.api.routers._responses import errors
from schemas.accepted import Label
from schemas.api import ImageRequest, JobAccepted, JobStatus, TrainingResponse

router = APIRouter(tags=["training"])

_RESPONSES = {
    202: {"model": JobAccepted, "description": "Still training after the wait setting: GET the location later"},
    **errors(400, 401, 404, 413, 422, 503),
}
JobId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


async def _accept(services: ServicesDep, body: ImageRequest, label: Label) -> TrainingResponse | JSONResponse:
    outcome = await training.accept(services, body.image_url, label)
    if isinstance(outcome, JobAccepted):
        return JSONResponse(outcome.model_dump(), status_code=202, headers={"Location": outcome.location})
    return outcome


@router.post("/retrain", response_model=TrainingResponse, responses=_RESPONSES)
async def retrain(body: ImageRequest, services: ServicesDep, _: ApiKeyDep) -> TrainingResponse | JSONResponse:
    """Add a scan known to be good to the training data; answers with the model update that
    includes it (or 202 and a job id when that takes longer than the wait setting)."""
    return await _accept(services, body, "normal")


@router.post("/anomaly", response_model=TrainingResponse, responses=_RESPONSES)
async def anomaly(body: ImageRequest, services: ServicesDep, _: ApiKeyDep) -> TrainingResponse | JSONResponse:
    """Add a scan known to be defective to the anomaly set; errors and threshold are re-evaluated."""
    return await _accept(services, body, "defect")


@router.get("/jobs/{job_id}", response_model=JobStatus, responses=errors(404))
async def job_status(job_id: JobId, services: ServicesDep) -> JobStatus:
    """A /retrain or /anomaly job of this facade process: pending, done (with the result) or failed."""
    job = services.jobs.get(job_id)
    if job is None:
        raise ApiError(404, "job_not_found", f"no job {job_id} in this facade process")
    return job.status()
