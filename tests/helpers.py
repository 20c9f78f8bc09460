"""Helpers for tests against the real broker: produce messages, and read committed ones until enough arrived."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from schemas.settings import Settings

T = TypeVar("T")


class ConsumeTimeout(AssertionError):  # noqa: N818 (an assertion failure with the messages that did arrive)
    def __init__(self, topic: str, wanted: int, records: list[ConsumerRecord[bytes, bytes]], timeout_s: float) -> None:
        super().__init__(f"{topic}: {len(records)} of {wanted} committed messages arrived within {timeout_s} s")
        self.records = records


async def produce_messages(settings: Settings, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
    """Publish (key, value) pairs and wait until the broker acknowledged all of them."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def consume_until(
    settings: Settings, topic: str, count: int, timeout_s: float = 30.0, *, settle_s: float = 0.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """The committed messages of `topic` from its start, once at least `count` arrived.

    Reads with `read_committed` and no consumer group (nothing is committed). After `count`
    arrived it keeps reading for `settle_s` more seconds, to catch duplicates. Raises
    ConsumeTimeout (an AssertionError carrying what arrived) when fewer came within `timeout_s`.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    loop = asyncio.get_running_loop()
    try:
        try:
            async with asyncio.timeout(timeout_s):
                while len(records) < count:
                    for batch in (await consumer.getmany(timeout_ms=200)).values():
                        records.extend(batch)
        except TimeoutError:
            raise ConsumeTimeout(topic, count, records, timeout_s) from None
        settle_until = loop.time() + settle_s
        while (left := settle_until - loop.time()) > 0:
            for batch in (await consumer.getmany(timeout_ms=max(1, int(left * 1000)))).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def wait_for_leaders(settings: Settings, topics: Sequence[str], timeout_s: float = 30.0) -> None:
    """Return once every partition of `topics` has a leader (a new topic takes a moment to get one)."""
    from aiokafka.client import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=settings.kafka_bootstrap)
    await client.bootstrap()
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                cluster = await client.fetch_all_metadata()
                partitions = [(t, cluster.partitions_for_topic(t)) for t in topics]
                if all(
                    parts and all((cluster.leader_for_partition(TopicPartition(t, p)) or -1) >= 0 for p in parts)
                    for t, parts in partitions
                ):
                    return
                await asyncio.sleep(0.1)  # polling the metadata is the only way to learn of a leader
    finally:
        await client.close()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code (a sync fixture), even while an event loop runs in this thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
