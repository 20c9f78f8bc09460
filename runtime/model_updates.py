"""The model-updates feed: every process that serves a model follows the topic from its end,
without a group (every partition), skipping what does not parse."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Protocol

from aiokafka import AIOKafkaConsumer

from runtime.kafka import make_consumer
from runtime.topics import ensure_topics, standard_topics
from schemas.model_updates import ModelUpdate
from schemas.settings import Settings

log = logging.getLogger(__name__)

# The statuses after which another version serves; a `rejected` update changes nothing served.
SERVING_STATUSES = ("promoted", "rolled_back")


class UpdateFeed(Protocol):
    """Model updates broadcast from the moment `open` returns (earlier ones are not replayed)."""

    async def open(self) -> None: ...

    def updates(self) -> AsyncIterator[ModelUpdate]: ...

    async def close(self) -> None: ...


async def open_model_updates(settings: Settings) -> AIOKafkaConsumer:
    """A started consumer of the model-updates topic, positioned at its end.

    The end offsets are resolved before this returns: the caller reads the registry's current
    version afterwards, so no update can fall between the two.
    """
    topic = settings.topic_model_updates
    consumer = make_consumer(settings, topic, group_id=None, auto_offset_reset="latest")
    await consumer.start()
    try:
        assigned = sorted(consumer.assignment(), key=lambda tp: tp.partition)
        if not assigned:
            raise RuntimeError(f"topic {topic} has no partitions (does it exist?)")
        await consumer.seek_to_end(*assigned)
        for tp in assigned:
            await consumer.position(tp)
    except BaseException:
        await consumer.stop()
        raise
    return consumer


async def read_model_updates(consumer: AIOKafkaConsumer) -> AsyncIterator[ModelUpdate]:
    """Every update from now on (runs until cancelled); a malformed one is logged and skipped."""
    async for message in consumer:
        try:
            yield ModelUpdate.from_json(message.value or b"")
        except ValueError as exc:
            log.warning("ignoring a malformed model update at %s/%d: %s", message.topic, message.offset, exc)


class KafkaUpdateFeed:
    """The `UpdateFeed` on the real broker (creates the topics first when they are missing)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._consumer: AIOKafkaConsumer | None = None

    async def open(self) -> None:
        settings = self._settings
        await ensure_topics(settings, standard_topics(settings))
        self._consumer = await open_model_updates(settings)

    async def updates(self) -> AsyncIterator[ModelUpdate]:
        assert self._consumer is not None, "open() first"
        async for update in read_model_updates(self._consumer):
            yield update

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
