"""POST /predict: image URL -> policy -> fetch -> decode and preprocess (and measure for the
recipe) -> score -> optional heat map.

The decode/preprocess and the heat-map key are the ones the inference consumer uses (`storage.scans`),
so a scan gets the same score whether it comes by Kafka or by HTTP.
"""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter

from facade.api.deps import ApiKeyHeader, DetectorDep, ServicesDep, check_write_access
from facade.api.openapi import errors
from facade.api.services import Services
from runtime.recipes import cell_check
from schemas.api import ImageRequest, PredictResponse
from schemas.scans import scan_id_from_key

router = APIRouter(tags=["scoring"])


@router.post("/predict", response_model=PredictResponse, responses=errors(400, 401, 404, 413, 422, 503))
async def predict(
    body: ImageRequest, services: ServicesDep, detector: DetectorDep, x_api_key: ApiKeyHeader = None
) -> PredictResponse:
    """Score one scan with the model serving now; with `"heatmap": true` the heat map is stored
    in the heat-map bucket and its URL returned (a write: it needs the API key)."""
    if body.heatmap:
        check_write_access(services.settings, x_api_key)
    ref, data = await services.fetch_scan(body.image_url)
    plan = await services.plan_for(body.recipe, body.pixel_mm)
    decoded = await services.decode_and_measure(data, detector.image_size, plan)
    image = decoded.image
    (score,) = await services.in_model_thread(detector.score_batch, image[None])
    check = cell_check(plan, decoded.measured, decoded.measure_error)
    heatmap_url = None
    if body.heatmap:
        scan_id = scan_id_from_key(ref.key)
        heatmap_url = await _store_heatmap(services, image, score.error_map, scan_id, detector.version)
    return PredictResponse(
        reconstruction_error=float(score.reconstruction_error),
        is_anomaly=bool(score.is_anomaly),
        anomaly_score=float(score.anomaly_score),
        threshold=float(detector.threshold),
        model_version=detector.version,
        heatmap_url=heatmap_url,
        recipe=check.recipe,
        pixel_mm=check.pixel_mm,
        measurements=check.measurements,
        conforms=check.conforms,
        conformance=check.conformance,
    )


async def _store_heatmap(
    services: Services, image: np.ndarray, error_map: np.ndarray, scan_id: str, version: str
) -> str:
    from model_core.heatmap import render_heatmap_png
    from storage.scans import heatmap_key
    from storage.urls import ObjectRef

    png = await services.in_decode_pool(render_heatmap_png, image, error_map)
    bucket, key = services.settings.bucket_heatmaps, heatmap_key(scan_id, version)
    await services.store.aput_bytes(bucket, key, png, content_type="image/png")
    return ObjectRef(bucket, key).url
