import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import cast

import numpy as np
import pytest

from consumers.inference.prepare import Preparer
from model_core.detector import Detector
from runtime.delivery import Polled
from runtime.records import SourceRecord
from runtime.retry import Abandoned, Backoff
from schemas.scans import ScanEvent

FAST = Backoff(initial=0.001, maximum=0.002)


@dataclass(frozen=True)
class FakeDetector:
    image_size: int


def detector(size: int) -> Detector:
    """The detector pinned at the poll: the batch is decoded for its input size."""
    return cast(Detector, FakeDetector(size))


class StoreError(Exception):
    def __init__(self, message: str, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


def scan(name: str, offset: int) -> SourceRecord:
    return SourceRecord("ct.scans", 0, offset, None, ScanEvent(scan_id=name, bucket="scans", key=name).to_json())


def decode(data: bytes, size: int) -> np.ndarray:
    if data == b"corrupt":
        raise ValueError("not an image")
    return np.full((size, size), len(data), np.float32)


async def test_good_missing_corrupt_and_transiently_unavailable_objects() -> None:
    outages = {"flaky": 3}

    async def fetch(event: ScanEvent) -> bytes:
        if event.key == "missing":
            raise StoreError("no such key", retriable=False)
        if event.key == "flaky" and outages["flaky"] > 0:
            outages["flaky"] -= 1
            raise StoreError("store down", retriable=True)
        return b"corrupt" if event.key == "corrupt" else event.key.encode()

    with ThreadPoolExecutor(2) as pool:
        preparer = Preparer(fetch, decode, pool, stop=asyncio.Event(), backoff=FAST)
        batch = await preparer.prepare(
            Polled(
                3,
                [
                    scan("good", 0),
                    scan("missing", 1),
                    scan("corrupt", 2),
                    scan("flaky", 3),
                    SourceRecord("t", 0, 4, None, b"?"),
                ],
            ),
            detector(8),
        )
    assert sorted(item.job.event.key for item in batch.ready) == ["flaky", "good"]
    assert all(item.image.shape == (8, 8) for item in batch.ready)
    assert sorted(p.source.offset for p in batch.poisons) == [1, 2, 4]
    assert outages["flaky"] == 0
    assert batch.polled.generation == 3
    assert len(batch.polled.records) == 5


async def test_shutdown_during_an_outage_abandons_the_batch() -> None:
    stop = asyncio.Event()

    async def fetch(event: ScanEvent) -> bytes:
        stop.set()
        raise StoreError("store down", retriable=True)

    with ThreadPoolExecutor(1) as pool:
        preparer = Preparer(fetch, decode, pool, stop=stop, backoff=FAST)
        with pytest.raises(Abandoned):
            await preparer.prepare(Polled(0, [scan("a", 0)]), detector(8))


async def test_a_permission_error_is_poison_at_once_and_never_retried() -> None:
    from storage.errors import ObjectForbidden

    calls = 0

    async def fetch(event: ScanEvent) -> bytes:
        nonlocal calls
        calls += 1
        raise ObjectForbidden(f"s3://{event.bucket}/{event.key}: this service may not access it (AccessDenied)")

    with ThreadPoolExecutor(1) as pool:
        preparer = Preparer(fetch, decode, pool, stop=asyncio.Event(), backoff=FAST)
        batch = await preparer.prepare(Polled(0, [scan("forbidden", 0), scan("also", 1)]), detector(8))
    assert [p.error.code for p in batch.poisons] == ["access_denied", "access_denied"]  # type: ignore[attr-defined]
    assert calls == 2  # one try each: the partition moves on


async def test_an_event_naming_another_bucket_is_poison_before_any_fetch() -> None:
    async def fetch(event: ScanEvent) -> bytes:
        raise AssertionError("must not be fetched")

    other = SourceRecord("ct.scans", 0, 0, None, ScanEvent(scan_id="x", bucket="models", key="current.json").to_json())
    with ThreadPoolExecutor(1) as pool:
        preparer = Preparer(fetch, decode, pool, stop=asyncio.Event(), allowed_buckets=frozenset({"scans"}))
        batch = await preparer.prepare(Polled(0, [other]), detector(8))
    assert [p.error.code for p in batch.poisons] == ["bucket_not_allowed"]  # type: ignore[attr-defined]
