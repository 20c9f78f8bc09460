"""/retrain and /anomaly: check the scan, publish an AcceptedScan, wait for its model update.

The scan is fetched and decoded first, so that bad input is a 4xx now rather than a dead letter
in the retrain consumer and a job that never finishes.
"""

from __future__ import annotations

from pydantic import ValidationError

from facade.api.errors import ApiError, DependencyDownError
from facade.api.scoring import decode, fetch_image
from facade.api.services import Services
from schemas.accepted import AcceptedScan, Label
from schemas.api import JobAccepted, TrainingResponse
from schemas.scans import scan_id_from_key


async def accept(services: Services, image_url: str, label: Label) -> TrainingResponse | JobAccepted:
    settings = services.settings
    ref, data = await fetch_image(services, image_url)
    detector = services.holder.current
    await decode(services, data, detector.image_size if detector is not None else settings.image_size)
    if not services.listener.connected.is_set():
        # Without the listener the update would be missed and the job could never finish.
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
