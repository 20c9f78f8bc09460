"""Publish a batch's verdicts and dead letters and commit its offsets: atomically with Kafka
transactions (the default), or verdicts first and offsets after (at-least-once).

The outbox owns its producer: after a failed delivery it is replaced (`reopen`), and a new
transactional producer with the same id fences whatever the old one left open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from runtime.kafka import make_producer, transactional_id
from runtime.records import TopicPartitionKey
from schemas.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes


def _partitions(offsets: dict[TopicPartitionKey, int]) -> dict[TopicPartition, int]:
    return {TopicPartition(topic, partition): offset for (topic, partition), offset in offsets.items()}


class KafkaOutbox:
    def __init__(
        self,
        new_producer: Callable[[], AIOKafkaProducer],
        consumer: AIOKafkaConsumer,
        group_id: str,
        *,
        transactional: bool,
    ) -> None:
        self._new_producer = new_producer
        self._consumer = consumer
        self._group_id = group_id
        self.transactional = transactional
        self._producer: AIOKafkaProducer | None = None

    async def open(self) -> None:
        producer = self._new_producer()
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):  # closing after a failure may fail again; nothing to save
                await producer.stop()

    async def reopen(self) -> None:
        await self.close()
        await self.open()

    async def deliver(self, messages: list[Outgoing], offsets: dict[TopicPartitionKey, int]) -> None:
        """Publish `messages` and commit `offsets`; raises when the broker did not take them all."""
        if self._producer is None:
            await self.open()
        assert self._producer is not None
        if self.transactional:
            await self._in_transaction(self._producer, messages, offsets)
        else:
            pending = [await self._producer.send(m.topic, m.value, key=m.key) for m in messages]
            await asyncio.gather(*pending)
            if offsets:
                await self._consumer.commit(_partitions(offsets))

    async def _in_transaction(
        self, producer: AIOKafkaProducer, messages: list[Outgoing], offsets: dict[TopicPartitionKey, int]
    ) -> None:
        await producer.begin_transaction()
        try:
            pending = [await producer.send(m.topic, m.value, key=m.key) for m in messages]
            if offsets:
                await producer.send_offsets_to_transaction(_partitions(offsets), self._group_id)
            await producer.commit_transaction()
        except BaseException:
            # The producer is replaced after a failed delivery; aborting only releases the broker early.
            with contextlib.suppress(Exception):
                await asyncio.shield(producer.abort_transaction())
            raise
        for future in pending:  # commit flushed every send; a record-level failure must not pass silently
            future.result()


def outbox_for(settings: Settings, consumer: AIOKafkaConsumer, group_id: str, *, transactional: bool) -> KafkaOutbox:
    """The outbox of `group_id`'s consumer: transactional (the instance's stable transactional id,
    so a restart fences its zombie) or idempotent only (at-least-once)."""
    tid = transactional_id(settings, group_id) if transactional else None
    return KafkaOutbox(
        lambda: make_producer(settings, transactional_id=tid), consumer, group_id, transactional=transactional
    )
