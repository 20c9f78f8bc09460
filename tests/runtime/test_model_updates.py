"""The model-updates subscription both the inference consumer and the facade use, on the real broker."""

import asyncio

import pytest

from runtime.model_updates import open_model_updates, read_model_updates
from schemas.model_updates import ModelUpdate
from schemas.settings import Settings
from tests.helpers import produce_messages

pytestmark = pytest.mark.integration


def update(version: str) -> ModelUpdate:
    return ModelUpdate(status="promoted", version=version, current_version=version, threshold=0.5)


async def test_updates_are_read_from_the_end_and_malformed_ones_skipped(settings: Settings) -> None:
    topic = settings.topic_model_updates
    await produce_messages(settings, topic, [(b"model", update("v-before").to_json())])
    consumer = await open_model_updates(settings)
    try:
        await produce_messages(settings, topic, [(b"model", b"{not json"), (b"model", update("v-after").to_json())])
        updates = read_model_updates(consumer)
        first = await asyncio.wait_for(anext(updates), timeout=30)
    finally:
        await consumer.stop()
    assert first.version == "v-after"  # not the one before the subscription, nor the malformed one
