"""Broadcast a `ModelUpdate` on the model-updates topic, for callers outside the retrain loop
(the CLI's import and rollback): every inference consumer and facade follows that topic and
loads the version it names."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from model_core.checkpoint import CheckpointMetadata
from schemas.model_updates import MODEL_UPDATE_KEY, ModelUpdate
from schemas.settings import Settings


async def publish_model_update(
    settings: Settings, update: ModelUpdate, *, producer: AIOKafkaProducer | None = None
) -> None:
    """Send `update` keyed by `MODEL_UPDATE_KEY` (the compacted topic keeps the latest) and wait
    for the broker's acknowledgement. Uses `producer` when given, else a short-lived one."""
    if producer is not None:
        await producer.send_and_wait(settings.topic_model_updates, update.to_json(), key=MODEL_UPDATE_KEY)
        return
    from runtime.kafka import make_producer

    own = make_producer(settings)
    await own.start()
    try:
        await own.send_and_wait(settings.topic_model_updates, update.to_json(), key=MODEL_UPDATE_KEY)
    finally:
        await own.stop()


def promoted_update(metadata: CheckpointMetadata, *, reason: str) -> ModelUpdate:
    """`metadata`'s version now serves (an operator's import with --promote)."""
    return ModelUpdate(
        status="promoted",
        version=metadata.version,
        parent=metadata.parent,
        current_version=metadata.version,
        threshold=metadata.threshold,
        new_validation_error=metadata.validation_error,
        new_anomaly_error=metadata.anomaly_error,
        dataset_size={"normal": metadata.dataset.n_normal, "defect": metadata.dataset.n_defect},
        reason=reason,
    )


def rolled_back_update(metadata: CheckpointMetadata, previous: str | None, *, reason: str | None = None) -> ModelUpdate:
    """`metadata`'s version serves again instead of `previous`."""
    return ModelUpdate(
        status="rolled_back",
        version=metadata.version,
        parent=previous,
        current_version=metadata.version,
        threshold=metadata.threshold,
        new_validation_error=metadata.validation_error,
        new_anomaly_error=metadata.anomaly_error,
        reason=reason or (f"rolled back from {previous}" if previous else "rolled back"),
    )
