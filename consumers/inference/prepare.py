"""Fetch and decode a poll's scans for the detector pinned at that poll: S3 fetches run
concurrently, decoding in a small thread pool.

Poison (missing object, oversized or corrupt image) becomes a `Poison`; a transient failure (S3
down) is retried with backoff for as long as it takes, so it never becomes a dead letter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass

from consumers.inference.steps import Job, Ready, parse_records
from model_core.detector import Detector
from runtime.dead_letters import Poison
from runtime.delivery import Polled
from runtime.retry import Abandoned, Backoff, retry_transient
from schemas.scans import ScanEvent
from storage.scans import DecodeFn

FetchFn = Callable[[ScanEvent], Awaitable[bytes]]


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
        concurrency: int = 16,
        backoff: Backoff = Backoff(),
        on_transient: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._fetch = fetch
        self._decode = decode
        self._executor = decode_executor
        self._stop = stop
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
            loop = asyncio.get_running_loop()
            image = await loop.run_in_executor(self._executor, self._decode, data, image_size)
        except Exception as exc:
            return Poison(job.source, exc, job.event.scan_id)
        return Ready(job, image, fetched - started, time.perf_counter() - fetched)
