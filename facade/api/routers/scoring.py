"""POST /predict."""

from __future__ import annotations

from fastapi import APIRouter

from facade.api import scoring
from facade.api.deps import DetectorDep, ServicesDep
from facade.api.routers._responses import errors
from schemas.api import ImageRequest, PredictResponse

router = APIRouter(tags=["scoring"])


@router.post("/predict", response_model=PredictResponse, responses=errors(400, 404, 413, 422, 503))
async def predict(body: ImageRequest, services: ServicesDep, detector: DetectorDep) -> PredictResponse:
    """Score one scan with the model serving now; with `"heatmap": true` the heat map is stored
    in the heat-map bucket and its URL returned."""
    return await scoring.predict(services, detector, body.image_url, heatmap=body.heatmap)
