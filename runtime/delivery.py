"""The batch delivery loop every consumer shares: poll what this instance owns, and deliver a
batch's results, its dead letters and its offsets together (one Kafka transaction by default).

Ownership is a *generation*: a rebalance or a failed delivery starts a new one, the next poll
seeks back to the committed offsets, and a batch of an older generation is never delivered, so
its messages are read again (by this instance or the partition's new owner) and processed once.

A failed delivery (broker down, timeout) replaces the producer, which fences whatever the old
one left open. Then either the batch is read again (`retry=False`: cheap to redo, as a verdict
is) or the same messages are delivered again while the batch is still owned (`retry=True`: for
results too costly to redo, as a retrained model is). A fenced producer means another instance
took over this one's transactional id: that is raised, this instance is a zombie.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

from runtime.dead_letters import Poison, dead_letter, error_code
from runtime.logs import printable
from runtime.metrics import DeliveryMetrics
from runtime.outbox import KafkaOutbox, Outgoing
from runtime.records import SourceRecord, TopicPartitionKey, next_offsets, source_record
from runtime.retry import Backoff, retry_transient

log = logging.getLogger(__name__)

DELIVERY_TIMEOUT_S = 60.0  # a broker that takes longer is treated as down


@dataclass(frozen=True)
class Polled:
    """A poll's records and the generation they were read in."""

    generation: int
    records: list[SourceRecord]


class BatchDelivery:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        outbox: KafkaOutbox,
        metrics: DeliveryMetrics,
        *,
        topic_dead_letter: str,
        consumer_name: str,
        stop: asyncio.Event,
        backoff: Backoff = Backoff(initial=0.2, maximum=5.0),
        timeout_s: float = DELIVERY_TIMEOUT_S,
    ) -> None:
        self._consumer = consumer
        self._outbox = outbox
        self._metrics = metrics
        self._topic_dead_letter = topic_dead_letter
        self._consumer_name = consumer_name
        self._stop = stop
        self._backoff = backoff
        self._timeout_s = timeout_s
        self._generation = 0
        self._needs_seek = False
        self._failures = 0
        self._delivering = asyncio.Lock()
        self.delivered_batches = 0

    # -- ownership -------------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        return self._generation

    def owns(self, generation: int) -> bool:
        """False once a rebalance or a failed delivery made a batch of `generation` someone else's."""
        return generation == self._generation

    def invalidate(self, reason: str) -> None:
        """Drop every batch in flight; the next poll seeks back to the committed offsets."""
        self._generation += 1
        self._needs_seek = True
        log.info("generation %d (%s): batches in flight are dropped and read again", self._generation, reason)

    async def wait_for_delivery(self) -> None:
        """Return once no transaction is in flight (a revoked partition's batch commits first)."""
        async with self._delivering:
            pass

    def listener(
        self, *, on_revoked: Callable[[], None] | None = None, on_assigned: Callable[[], None] | None = None
    ) -> ConsumerRebalanceListener:
        """The rebalance listener: a revocation invalidates what is in flight, then calls `on_revoked`."""
        return _Rebalance(self, on_revoked, on_assigned)

    # -- poll ------------------------------------------------------------------------------------

    async def poll(self, max_records: int, *, timeout_ms: int, linger_ms: int = 0) -> Polled:
        """Up to `max_records`: wait `timeout_ms` for the first, then `linger_ms` to fill the batch."""
        if self._needs_seek:
            await self._seek_to_committed()
        generation = self._generation
        polled = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        records = [source_record(r) for batch in polled.values() for r in batch]
        deadline = time.monotonic() + linger_ms / 1000
        while records and len(records) < max_records and (left := deadline - time.monotonic()) > 0:
            polled = await self._consumer.getmany(
                timeout_ms=int(left * 1000) + 1, max_records=max_records - len(records)
            )
            records += [source_record(r) for batch in polled.values() for r in batch]
        if generation != self._generation:
            self._needs_seek = True  # polled across a rebalance: read again from the commit
            return Polled(self._generation, [])
        return Polled(generation, records)

    async def _seek_to_committed(self) -> None:
        self._needs_seek = False
        if assigned := self._consumer.assignment():
            await retry_transient(
                lambda: self._consumer.seek_to_committed(*assigned), what="seeking to the committed offsets"
            )

    # -- deliver ---------------------------------------------------------------------------------

    async def deliver(
        self,
        polled: Polled,
        messages: Sequence[Outgoing],
        poisons: Sequence[Poison] = (),
        *,
        retry: bool = False,
    ) -> bool:
        """Publish `messages` and the dead letters of `poisons`, and commit the offsets of
        `polled`. True once delivered; False when the batch is no longer this instance's to deliver."""
        outgoing = [*messages, *(self._dead_letter(p) for p in poisons)]
        offsets = next_offsets(polled.records)
        while True:
            async with self._delivering:
                if not self.owns(polled.generation):
                    log.warning("partitions revoked during the batch: another instance reads it again")
                    return False
                started = time.perf_counter()
                try:
                    await asyncio.wait_for(self._outbox.deliver(outgoing, offsets), timeout=self._timeout_s)
                except ProducerFenced:
                    raise
                except (KafkaError, OSError, TimeoutError) as exc:
                    failed: BaseException = exc
                else:
                    self._failures = 0
                    self._record(poisons, offsets, time.perf_counter() - started)
                    return True
            delay = self._backoff.delay(self._failures)
            self._failures += 1
            if not retry or self._stop.is_set() or not self.owns(polled.generation):
                log.warning("delivery failed (%s: %s): the batch will be read again", type(failed).__name__, failed)
                self.invalidate("delivery failed")
                if self._stop.is_set():
                    return False  # left uncommitted: the next start reads these messages again
                await asyncio.sleep(delay)
                await retry_transient(self._reopen, what="reconnecting the producer", backoff=self._backoff)
                return False
            log.warning("delivery failed (%s: %s): retrying", type(failed).__name__, failed)
            await asyncio.sleep(delay)
            await retry_transient(self._reopen, what="reconnecting the producer", stop=self._stop)

    async def _reopen(self) -> None:
        # A producer that starts against a broker still coming back can wait for good: bounded, retried.
        await asyncio.wait_for(self._outbox.reopen(), timeout=self._timeout_s)

    def _dead_letter(self, poison: Poison) -> Outgoing:
        letter = dead_letter(poison.source, poison.error, consumer=self._consumer_name)
        return Outgoing(self._topic_dead_letter, poison.key, letter.to_json())

    def _record(self, poisons: Sequence[Poison], offsets: dict[TopicPartitionKey, int], seconds: float) -> None:
        self.delivered_batches += 1
        for poison in poisons:
            reason = error_code(poison.error)
            self._metrics.dead_letters.labels(reason=reason).inc()
            source = poison.source
            log.warning(
                "dead letter %s/%d@%d (%s): %s",
                printable(source.topic),
                source.partition,
                source.offset,
                reason,
                printable(str(poison.error)),
            )
        for (topic, partition), offset in offsets.items():
            highwater = self._consumer.highwater(TopicPartition(topic, partition))
            if highwater is not None:
                self._metrics.consumer_lag.labels(topic=topic, partition=str(partition)).set(max(0, highwater - offset))


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(
        self,
        delivery: BatchDelivery,
        on_revoked: Callable[[], None] | None,
        on_assigned: Callable[[], None] | None,
    ) -> None:
        self._delivery = delivery
        self._on_revoked = on_revoked
        self._on_assigned = on_assigned

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            self._delivery.invalidate(f"{len(revoked)} partitions revoked")
            if self._on_revoked is not None:
                self._on_revoked()
            await self._delivery.wait_for_delivery()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self._on_assigned is not None:
            self._on_assigned()
        log.info("assigned partitions %s", sorted(f"{tp.topic}/{tp.partition}" for tp in assigned))
