"""The connection lifecycle both consumers share: connect the consumer and the outbox's producer,
serve, and on the way out mark the process not ready and close both, in that order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

from runtime.http import Health
from runtime.outbox import KafkaOutbox
from runtime.retry import retry_transient


@asynccontextmanager
async def connected(
    consumer: AIOKafkaConsumer,
    outbox: KafkaOutbox,
    topic: str,
    listener: ConsumerRebalanceListener,
    health: Health,
    *,
    stop: asyncio.Event,
) -> AsyncIterator[None]:
    """`consumer` started and subscribed to `topic`, the outbox open, the process ready (each
    connection retried while the broker is down, until `stop`)."""
    await retry_transient(consumer.start, what=f"connecting the consumer of {topic}", stop=stop)
    try:
        consumer.subscribe([topic], listener=listener)
        await retry_transient(outbox.open, what="connecting the producer", stop=stop)
        health.set_ready()
        yield
    finally:
        health.set_not_ready("stopping")
        await outbox.close()
        await consumer.stop()
