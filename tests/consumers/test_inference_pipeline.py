"""The pipeline's ordering and recovery rules, with the broker replaced at its boundary by fakes."""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import numpy as np
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from consumers.inference.judge import Judge
from consumers.inference.metrics import InferenceMetrics
from consumers.inference.pipeline import InferencePipeline, PipelineConfig
from consumers.inference.prepare import Preparer
from model_core.detector import Detector, ScanScore
from model_core.serving import ModelHolder
from runtime.delivery import BatchDelivery
from runtime.outbox import KafkaOutbox, Outgoing
from runtime.records import TopicPartitionKey
from runtime.retry import Backoff
from runtime.served_model import ServedModel
from schemas.scans import ScanEvent
from schemas.verdicts import Verdict

TOPIC = "ct.scans"


class FakeConsumer:
    """Two partitions of scan events; positions, committed offsets and seeks like a Kafka consumer."""

    def __init__(self, per_partition: int) -> None:
        self.log = {
            p: [ScanEvent(scan_id=f"p{p}-{i}", bucket="scans", key=f"p{p}-{i}").to_json() for i in range(per_partition)]
            for p in (0, 1)
        }
        self.position = {p: 0 for p in self.log}
        self.committed = {p: 0 for p in self.log}
        self.seeks = 0

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(TOPIC, p) for p in self.log}

    async def getmany(
        self, *, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        out: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        for p, values in self.log.items():
            start = self.position[p]
            taken = values[start : start + max(1, max_records // 2)]
            if taken:
                out[TopicPartition(TOPIC, p)] = [
                    ConsumerRecord(TOPIC, p, start + i, 0, 0, None, v, None, 0, len(v), []) for i, v in enumerate(taken)
                ]
                self.position[p] += len(taken)
        if not out:
            await asyncio.sleep(timeout_ms / 1000)
        return out

    async def seek_to_committed(self, *partitions: TopicPartition) -> None:
        self.seeks += 1
        for tp in partitions:
            self.position[tp.partition] = self.committed[tp.partition]

    def highwater(self, tp: TopicPartition) -> int:
        return len(self.log[tp.partition])


class FakeOutbox:
    """Commits verdicts and offsets together; fails the deliveries listed in `failures`."""

    def __init__(self, consumer: FakeConsumer, failures: set[int]) -> None:
        self.consumer, self.failures = consumer, failures
        self.delivered: list[Verdict] = []
        self.attempts = 0
        self.reopened = 0
        self.all_judged = asyncio.Event()

    async def deliver(self, messages: list[Outgoing], offsets: dict[TopicPartitionKey, int]) -> None:
        self.attempts += 1
        if self.attempts in self.failures:
            raise KafkaConnectionError("broker gone")
        for (_, partition), offset in offsets.items():
            assert offset >= self.consumer.committed[partition], "offsets must only move forward"
            self.consumer.committed[partition] = offset
        self.delivered += [Verdict.from_json(m.value) for m in messages]
        if all(self.consumer.committed[p] == len(v) for p, v in self.consumer.log.items()):
            self.all_judged.set()

    async def reopen(self) -> None:
        self.reopened += 1


class FakeDetector:
    version, threshold, image_size = "v1", 0.5, 4

    def score_batch(self, images: np.ndarray) -> list[ScanScore]:
        return [ScanScore(0.1, 0.1, False, image) for image in images]


async def run_pipeline(per_partition: int, failures: set[int]) -> tuple[FakeConsumer, FakeOutbox, InferenceMetrics]:
    consumer = FakeConsumer(per_partition)
    outbox = FakeOutbox(consumer, failures)
    stop = asyncio.Event()

    async def fetch(event: ScanEvent) -> bytes:
        return event.key.encode()

    def decode(data: bytes, size: int) -> np.ndarray:
        return np.zeros((size, size), np.float32)

    metrics = InferenceMetrics(CollectorRegistry())
    served = cast(ServedModel, ModelHolder(cast(Detector, FakeDetector())))  # `require()` is all it asks
    delivery = BatchDelivery(
        cast(Any, consumer),
        cast(KafkaOutbox, outbox),
        metrics,
        topic_dead_letter="ct.dead-letter",
        consumer_name="test",
        stop=stop,
        backoff=Backoff(initial=0.001, maximum=0.002),
    )
    with ThreadPoolExecutor(1) as model, ThreadPoolExecutor(1) as pool:
        pipeline = InferencePipeline(
            delivery,
            Preparer(fetch, decode, pool, stop=stop),
            Judge(model),
            served,
            metrics,
            PipelineConfig("ct.verdicts", batch_size=4, linger_ms=0),
            stop=stop,
        )
        task = asyncio.create_task(pipeline.run())
        await asyncio.wait_for(outbox.all_judged.wait(), timeout=30)
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    return consumer, outbox, metrics


async def test_every_scan_is_delivered_once_in_offset_order() -> None:
    consumer, outbox, metrics = await run_pipeline(10, failures=set())
    assert sorted(v.scan_id for v in outbox.delivered) == sorted(f"p{p}-{i}" for p in (0, 1) for i in range(10))
    assert consumer.committed == {0: 10, 1: 10}
    assert consumer.seeks == 0
    assert metrics.scans.labels(verdict="normal")._value.get() == 20


async def test_a_failed_delivery_rereads_from_the_commit_and_judges_each_scan_once() -> None:
    consumer, outbox, metrics = await run_pipeline(10, failures={2, 3})
    ids = [v.scan_id for v in outbox.delivered]
    assert sorted(ids) == sorted(f"p{p}-{i}" for p in (0, 1) for i in range(10))
    assert len(ids) == len(set(ids))  # batches in flight behind the failure were dropped, not delivered twice
    assert consumer.seeks >= 1
    assert outbox.reopened == 2
    assert metrics.scans.labels(verdict="normal")._value.get() == 20
