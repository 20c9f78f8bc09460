"""/predict's flow: image URL -> policy -> fetch -> decode and preprocess -> score -> optional heat map.

The decode/preprocess and the heat-map key are the ones the inference consumer uses (`storage.scans`), so a scan
gets the same score whether it comes by Kafka or by HTTP.
"""

from __future__ import annotations

import numpy as np

from facade.api.errors import ApiError
from facade.api.ports import ObjectRefLike
from facade.api.services import Services
from model_core.detector import Detector
from schemas.api import PredictResponse
from schemas.scans import scan_id_from_key


async def fetch_image(services: Services, image_url: str) -> tuple[ObjectRefLike, bytes]:
    """The object behind `image_url`, after the URL policy; raises UrlNotAllowed, ObjectMissing, ..."""
    ref = services.parse_url(image_url)
    data = await services.store.aget_bytes(ref.bucket, ref.key, max_bytes=services.settings.max_object_bytes)
    if not data:
        raise ApiError(422, "image_empty", f"s3://{ref.bucket}/{ref.key} is empty (0 bytes)")
    return ref, data


async def decode(services: Services, data: bytes, size: int) -> np.ndarray:
    return await services.in_decode_pool(services.decode, data, size)


async def predict(services: Services, detector: Detector, image_url: str, *, heatmap: bool) -> PredictResponse:
    ref, data = await fetch_image(services, image_url)
    image = await decode(services, data, detector.image_size)
    (score,) = await services.in_model_thread(detector.score_batch, image[None])
    heatmap_url = None
    if heatmap:
        heatmap_url = await store_heatmap(services, image, score.error_map, scan_id_from_key(ref.key), detector.version)
    return PredictResponse(
        reconstruction_error=float(score.reconstruction_error),
        is_anomaly=bool(score.is_anomaly),
        anomaly_score=float(score.anomaly_score),
        threshold=float(detector.threshold),
        model_version=detector.version,
        heatmap_url=heatmap_url,
    )


async def store_heatmap(
    services: Services, image: np.ndarray, error_map: np.ndarray, scan_id: str, version: str
) -> str:
    from model_core.heatmap import render_heatmap_png
    from storage.scans import heatmap_key
    from storage.urls import ObjectRef

    png = await services.in_decode_pool(render_heatmap_png, image, error_map)
    bucket, key = services.settings.bucket_heatmaps, heatmap_key(scan_id, version)
    await services.store.aput_bytes(bucket, key, png, content_type="image/png")
    return ObjectRef(bucket, key).url
