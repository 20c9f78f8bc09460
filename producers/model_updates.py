"""Broadcast a `ModelUpdate` on the model-updates topic, for callers outside the retrain loop
(the CLI's import and rollback): every inference consumer and facade follows that topic and
loads the version it names."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

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
