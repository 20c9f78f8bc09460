"""A consumed Kafka message as both services keep it, and the offsets to commit after a batch of them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from schemas.base import Message, summarise

TopicPartitionKey = tuple[str, int]


@dataclass(frozen=True)
class SourceRecord:
    """Where a Kafka message came from and what it held; what a dead letter needs to point back."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None


def source_record(record: ConsumerRecord[bytes, bytes]) -> SourceRecord:
    return SourceRecord(record.topic, record.partition, record.offset, record.key, record.value, record.timestamp)


def next_offsets(records: Iterable[SourceRecord]) -> dict[TopicPartitionKey, int]:
    """The offsets to commit after `records`: one past the last message of each partition."""
    offsets: dict[TopicPartitionKey, int] = {}
    for record in records:
        key = (record.topic, record.partition)
        offsets[key] = max(offsets.get(key, 0), record.offset + 1)
    return offsets


class InvalidMessage(Exception):  # noqa: N818 (a state of the message, dead-lettered with its reason)
    """A consumed message that is not a valid instance of its topic's schema (poison)."""

    retriable = False
    code = "invalid_message"


M = TypeVar("M", bound=Message)


def parse_record(record: SourceRecord, schema: type[M], error: type[InvalidMessage] = InvalidMessage) -> M:
    """`record`'s value as `schema`; raises `error` (poison) with the reason otherwise."""
    if not record.value:
        raise error("empty message (no value)")
    try:
        return schema.from_json(record.value)
    except ValidationError as exc:
        raise error(summarise(exc)) from exc
