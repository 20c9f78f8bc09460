"""The one loop that owns poll -> prepare -> judge -> deliver, as three overlapping stages.

    poll + prepare (fetch concurrently, decode in a pool) --queue--> judge (the model thread)
        --queue--> deliver (verdicts, dead letters and offsets in one transaction)

While the model scores batch N, batch N+1 is fetched and decoded and batch N-1 is published, so
the model thread does not wait on I/O. Batches are delivered in poll order, so committed offsets
only move forward.

Every batch carries the *generation* it was polled in. A rebalance or a failed delivery starts a
new generation: batches of older generations are dropped unpublished and the consumer seeks back
to its committed offsets, so their messages are read again, by this instance or the partition's
new owner, and judged exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

from consumers.inference.judge import Judge, Judged
from consumers.inference.metrics import InferenceMetrics
from consumers.inference.prepare import PreparedBatch, Preparer
from consumers.inference.steps import event_age_s, verdict_label
from model_core.serving import ModelHolder
from runtime.dead_letters import dead_letter, error_code
from runtime.http import Health
from runtime.outbox import KafkaOutbox, Outgoing
from runtime.records import SourceRecord, next_offsets, source_record
from runtime.retry import Abandoned, Backoff, retry_transient
from schemas.base import utc_now

log = logging.getLogger(__name__)

FIRST_POLL_MS = 500  # how long an idle poll waits before the loop looks at the stop flag again
DELIVERY_TIMEOUT_S = 60.0  # a broker that takes longer is treated as down: the batch is redone
PREPARED_AHEAD = 2  # batches fetched and decoded ahead of the model


@dataclass(frozen=True)
class PipelineConfig:
    topic_verdicts: str
    topic_dead_letter: str
    batch_size: int
    linger_ms: int
    consumer_name: str


class InferencePipeline:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        outbox: KafkaOutbox,
        preparer: Preparer,
        judge: Judge,
        holder: ModelHolder,
        metrics: InferenceMetrics,
        health: Health,
        config: PipelineConfig,
        *,
        stop: asyncio.Event,
        backoff: Backoff = Backoff(initial=0.2, maximum=5.0),
    ) -> None:
        self._consumer = consumer
        self._outbox = outbox
        self._preparer = preparer
        self._judge = judge
        self._holder = holder
        self._metrics = metrics
        self._health = health
        self._config = config
        self._stop = stop
        self._backoff = backoff
        self._generation = 0
        self._needs_seek = False
        self._delivering = asyncio.Lock()
        self.delivered_batches = 0

    # -- rebalancing ---------------------------------------------------------------------------

    def listener(self) -> ConsumerRebalanceListener:
        return _Rebalance(self)

    def start_new_generation(self, reason: str) -> None:
        """Drop every batch in flight; the poll stage seeks back to the committed offsets."""
        self._generation += 1
        self._needs_seek = True
        log.info("generation %d (%s): batches in flight are dropped and read again", self._generation, reason)

    async def wait_for_delivery(self) -> None:
        """Return once no transaction is in flight (a revoked partition's batch commits first)."""
        async with self._delivering:
            pass

    # -- the loop --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until the stop event is set, then finish the batches in flight and return."""
        prepared: asyncio.Queue[asyncio.Task[PreparedBatch] | None] = asyncio.Queue(maxsize=PREPARED_AHEAD)
        judged: asyncio.Queue[Judged | None] = asyncio.Queue(maxsize=1)
        async with asyncio.TaskGroup() as stages:
            stages.create_task(self._poll_stage(prepared), name="poll")
            stages.create_task(self._judge_stage(prepared, judged), name="judge")
            stages.create_task(self._deliver_stage(judged), name="deliver")

    async def _poll_stage(self, out: asyncio.Queue[asyncio.Task[PreparedBatch] | None]) -> None:
        try:
            while not self._stop.is_set():
                if self._needs_seek:
                    await self._seek_to_committed()
                generation = self._generation
                records = await self._poll_batch()
                if generation != self._generation:
                    self._needs_seek = True  # polled across a rebalance: read again from the commit
                    continue
                if not records:
                    continue
                size = self._holder.require().image_size
                task = asyncio.create_task(self._preparer.prepare(records, image_size=size, generation=generation))
                await out.put(task)
        finally:
            await out.put(None)

    async def _poll_batch(self) -> list[SourceRecord]:
        """Up to batch_size records: wait for the first, then linger a little to fill the batch."""
        wanted = self._config.batch_size
        polled = await self._consumer.getmany(timeout_ms=FIRST_POLL_MS, max_records=wanted)
        records = [source_record(r) for batch in polled.values() for r in batch]
        deadline = time.monotonic() + self._config.linger_ms / 1000
        while records and len(records) < wanted and (left := deadline - time.monotonic()) > 0:
            polled = await self._consumer.getmany(timeout_ms=int(left * 1000) + 1, max_records=wanted - len(records))
            records += [source_record(r) for batch in polled.values() for r in batch]
        return records

    async def _seek_to_committed(self) -> None:
        self._needs_seek = False
        assigned = self._consumer.assignment()
        if assigned:
            await retry_transient(
                lambda: self._consumer.seek_to_committed(*assigned), what="seeking to the committed offsets"
            )

    async def _judge_stage(
        self, source: asyncio.Queue[asyncio.Task[PreparedBatch] | None], out: asyncio.Queue[Judged | None]
    ) -> None:
        try:
            while (task := await source.get()) is not None:
                try:
                    batch = await task
                except Abandoned:
                    log.info("shutdown while the object store was unavailable: the batch stays uncommitted")
                    await _drain(source)
                    return
                if batch.generation != self._generation:
                    continue
                try:
                    result = await self._judge.judge(batch)
                except Abandoned:
                    log.info("shutdown while storing heat maps: the batch stays uncommitted")
                    await _drain(source)
                    return
                self._metrics.stage_seconds.labels(stage="model").observe(result.model_s)
                await out.put(result)
        finally:
            await out.put(None)

    async def _deliver_stage(self, source: asyncio.Queue[Judged | None]) -> None:
        attempt = 0
        while (result := await source.get()) is not None:
            async with self._delivering:
                if result.batch.generation != self._generation:
                    continue
                started = time.perf_counter()
                try:
                    await asyncio.wait_for(
                        self._outbox.deliver(self._messages(result), next_offsets(result.batch.records)),
                        timeout=DELIVERY_TIMEOUT_S,
                    )
                except ProducerFenced:
                    raise  # another instance took over this transactional id: this one is a zombie
                except (KafkaError, OSError, TimeoutError) as exc:
                    failed = exc
                else:
                    failed = None
                    attempt = 0
                    self._record(result, time.perf_counter() - started)
            if failed is not None:
                await self._recover(failed, attempt)
                attempt += 1

    async def _recover(self, exc: BaseException, attempt: int) -> None:
        log.warning("delivery failed (%s: %s): the batch will be read and judged again", type(exc).__name__, exc)
        self.start_new_generation("delivery failed")
        if self._stop.is_set():
            return  # leave uncommitted; the next start reads these messages again
        await asyncio.sleep(self._backoff.delay(attempt))
        await retry_transient(self._outbox.reopen, what="reconnecting the producer", backoff=self._backoff)

    def _messages(self, result: Judged) -> list[Outgoing]:
        messages = [Outgoing(self._config.topic_verdicts, v.scan_id.encode(), v.to_json()) for v in result.verdicts]
        for poison in result.poisons:
            letter = dead_letter(poison.source, poison.error, consumer=self._config.consumer_name)
            key = poison.source.key or (poison.scan_id.encode() if poison.scan_id else None)
            messages.append(Outgoing(self._config.topic_dead_letter, key, letter.to_json()))
        return messages

    def _record(self, result: Judged, publish_s: float) -> None:
        metrics, now = self._metrics, utc_now()
        self.delivered_batches += 1
        if result.batch.ready:
            metrics.batch_size.observe(len(result.batch.ready))
        metrics.stage_seconds.labels(stage="publish").observe(publish_s)
        for item in result.batch.ready:
            metrics.stage_seconds.labels(stage="fetch").observe(item.fetch_s)
            metrics.stage_seconds.labels(stage="decode").observe(item.decode_s)
            metrics.event_to_verdict.observe(event_age_s(item.job.event, now))
        for verdict in result.verdicts:
            metrics.scans.labels(verdict=verdict_label(verdict.is_anomaly)).inc()
        for poison in result.poisons:
            reason = error_code(poison.error)
            metrics.dead_letters.labels(reason=reason).inc()
            log.warning(
                "dead letter %s/%d@%d (%s): %s",
                poison.source.topic,
                poison.source.partition,
                poison.source.offset,
                reason,
                poison.error,
            )
        for (topic, partition), offset in next_offsets(result.batch.records).items():
            highwater = self._consumer.highwater(TopicPartition(topic, partition))
            if highwater is not None:
                metrics.consumer_lag.labels(topic=topic, partition=str(partition)).set(max(0, highwater - offset))


async def _drain(queue: asyncio.Queue[asyncio.Task[PreparedBatch] | None]) -> None:
    """Cancel the batches still queued behind an abandoned one: none of them may commit."""
    while (task := await queue.get()) is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Abandoned):
            await task


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, pipeline: InferencePipeline) -> None:
        self._pipeline = pipeline

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            self._pipeline.start_new_generation(f"{len(revoked)} partitions revoked")
            await self._pipeline.wait_for_delivery()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("assigned partitions %s", sorted(f"{tp.topic}/{tp.partition}" for tp in assigned))
