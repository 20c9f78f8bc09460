"""Publish the outbox's decisions to Kafka exactly once.

The database cannot join a Kafka transaction, so the relay's progress lives in Kafka: each
transaction publishes a run of outbox messages and, in the same transaction, commits the offset
`last seq + 1` of the review outbox group on partition 0 of the accepted topic (a bookmark: no one
consumes that group). A crash after the commit and before the database marks the run published is
repaired at start (`reconcile`: everything below the bookmark is published); a crash before the
commit aborts the run and it is published again. The bookmark's metadata names the database, so a
fresh database never takes an old bookmark for its own.

One transactional id for every facade: a second relay fences the first, which steps back and tries
again later, so two never publish the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.structs import OffsetAndMetadata
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from reviews.database import Database
from reviews.tables import Installation, OutboxMessage
from runtime.kafka import make_admin, make_producer
from runtime.retry import Backoff
from schemas.base import utc_now
from schemas.settings import Settings

log = logging.getLogger(__name__)

RUN_SIZE = 100  # messages per transaction
IDLE_CHECK_S = 5.0  # another facade's decisions (a shared database) are found this late at most
FENCED_PAUSE_S = 30.0


@dataclass(frozen=True)
class Pending:
    seq: int
    topic: str
    key: bytes | None
    value: bytes


def installation_id(session: Session) -> str:
    """This database's identity, made on first use."""
    row = session.scalars(select(Installation)).first()
    if row is None:
        row = Installation(id=str(uuid.uuid4()), created_at=utc_now())
        session.add(row)
        session.flush()
    return row.id


def pending(session: Session, limit: int = RUN_SIZE) -> list[Pending]:
    rows = session.scalars(
        select(OutboxMessage).where(OutboxMessage.published_at.is_(None)).order_by(OutboxMessage.seq).limit(limit)
    ).all()
    return [Pending(r.seq, r.topic, r.key, r.value) for r in rows]


def mark_published(session: Session, below: int) -> int:
    """Mark every message with seq < `below` published; returns how many were not marked yet."""
    result = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.seq < below, OutboxMessage.published_at.is_(None))
        .values(published_at=utc_now())
    )
    return int(getattr(result, "rowcount", 0) or 0)


def relay_transactional_id(settings: Settings) -> str:
    # Within the ACL prefix of the review outbox group (local_stack.kafka_acls.transactional_prefix).
    return f"{settings.transactional_id_prefix}-{settings.review_outbox_group}-relay"


class OutboxRelay:
    def __init__(self, settings: Settings, database: Database) -> None:
        self._settings = settings
        self._database = database
        self._bookmark = TopicPartition(settings.topic_accepted, 0)
        self._wake = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._progress: AIOKafkaAdminClient | None = None
        self._installation: str | None = None
        self.published = 0

    def wake(self) -> None:
        """A decision was stored: publish now rather than at the next check."""
        self._wake.set()

    async def open(self) -> None:
        """Start the producer (fencing any earlier relay) and repair what a crash left unmarked."""
        self._installation = await asyncio.to_thread(self._database.run, installation_id)
        producer = make_producer(self._settings, transactional_id=relay_transactional_id(self._settings))
        progress = make_admin(self._settings)
        try:
            await producer.start()
            await progress.start()
        except BaseException:
            await producer.stop()
            await progress.close()
            raise
        self._producer, self._progress = producer, progress
        await self.reconcile()

    async def close(self) -> None:
        producer, progress, self._producer, self._progress = self._producer, self._progress, None, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()
        if progress is not None:
            with contextlib.suppress(Exception):
                await progress.close()

    async def reconcile(self) -> int:
        """Mark published what the bookmark says was; returns how many that repaired."""
        assert self._progress is not None
        committed = await self._bookmark_offset()
        if committed is None:
            return 0
        repaired = await asyncio.to_thread(self._database.run, lambda s: mark_published(s, committed))
        if repaired:
            log.info("outbox: %d decisions were published before a restart; marked", repaired)
        return repaired

    async def _bookmark_offset(self) -> int | None:
        assert self._progress is not None
        # The metadata tells this database's bookmark from another's (a consumer's committed() drops it).
        offsets = await self._progress.list_consumer_group_offsets(
            self._settings.review_outbox_group, partitions=[self._bookmark]
        )
        mark = offsets.get(self._bookmark)
        if mark is None or mark.offset < 0:
            return None
        if mark.metadata != self._installation:
            log.warning("outbox: the bookmark belongs to another review database (%r); ignored", mark.metadata)
            return None
        return int(mark.offset)

    async def publish_pending(self) -> int:
        """Publish one run of pending messages in one transaction; returns how many."""
        assert self._producer is not None
        run = await asyncio.to_thread(self._database.run, pending)
        if not run:
            return 0
        below = run[-1].seq + 1
        producer = self._producer
        await producer.begin_transaction()
        try:
            sent = [await producer.send(m.topic, m.value, key=m.key) for m in run]
            await producer.send_offsets_to_transaction(
                {self._bookmark: OffsetAndMetadata(below, self._installation or "")},
                self._settings.review_outbox_group,
            )
            await producer.commit_transaction()
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(producer.abort_transaction())
            raise
        for future in sent:
            future.result()
        await asyncio.to_thread(self._database.run, lambda s: mark_published(s, below))
        self.published += len(run)
        log.info("outbox: published %d decisions (up to #%d)", len(run), below - 1)
        return len(run)

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until `stop`: at once when woken, else every few seconds; reconnects on failures."""
        backoff = Backoff(initial=0.5, maximum=10.0)
        failures = 0
        while not stop.is_set():
            try:
                if self._producer is None:
                    await self.open()
                while await self.publish_pending():
                    pass
                failures = 0
            except ProducerFenced:
                log.warning("outbox: another facade's relay took over; trying again in %.0f s", FENCED_PAUSE_S)
                await self.close()
                await _wait(stop, FENCED_PAUSE_S)
                continue
            except (KafkaError, OSError, TimeoutError) as exc:
                delay = backoff.delay(failures)
                failures += 1
                log.warning("outbox: not published (%s: %s); retrying in %.1f s", type(exc).__name__, exc, delay)
                await self.close()
                await _wait(stop, delay)
                continue
            self._wake.clear()
            await _first(stop, self._wake, IDLE_CHECK_S)
        await self.close()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _first(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
