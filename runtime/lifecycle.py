"""The connection lifecycle both consumers share: connect the consumer and the outbox's producer,
serve, and on the way out mark the process not ready and close both, in that order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

from runtime.http import Health
from runtime.outbox import KafkaOutbox
from runtime.retry import retry_transient


@asynccontextmanager
async def connected(
    consumer: AIOKafkaConsumer,
    outbox: KafkaOutbox,
    topics: str | Sequence[str],
    listener: ConsumerRebalanceListener,
    health: Health,
    *,
    stop: asyncio.Event,
) -> AsyncIterator[None]:
    """`consumer` started and subscribed to `topics`, the outbox open, the process ready (each
    connection retried while the broker is down, until `stop`)."""
    names = [topics] if isinstance(topics, str) else list(topics)
    await retry_transient(consumer.start, what=f"connecting the consumer of {', '.join(names)}", stop=stop)
    try:
        consumer.subscribe(names, listener=listener)
        await retry_transient(outbox.open, what="connecting the producer", stop=stop)
        health.set_ready()
        yield
    finally:
        health.set_not_ready("stopping")
        await outbox.close()
        await consumer.stop()
