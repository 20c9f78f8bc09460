"""A publisher for request-driven services (the facade: accepted scans, rollback broadcasts): it
connects on first use and again after a failure, so a broker outage is an error per call, not a
dead process."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer

from runtime.kafka import make_producer
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
