"""Helpers for tests: produce messages to the real broker and read committed ones until enough arrived;
small synthetic cell slices; the environment of a service subprocess; the AcceptedScans of a scan."""

from __future__ import annotations

import asyncio
import io
import json
import os
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord
from PIL import Image

from runtime.kafka import make_consumer
from schemas.accepted import AcceptedScan
from schemas.settings import ENV_PREFIX, Settings

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


def spiral_slice(rng: np.random.Generator, size: int = 64, pores: int = 0) -> np.ndarray:
    """A small wound-cell slice (can ring, spiral windings, core, noise) with `pores` dark pores."""
    centre = size / 2 + rng.uniform(-1.5, 1.5, 2)
    radius = size * rng.uniform(0.42, 0.45)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    r, theta = np.hypot(rows - centre[0], cols - centre[1]), np.arctan2(rows - centre[0], cols - centre[1])
    image = 0.45 + 0.2 * np.cos(2 * np.pi * r / (radius * 0.12) - theta + rng.uniform(0, 2 * np.pi))
    image[r < radius * 0.15] = 0.1
    image[r > radius - 1] = 0.05
    image[np.abs(r - radius) < 1.0] = 1.0
    for _ in range(pores):
        angle, at = rng.uniform(0, 2 * np.pi), rng.uniform(0.4, 0.7) * radius
        image[np.hypot(rows - centre[0] - at * np.sin(angle), cols - centre[1] - at * np.cos(angle)) < 2.5] = 0.0
    image += rng.normal(0, 0.02, image.shape)
    return np.asarray(np.clip(image, 0, 1), dtype=np.float32)


def png_bytes(image: np.ndarray) -> bytes:
    """An image in [0, 1] as an 8-bit grayscale PNG."""
    out = io.BytesIO()
    Image.fromarray((image * 255).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def env_of(settings: Settings, **overrides: Any) -> dict[str, str]:
    """This process's environment plus `settings` (and `overrides`) as BATTERY_CT_* variables."""
    env = dict(os.environ)
    for name, value in {**settings.model_dump(), **overrides}.items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        elif isinstance(value, tuple | list):
            value = json.dumps(list(value))
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[f"{ENV_PREFIX}{name.upper()}"] = str(value)
    return env


async def accepted_for(settings: Settings, scan_id: str, *, timeout_s: float = 30.0) -> list[AcceptedScan]:
    """Every committed AcceptedScan of `scan_id` on the accepted topic: awaited until the first one
    arrives, then read to the topic's end (read_committed: its last stable offset), so a second
    publication of the decision would be counted too."""
    consumer = make_consumer(settings, settings.topic_accepted, group_id=None)  # every partition, from the start
    await consumer.start()
    found: list[AcceptedScan] = []
    try:
        async with asyncio.timeout(timeout_s):
            while not any(a.scan_id == scan_id for a in found):
                found.extend(await _read_accepted(consumer))
            partitions = list(consumer.assignment())
            ends = await consumer.end_offsets(partitions)
            while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
                found.extend(await _read_accepted(consumer))
    finally:
        await consumer.stop()
    return [a for a in found if a.scan_id == scan_id]


async def _read_accepted(consumer: Any) -> list[AcceptedScan]:
    batches = await consumer.getmany(timeout_ms=200)
    return [AcceptedScan.from_json(r.value) for batch in batches.values() for r in batch if r.value is not None]
