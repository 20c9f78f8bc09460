"""The facade's Kafka clients: a publisher (accepted scans, rollback broadcasts) that connects on
first use and again after a failure, and the feed of model updates from the topic's end."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from runtime.kafka import make_producer
from runtime.model_updates import open_model_updates, read_model_updates
from runtime.topics import ensure_topics, standard_topics
from schemas.model_updates import ModelUpdate
from schemas.settings import Settings

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
SEND_TIMEOUT_S = 30.0


class KafkaPublisher:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _connected(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = make_producer(self._settings)
                try:
                    await asyncio.wait_for(producer.start(), CONNECT_TIMEOUT_S)
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        producer = await self._connected()
        try:
            await asyncio.wait_for(producer.send_and_wait(topic, value=value, key=key), SEND_TIMEOUT_S)
        except Exception:
            await self._drop(producer)  # reconnect on the next call rather than reuse a broken client
            raise

    async def ping(self) -> bool:
        producer = await self._connected()
        return bool(await producer.client.force_metadata_update())

    async def close(self) -> None:
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def _drop(self, producer: AIOKafkaProducer) -> None:
        async with self._lock:
            if self._producer is producer:
                self._producer = None
        await producer.stop()


class KafkaUpdateFeed:
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
