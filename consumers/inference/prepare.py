"""Parse, fetch and decode a poll's scans for the detector pinned at that poll: the parsing is a
pure step (records in, jobs and poison out); S3 fetches run concurrently, decoding in a small
thread pool. A scan whose recipe asks for measurements is measured in the same decode call, at
its own resolution.

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
from model_core.metrology.plan import MeasurePlan
from runtime.dead_letters import Poison
from runtime.decode_budget import DecodeBudget, Lane, decode_within
from runtime.delivery import Polled
from runtime.recipes import NoPlan, RecipeCache
from runtime.records import SourceRecord
from runtime.retry import Abandoned, Backoff, retry_transient
from schemas.measurements import Measurements
from schemas.scans import ScanEvent, ScanMessageError, parse_scan_message
from storage.errors import UrlNotAllowed
from storage.scans import DecodedScan, DecodeFn, MeasuringDecodeFn

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
    """A scan fetched and preprocessed for the model, and measured when its recipe asks."""

    job: Job
    image: np.ndarray  # (S, S) float32 from model_core.imaging.preprocess
    fetch_s: float
    decode_s: float
    plan: MeasurePlan | NoPlan | None = None  # None: this consumer does not measure
    measured: Measurements | None = None
    measure_s: float = 0.0
    measure_error: str | None = None


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
        measuring: MeasuringDecodeFn | None = None,
        recipes: RecipeCache | None = None,
        default_recipe: str | None = None,
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
        self._measuring = measuring if recipes is not None else None
        self._recipes = recipes
        self._default_recipe = default_recipe

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
        plan = await self._plan(job.event)
        try:
            decoded = await self._decode_scan(data, image_size, plan if isinstance(plan, MeasurePlan) else None)
        except Exception as exc:
            return Poison(job.source, exc, job.event.scan_id)
        return Ready(
            job,
            decoded.image,
            fetched - started,
            time.perf_counter() - fetched - decoded.measure_s,
            plan,
            decoded.measured,
            decoded.measure_s,
            decoded.measure_error,
        )

    async def _plan(self, event: ScanEvent) -> MeasurePlan | NoPlan | None:
        """What to measure of the scan (None: this consumer measures nothing); the recipe store is
        retried while it cannot be reached, as the scan's own object is."""
        recipes = self._recipes
        if recipes is None:
            return None
        name = event.recipe or self._default_recipe
        try:
            return await retry_transient(
                lambda: recipes.plan(event.recipe, default=self._default_recipe, pixel_mm=event.pixel_mm),
                what=f"reading recipe {name}",
                stop=self._stop,
                backoff=self._backoff,
                on_retry=self._on_transient,
            )
        except Abandoned:
            raise
        except Exception as exc:  # a recipe that cannot be read costs the scan its check, not its verdict
            return NoPlan(name, f"recipe {name} cannot be read: {exc}")

    async def _decode_scan(self, data: bytes, size: int, plan: MeasurePlan | None) -> DecodedScan:
        measuring, plain = self._measuring, self._decode

        def decode(data: bytes, size: int) -> DecodedScan:
            if plan is not None and measuring is not None:
                return measuring(data, size, plan)
            return DecodedScan(plain(data, size))

        if self._budget is None:
            return await asyncio.get_running_loop().run_in_executor(self._executor, decode, data, size)
        return await decode_within(Lane(self._budget, self._executor), decode, data, size)
