"""Parse, fetch and decode a poll's scans for the detector pinned at that poll: the parsing is a
pure step (records in, jobs and poison out); S3 fetches run concurrently, decoding in a small
thread pool.

Poison (missing object, oversized or corrupt image) becomes a `Poison`; a transient failure (S3
down) is retried with backoff for as long as it takes, so it never becomes a dead letter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from model_core.detector import Detector
from runtime.dead_letters import Poison
from runtime.decode_budget import DecodeBudget, Lane, decode_within
from runtime.delivery import Polled
from runtime.records import SourceRecord
from runtime.retry import Abandoned, Backoff, retry_transient
from schemas.scans import ScanEvent, ScanMessageError, parse_scan_message
from storage.errors import UrlNotAllowed
from storage.scans import DecodeFn

FetchFn = Callable[[ScanEvent], Awaitable[bytes]]


@dataclass(frozen=True)
class Job:
    """One scan to judge, and the message that announced it."""

    event: ScanEvent
    source: SourceRecord


@dataclass(frozen=True)
class Parsed:
    jobs: list[Job] = field(default_factory=list)
    poisons: list[Poison] = field(default_factory=list)


@dataclass(frozen=True)
class Ready:
    """A scan fetched and preprocessed for the model."""

    job: Job
    image: np.ndarray  # (S, S) float32 from model_core.imaging.preprocess
    fetch_s: float
    decode_s: float


def parse_records(records: Iterable[SourceRecord]) -> Parsed:
    """Split a poll's messages into scans to judge and poison (malformed JSON, unknown schema major, ...)."""
    parsed = Parsed()
    for record in records:
        if not record.value:
            parsed.poisons.append(Poison(record, ScanMessageError("empty message (no value)")))
            continue
        try:
            events = parse_scan_message(record.value)
        except ScanMessageError as exc:
            parsed.poisons.append(Poison(record, exc))
            continue
        # A notification without object-created records announces nothing; its offset still moves on.
        parsed.jobs.extend(Job(event, record) for event in events)
    return parsed


@dataclass(frozen=True)
class PreparedBatch:
    """A poll's messages, decoded for `detector`: the model pinned when the batch was polled, so a
    hot swap takes effect at the next poll and every verdict names the version that made it."""

    polled: Polled
    detector: Detector
    ready: list[Ready]
    poisons: list[Poison]


class Preparer:
    def __init__(
        self,
        fetch: FetchFn,
        decode: DecodeFn,
        decode_executor: Executor,
        *,
        stop: asyncio.Event,
        allowed_buckets: frozenset[str] | None = None,
        budget: DecodeBudget | None = None,
        concurrency: int = 16,
        backoff: Backoff = Backoff(),
        on_transient: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._fetch = fetch
        self._decode = decode
        self._executor = decode_executor
        self._stop = stop
        self._allowed_buckets = allowed_buckets
        self._budget = budget
        self._slots = asyncio.Semaphore(concurrency)
        self._backoff = backoff
        self._on_transient = on_transient

    async def prepare(self, polled: Polled, detector: Detector) -> PreparedBatch:
        """Raises `Abandoned` when shutdown is requested while the object store is unavailable."""
        parsed = parse_records(polled.records)
        outcomes = await asyncio.gather(*(self._one(job, detector.image_size) for job in parsed.jobs))
        ready = [item for item in outcomes if isinstance(item, Ready)]
        poisons = parsed.poisons + [item for item in outcomes if isinstance(item, Poison)]
        return PreparedBatch(polled, detector, ready, poisons)

    async def _one(self, job: Job, image_size: int) -> Ready | Poison:
        if self._allowed_buckets is not None and job.event.bucket not in self._allowed_buckets:
            refused = UrlNotAllowed(
                f"bucket {job.event.bucket!r} is not one this consumer reads scans from", code="bucket_not_allowed"
            )
            return Poison(job.source, refused, job.event.scan_id)
        started = time.perf_counter()
        try:
            async with self._slots:
                data = await retry_transient(
                    lambda: self._fetch(job.event),
                    what=f"fetching {job.event.image_url}",
                    stop=self._stop,
                    backoff=self._backoff,
                    on_retry=self._on_transient,
                )
        except Abandoned:
            raise
        except Exception as exc:
            return Poison(job.source, exc, job.event.scan_id)
        fetched = time.perf_counter()
        try:
            if self._budget is None:
                image = await asyncio.get_running_loop().run_in_executor(self._executor, self._decode, data, image_size)
            else:
                image = await decode_within(Lane(self._budget, self._executor), self._decode, data, image_size)
        except Exception as exc:
            return Poison(job.source, exc, job.event.scan_id)
        return Ready(job, image, fetched - started, time.perf_counter() - fetched)
