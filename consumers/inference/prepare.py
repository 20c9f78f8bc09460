"""Fetch and decode a poll's scans: S3 fetches run concurrently, decoding in a small thread pool.

Poison (missing object, oversized or corrupt image) becomes a `Poison`; a transient failure (S3
down) is retried with backoff for as long as it takes, so it never becomes a dead letter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from consumers.inference.steps import Job, Parsed, Poison, Ready, parse_records
from runtime.records import SourceRecord
from runtime.retry import Abandoned, Backoff, retry_transient
from schemas.scans import ScanEvent
from storage.scans import DecodeFn

FetchFn = Callable[[ScanEvent], Awaitable[bytes]]


@dataclass
class PreparedBatch:
    """A poll's messages, ready for the model; `generation` says which assignment it belongs to."""

    generation: int
    records: list[SourceRecord]
    ready: list[Ready]
    poisons: list[Poison]
    image_size: int


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

    async def prepare(self, records: list[SourceRecord], *, image_size: int, generation: int) -> PreparedBatch:
        """Raises `Abandoned` when shutdown is requested while the object store is unavailable."""
        parsed: Parsed = parse_records(records)
        outcomes = await asyncio.gather(*(self._one(job, image_size) for job in parsed.jobs))
        ready = [item for item in outcomes if isinstance(item, Ready)]
        poisons = parsed.poisons + [item for item in outcomes if isinstance(item, Poison)]
        return PreparedBatch(generation, records, ready, poisons, image_size)

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
            image = await self.decode(data, image_size)
        except Exception as exc:
            return Poison(job.source, exc, job.event.scan_id)
        return Ready(job, data, image, fetched - started, time.perf_counter() - fetched)

    async def decode(self, data: bytes, image_size: int) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._decode, data, image_size)

    async def redecode(self, ready: Sequence[Ready], image_size: int) -> list[Ready | Poison]:
        """Preprocess again for a model of another input size (after a hot swap)."""

        async def one(item: Ready) -> Ready | Poison:
            try:
                image = await self.decode(item.data, image_size)
            except Exception as exc:
                return Poison(item.job.source, exc, item.job.event.scan_id)
            return Ready(item.job, item.data, image, item.fetch_s, item.decode_s)

        return list(await asyncio.gather(*(one(item) for item in ready)))
