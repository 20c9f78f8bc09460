"""The real broker and S3 endpoint of the session fixtures do what every service relies on."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from schemas.settings import Settings
from storage.errors import ObjectMissing
from storage.object_store import ObjectStore
from tests.helpers import ConsumeTimeout, consume_until, produce_messages

pytestmark = pytest.mark.integration


async def test_produce_and_consume(settings: Settings) -> None:
    sent = [(f"scan-{i}".encode(), f"payload {i}".encode()) for i in range(5)]
    await produce_messages(settings, settings.topic_accepted, sent)

    records = await consume_until(settings, settings.topic_accepted, 5, timeout_s=30)

    assert [(r.key, r.value) for r in records] == sent


async def test_transactional_consume_transform_produce(settings: Settings) -> None:
    """Read from scans, write to verdicts and commit the read offsets in one transaction; an aborted
    transaction's messages never reach a read_committed reader."""
    source, sink, group = settings.topic_accepted, settings.topic_verdicts, settings.inference_group
    await produce_messages(settings, source, [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")])

    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, transactional_id=f"{settings.transactional_id_prefix}-t"
    )
    await consumer.start()
    await producer.start()
    try:
        records = await _poll(consumer, 3)
        async with producer.transaction():
            for record in records:
                await producer.send(sink, record.value + b"!", key=record.key)
            offsets = {TopicPartition(source, 0): OffsetAndMetadata(records[-1].offset + 1, "")}
            await producer.send_offsets_to_transaction(offsets, group)

        await producer.begin_transaction()
        await producer.send(sink, b"never seen", key=b"x")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(sink, b"after the abort", key=b"y")
    finally:
        await producer.stop()
        await consumer.stop()

    verdicts = await consume_until(settings, sink, 4, timeout_s=30, settle_s=1.0)
    # The verdicts topic has several partitions: order holds per key, not across them.
    assert sorted(r.value for r in verdicts) == [b"1!", b"2!", b"3!", b"after the abort"]
    committed = await _committed(settings, group, TopicPartition(source, 0))
    assert committed == 3


async def test_consume_until_reports_what_arrived_on_timeout(settings: Settings) -> None:
    await produce_messages(settings, settings.topic_dead_letter, [(None, b"only one")])

    with pytest.raises(ConsumeTimeout) as caught:
        await consume_until(settings, settings.topic_dead_letter, 2, timeout_s=3)

    assert [r.value for r in caught.value.records] == [b"only one"]


def test_object_store_put_get_list_delete(settings: Settings, object_store: ObjectStore) -> None:
    bucket = settings.bucket_scans
    object_store.ensure_bucket(bucket)
    object_store.ensure_bucket(bucket)  # idempotent

    object_store.put_bytes(bucket, "line1/cell 1.png", b"\x89PNG one", content_type="image/png")
    object_store.put_bytes(bucket, "line1/cell-2.png", b"two")
    object_store.put_bytes(bucket, "line2/cell-3.png", b"three")

    assert object_store.get_bytes(bucket, "line1/cell 1.png", max_bytes=100) == b"\x89PNG one"
    assert object_store.list_keys(bucket, "line1/") == ["line1/cell 1.png", "line1/cell-2.png"]
    assert object_store.exists(bucket, "line2/cell-3.png")
    object_store.delete(bucket, "line2/cell-3.png")
    assert not object_store.exists(bucket, "line2/cell-3.png")
    with pytest.raises(ObjectMissing):
        object_store.get_bytes(bucket, "line2/cell-3.png", max_bytes=100)


async def test_object_store_async_twins(settings: Settings, object_store: ObjectStore) -> None:
    bucket = settings.bucket_heatmaps
    await object_store.aensure_bucket(bucket)
    key = f"{uuid.uuid4().hex}.png"

    await object_store.aput_bytes(bucket, key, b"heat", content_type="image/png")

    assert await object_store.aget_bytes(bucket, key, max_bytes=4) == b"heat"
    assert await object_store.alist_keys(bucket) == [key]


async def _poll(consumer: AIOKafkaConsumer, count: int) -> list:  # type: ignore[type-arg]
    records: list = []  # type: ignore[type-arg]
    while len(records) < count:
        for batch in (await consumer.getmany(timeout_ms=500)).values():
            records.extend(batch)
    return records


async def _committed(settings: Settings, group: str, partition: TopicPartition) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        offset: int | None = await consumer.committed(partition)
        return offset
    finally:
        await consumer.stop()
