import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import pytest

from consumers.inference.prepare import Preparer
from model_core.blob_store import LocalBlobStore
from model_core.detector import Detector
from model_core.metrology.plan import MeasurePlan
from model_core.recipe_book import RecipeBook
from runtime.delivery import Polled
from runtime.recipes import NoPlan, RecipeCache
from runtime.records import SourceRecord
from runtime.retry import Abandoned, Backoff
from schemas.measurements import Measurement
from schemas.recipes import Recipe
from schemas.scans import ScanEvent
from storage.scans import DecodedScan

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


async def test_a_scan_is_measured_as_its_recipe_says_and_one_without_a_known_recipe_is_not(tmp_path: Path) -> None:
    book = RecipeBook(LocalBlobStore(tmp_path))
    book.add(Recipe.model_validate({"name": "21700", "tolerances": {"can.wall_min_mm": {"min": 0.2}}}))
    measured_with: list[MeasurePlan | None] = []

    def measuring(data: bytes, size: int, plan: MeasurePlan | None) -> DecodedScan:
        measured_with.append(plan)
        value = {"can.wall_min_mm": Measurement(value=0.25, unit="mm")}
        return DecodedScan(decode(data, size), value, measure_s=0.01)

    async def fetch(event: ScanEvent) -> bytes:
        return event.key.encode()

    def event(name: str, offset: int, **fields: object) -> SourceRecord:
        message = ScanEvent.model_validate({"scan_id": name, "bucket": "scans", "key": name, **fields})
        return SourceRecord("ct.scans", 0, offset, None, message.to_json())

    with ThreadPoolExecutor(2) as pool:
        preparer = Preparer(
            fetch,
            decode,
            pool,
            stop=asyncio.Event(),
            backoff=FAST,
            measuring=measuring,
            recipes=RecipeCache(book, refresh_s=60),
        )
        records = [event("a", 0, recipe="21700", pixel_mm=0.05), event("b", 1), event("c", 2, recipe="4680")]
        batch = await preparer.prepare(Polled(1, records), detector(8))
    ready = {item.job.event.key: item for item in batch.ready}
    assert isinstance(ready["a"].plan, MeasurePlan) and ready["a"].plan.pixel_mm == 0.05
    assert ready["a"].measured is not None and ready["a"].measure_s == 0.01
    assert ready["a"].image.shape == (8, 8)
    assert isinstance(ready["b"].plan, NoPlan) and ready["b"].measured is None
    assert isinstance(ready["c"].plan, NoPlan) and "not in the registry" in ready["c"].plan.reason
    assert len(measured_with) == 1  # only the scan with a known recipe was measured
