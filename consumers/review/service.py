"""`battery-ct serve review`: the verdicts topic into the review database, exactly once.

The database holds the progress: each batch's verdicts, its rejected records and the partitions'
next offsets are one database transaction, the offsets compare-and-set (`reviews.materialise`).
The consumer group only shares the partitions among replicas; on assignment each partition is
read from the offset the database has. Kafka's committed offsets are written after the database's,
for the lag on the dashboards, and never read back.

    poll -> store (one transaction: verdicts, cells, offsets) -> commit to Kafka (lag only)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import DBAPIError, IntegrityError

from consumers.review.metrics import ReviewMetrics
from reviews.database import Database
from reviews.materialise import ConsumedRecord, OffsetConflict, PartitionKey, store_batch, stored_offsets
from runtime.http import Health, MetricsServer
from runtime.kafka import make_consumer
from runtime.metrics import service_registry
from runtime.retry import Abandoned, Backoff, retry_transient
from runtime.shutdown import serve_until_signalled
from runtime.topics import ensure_topics, standard_topics
from schemas.settings import Settings

log = logging.getLogger(__name__)

MAX_RECORDS = 500


class _Positions(ConsumerRebalanceListener):  # type: ignore[misc]
    """Where each owned partition is, as the database says: set on assignment, moved by each batch."""

    def __init__(self, service: ReviewService) -> None:
        self._service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:
            self._service.positions.pop((tp.topic, tp.partition), None)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._service.seek_to_stored(assigned)


class ReviewService:
    def __init__(
        self, settings: Settings, *, registry: CollectorRegistry | None = None, stop: asyncio.Event | None = None
    ) -> None:
        self.settings = settings
        self.registry = registry or service_registry()
        self.metrics = ReviewMetrics(self.registry)
        self.health = Health()
        self.stop = stop or asyncio.Event()
        self.server = MetricsServer(self.registry, self.health, port=settings.metrics_port_of("review"))
        self.positions: dict[PartitionKey, int | None] = {}
        self.stored_batches = 0
        self._database: Database | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def run(self) -> None:
        settings, stop = self.settings, self.stop
        await self.server.start()
        try:
            url = settings.review_database_url.get_secret_value()
            self._database = await retry_transient(
                lambda: asyncio.to_thread(Database.open, url),
                what="opening the review database",
                stop=stop,
            )
            await retry_transient(
                lambda: ensure_topics(settings, standard_topics(settings)), what="creating topics", stop=stop
            )
            await self._consume()
        except Abandoned as exc:
            log.info("stopped while waiting for %s", exc)
        finally:
            self.health.set_not_ready("stopping")
            await self.server.stop()
            if self._database is not None:
                self._database.close()

    async def _consume(self) -> None:
        settings, stop = self.settings, self.stop
        consumer = make_consumer(settings, group_id=settings.review_group)
        self._consumer = consumer
        await retry_transient(consumer.start, what="connecting the consumer of the verdicts", stop=stop)
        try:
            consumer.subscribe([settings.topic_verdicts], listener=_Positions(self))
            self.health.set_ready()
            log.info(
                "materialising %s into the review database (group %s)", settings.topic_verdicts, settings.review_group
            )
            backoff = Backoff(initial=0.2, maximum=5.0)
            failures = 0
            while not stop.is_set():
                try:
                    await self._one_batch(consumer)
                    failures = 0
                except (DBAPIError, OSError, KafkaError) as exc:
                    # The database or the broker is away: read again from the database's offsets.
                    delay = backoff.delay(failures)
                    failures += 1
                    log.warning("batch not stored (%s: %s); again in %.1f s", type(exc).__name__, exc, delay)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    with contextlib.suppress(Exception):
                        await self.seek_to_stored(consumer.assignment())
        finally:
            await consumer.stop()

    async def seek_to_stored(self, partitions: set[TopicPartition]) -> None:
        """Seek each of `partitions` to the database's next offset (the beginning where it has none)."""
        consumer, database = self._consumer, self._database
        if consumer is None or database is None or not partitions:
            return
        keys = [(tp.topic, tp.partition) for tp in partitions]
        group = self.settings.review_group
        stored = await asyncio.to_thread(database.run, lambda s: stored_offsets(s, group, keys))
        fresh = []
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.positions[key] = stored.get(key)
            if key in stored:
                consumer.seek(tp, stored[key])
            else:
                fresh.append(tp)
        if fresh:
            await consumer.seek_to_beginning(*fresh)
        log.info(
            "reading %s from the review database's offsets", sorted(f"{t}/{p}@{stored.get((t, p), 0)}" for t, p in keys)
        )

    async def _one_batch(self, consumer: AIOKafkaConsumer) -> None:
        polled = await consumer.getmany(timeout_ms=1000, max_records=MAX_RECORDS)
        records = [
            ConsumedRecord(r.topic, r.partition, r.offset, r.value)
            for batch in polled.values()
            for r in batch
            if (r.topic, r.partition) in self.positions  # revoked while polling: the new owner reads it
        ]
        if not records:
            return
        expected = {(r.topic, r.partition): self.positions[(r.topic, r.partition)] for r in records}
        assert self._database is not None
        database, group, rate = self._database, self.settings.review_group, self.settings.review_audit_rate
        started = time.perf_counter()
        try:
            moved = await asyncio.to_thread(
                database.run, lambda s: store_batch(s, group, records, expected, audit_rate=rate)
            )
        except (OffsetConflict, IntegrityError) as exc:
            self.metrics.store_conflicts.inc()
            log.info("batch stored by another consumer first (%s); reading from the database's offsets", exc)
            await self.seek_to_stored(consumer.assignment())
            return
        self.metrics.store_seconds.observe(time.perf_counter() - started)
        self.stored_batches += 1
        for key, end in moved.items():
            if key in self.positions:
                self.positions[key] = end
        self.metrics.verdicts_stored.inc(len(records))
        await self._commit_for_lag(consumer, moved)

    async def _commit_for_lag(self, consumer: AIOKafkaConsumer, moved: dict[PartitionKey, int]) -> None:
        offsets = {TopicPartition(t, p): end for (t, p), end in moved.items()}
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:  # only the dashboards' lag depends on it
            log.debug("lag commit failed: %s", exc)
        for tp, end in offsets.items():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                self.metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(
                    max(0, highwater - end)
                )


async def run(settings: Settings) -> int:
    """Serve until SIGTERM or SIGINT; the batch in flight is stored or not at all; return 0."""
    return await serve_until_signalled(lambda stop: ReviewService(settings, stop=stop).run(), "review consumer")
