"""What docker compose wires up: MinIO's bucket notification for an upload, exactly as MinIO writes it
to the scans topic, reaches the inference consumer through the real broker and gets its verdict."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from consumers.inference.service import InferenceService
from model_core.registry import Registry
from producers.simulator.dataset import generate_dataset
from schemas.settings import Settings
from schemas.verdicts import Verdict
from storage.object_store import ObjectStore
from storage.registry_store import S3BlobStore
from tests.deploy.minio_events import minio_put_notification
from tests.helpers import consume_until, produce_messages

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIZE = 64
# A key as an operator's scanner writes it: a folder, a space and a plus, which MinIO URL-encodes.
KEY = "line 1/cell-0001+a.png"


@pytest.fixture
def served(
    settings: Settings, object_store: ObjectStore, tiny_checkpoints: dict[str, Path], tmp_path: Path
) -> Settings:
    """The session's tiny detector promoted in the test's registry, and a simulated slice uploaded."""
    generate_dataset(tmp_path / "slices", 1, 0, seed=5, size=SIZE, progress=False)
    [slice_png] = sorted((tmp_path / "slices" / "normal").glob("*.png"))
    checkpoint = tiny_checkpoints["v1"]
    object_store.ensure_bucket(settings.bucket_models)
    registry = Registry(S3BlobStore(object_store, settings.bucket_models))
    registry.promote(registry.publish(checkpoint))
    object_store.ensure_bucket(settings.bucket_scans)
    object_store.put_bytes(settings.bucket_scans, KEY, slice_png.read_bytes(), content_type="image/png")
    return settings.model_copy(update={"metrics_port": 0, "batch_linger_ms": 20})


async def test_the_notification_minio_publishes_for_an_upload_gets_one_verdict(
    served: Settings, object_store: ObjectStore
) -> None:
    settings = served
    data = await object_store.aget_bytes(settings.bucket_scans, KEY, max_bytes=1 << 24)
    notification = minio_put_notification(settings.bucket_scans, KEY, data)
    record = json.loads(notification)["Records"][0]
    assert record["s3"]["object"]["key"] == "line+1%2Fcell-0001%2Ba.png"  # as MinIO leaves it on the wire

    service = InferenceService(settings)
    task = asyncio.create_task(service.run())
    try:
        # MinIO's Kafka target publishes without a key.
        await produce_messages(settings, settings.topic_scans, [(None, notification)])
        [message] = await consume_until(settings, settings.topic_verdicts, 1, 180, settle_s=1.0)
    finally:
        service.stop.set()
        await asyncio.wait_for(task, timeout=120)

    verdict = Verdict.from_json(message.value or b"")
    assert verdict.scan_id == "line 1/cell-0001+a"
    assert verdict.image_url == f"s3://{settings.bucket_scans}/{KEY}"
    assert verdict.model_version == Registry(S3BlobStore(object_store, settings.bucket_models)).current_version()
    assert verdict.threshold > 0 and verdict.reconstruction_error >= 0
    assert message.key == verdict.scan_id.encode()
    judged = {
        v: service.registry.get_sample_value("battery_ct_scans_total", {"verdict": v}) for v in ("normal", "anomaly")
    }
    assert sum(value or 0 for value in judged.values()) == 1
