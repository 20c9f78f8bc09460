"""The one loop that owns poll -> prepare -> judge -> deliver, as three overlapping stages.

    poll + pin the detector + prepare (fetch concurrently, decode in a pool) --queue-->
        judge (the model thread) --queue--> deliver (verdicts, dead letters, offsets: one transaction)

While the model scores batch N, batch N+1 is fetched and decoded and batch N-1 is published, so
the model thread does not wait on I/O. Batches are delivered in poll order, so committed offsets
only move forward. Ownership (generations, seeks, the rebalance listener) and delivery are the
shared `runtime.delivery.BatchDelivery`: a batch of an older generation is dropped unpublished and
read again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from consumers.inference.judge import Judge, Judged, event_age_s, verdict_label
from consumers.inference.metrics import InferenceMetrics
from consumers.inference.prepare import PreparedBatch, Preparer
from runtime.delivery import BatchDelivery
from runtime.outbox import Outgoing
from runtime.retry import Abandoned
from runtime.served_model import ServedModel
from schemas.base import utc_now

log = logging.getLogger(__name__)

FIRST_POLL_MS = 500  # how long an idle poll waits before the loop looks at the stop flag again
PREPARED_AHEAD = 2  # batches fetched and decoded ahead of the model


@dataclass(frozen=True)
class PipelineConfig:
    topic_verdicts: str
    batch_size: int
    linger_ms: int


class InferencePipeline:
    def __init__(
        self,
        delivery: BatchDelivery,
        preparer: Preparer,
        judge: Judge,
        served: ServedModel,
        metrics: InferenceMetrics,
        config: PipelineConfig,
        *,
        stop: asyncio.Event,
    ) -> None:
        self.delivery = delivery
        self._preparer = preparer
        self._judge = judge
        self._served = served
        self._metrics = metrics
        self._config = config
        self._stop = stop

    async def run(self) -> None:
        """Run until the stop event is set, then finish the batches in flight and return."""
        prepared: asyncio.Queue[asyncio.Task[PreparedBatch] | None] = asyncio.Queue(maxsize=PREPARED_AHEAD)
        judged: asyncio.Queue[Judged | None] = asyncio.Queue(maxsize=1)
        async with asyncio.TaskGroup() as stages:
            stages.create_task(self._poll_stage(prepared), name="poll")
            stages.create_task(self._judge_stage(prepared, judged), name="judge")
            stages.create_task(self._deliver_stage(judged), name="deliver")

    async def _poll_stage(self, out: asyncio.Queue[asyncio.Task[PreparedBatch] | None]) -> None:
        config = self._config
        try:
            while not self._stop.is_set():
                polled = await self.delivery.poll(
                    config.batch_size, timeout_ms=FIRST_POLL_MS, linger_ms=config.linger_ms
                )
                if not polled.records:
                    continue
                detector = self._served.require()  # pinned for the whole batch
                await out.put(asyncio.create_task(self._preparer.prepare(polled, detector)))
        finally:
            await out.put(None)

    async def _judge_stage(
        self, source: asyncio.Queue[asyncio.Task[PreparedBatch] | None], out: asyncio.Queue[Judged | None]
    ) -> None:
        try:
            while (task := await source.get()) is not None:
                try:
                    batch = await task
                    if not self.delivery.owns(batch.polled.generation):
                        continue
                    result = await self._judge.judge(batch)
                except Abandoned as exc:
                    log.info("shutdown while waiting for %s: the batch stays uncommitted", exc)
                    await _drain(source)
                    return
                self._metrics.stage_seconds.labels(stage="model").observe(result.model_s)
                await out.put(result)
        finally:
            await out.put(None)

    async def _deliver_stage(self, source: asyncio.Queue[Judged | None]) -> None:
        topic = self._config.topic_verdicts
        while (result := await source.get()) is not None:
            verdicts = [Outgoing(topic, v.scan_id.encode(), v.to_json()) for v in result.verdicts]
            started = asyncio.get_running_loop().time()
            if await self.delivery.deliver(result.batch.polled, verdicts, result.poisons):
                self._record(result, asyncio.get_running_loop().time() - started)

    def _record(self, result: Judged, publish_s: float) -> None:
        metrics, now = self._metrics, utc_now()
        if result.batch.ready:
            metrics.batch_size.observe(len(result.batch.ready))
        metrics.stage_seconds.labels(stage="publish").observe(publish_s)
        for item in result.batch.ready:
            metrics.stage_seconds.labels(stage="fetch").observe(item.fetch_s)
            metrics.stage_seconds.labels(stage="decode").observe(item.decode_s)
            metrics.event_to_verdict.observe(event_age_s(item.job.event, now))
        for item in result.batch.ready:
            if item.plan is not None:
                metrics.stage_seconds.labels(stage="measure").observe(item.measure_s)
        for verdict in result.verdicts:
            metrics.scans.labels(verdict=verdict_label(verdict.is_anomaly)).inc()
            metrics.measured(verdict)


async def _drain(queue: asyncio.Queue[asyncio.Task[PreparedBatch] | None]) -> None:
    """Cancel the batches still queued behind an abandoned one: none of them may commit."""
    while (task := await queue.get()) is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Abandoned):
            await task
