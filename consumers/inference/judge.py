"""Score a prepared batch with the detector pinned at its poll and turn the scores into verdicts
(the verdict is built by pure functions: scores in, verdicts out).

The model runs in one dedicated worker thread (TensorFlow is never called from the event loop,
which must keep heartbeating).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from consumers.inference.prepare import PreparedBatch, Ready
from model_core.detector import Detector, ScanScore
from runtime.dead_letters import Poison
from runtime.recipes import cell_check
from schemas.base import utc_now
from schemas.scans import ScanEvent
from schemas.verdicts import StageTimings, Verdict
from storage.scans import heatmap_key

log = logging.getLogger(__name__)

Scored = tuple[Ready, ScanScore]
# (scan's preprocessed image, its error map, key) -> URL of the stored heat map, None if not stored
HeatmapWriter = Callable[[np.ndarray, np.ndarray, str], Awaitable[str | None]]


@dataclass
class Judged:
    """What one batch produced: verdicts and dead-letter candidates, for one transaction."""

    batch: PreparedBatch
    verdicts: list[Verdict] = field(default_factory=list)
    poisons: list[Poison] = field(default_factory=list)
    model_s: float = 0.0


class Judge:
    def __init__(self, model_executor: Executor, *, heatmaps: HeatmapWriter | None = None) -> None:
        self._executor = model_executor
        self._heatmaps = heatmaps

    async def judge(self, batch: PreparedBatch) -> Judged:
        detector, ready = batch.detector, batch.ready
        judged = Judged(batch, poisons=list(batch.poisons))
        if not ready:
            return judged
        started = time.perf_counter()
        scored, failed = await self._score(detector, ready)
        judged.model_s = time.perf_counter() - started
        judged.poisons += failed
        share = judged.model_s / len(ready)
        urls = await self._store_heatmaps(scored, detector.version)
        for (item, score), url in zip(scored, urls, strict=True):
            judged.verdicts.append(
                build_verdict(
                    item,
                    score,
                    model_version=detector.version,
                    threshold=detector.threshold,
                    model_s=share,
                    batch_size=len(ready),
                    heatmap_url=url,
                )
            )
        return judged

    async def _score(self, detector: Detector, ready: list[Ready]) -> tuple[list[Scored], list[Poison]]:
        loop = asyncio.get_running_loop()
        try:
            scores = await loop.run_in_executor(self._executor, detector.score_batch, stack_images(ready))
            return list(zip(ready, scores, strict=True)), []
        except Exception:
            log.warning("the model failed on a batch of %d; scoring its scans one by one", len(ready), exc_info=True)
        # One scan the model cannot take must not hold back the others (nor block its partition).
        scored: list[Scored] = []
        failed: list[Poison] = []
        for item in ready:
            try:
                (score,) = await loop.run_in_executor(self._executor, detector.score_batch, item.image[None])
            except Exception as exc:
                failed.append(Poison(item.job.source, exc, item.job.event.scan_id))
                continue
            scored.append((item, score))
        return scored, failed

    async def _store_heatmaps(self, scored: list[Scored], version: str) -> list[str | None]:
        if self._heatmaps is None:
            return [None] * len(scored)
        writer = self._heatmaps
        keys = [heatmap_key(item.job.event.scan_id, version) for item, _ in scored]
        urls = await asyncio.gather(
            *(writer(item.image, score.error_map, key) for (item, score), key in zip(scored, keys, strict=True))
        )
        return list[str | None](urls)


def stack_images(ready: Sequence[Ready]) -> np.ndarray:
    """The model's input, (N, S, S) float32."""
    return np.stack([item.image for item in ready]).astype(np.float32, copy=False)


def verdict_label(is_anomaly: bool) -> str:
    return "anomaly" if is_anomaly else "normal"


def event_age_s(event: ScanEvent, now: datetime) -> float:
    """Seconds from the scan's event time to `now` (0 when clocks disagree)."""
    return max(0.0, (now - event.created_at).total_seconds())


def build_verdict(
    item: Ready,
    score: ScanScore,
    *,
    model_version: str,
    threshold: float,
    model_s: float,
    batch_size: int,
    heatmap_url: str | None = None,
    now: datetime | None = None,
) -> Verdict:
    """The verdict of one scan; `model_s` is its share of the batch's model time."""
    now = now or utc_now()
    event = item.job.event
    check = cell_check(item.plan, item.measured, item.measure_error)
    return Verdict(
        scan_id=event.scan_id,
        image_url=event.image_url,
        reconstruction_error=score.reconstruction_error,
        anomaly_score=score.anomaly_score,
        is_anomaly=score.is_anomaly,
        threshold=threshold,
        model_version=model_version,
        heatmap_url=heatmap_url,
        timings=StageTimings(
            fetch_ms=item.fetch_s * 1000,
            decode_ms=item.decode_s * 1000,
            measure_ms=item.measure_s * 1000 if item.plan is not None else None,
            model_ms=model_s * 1000,
            # The verdict is serialised before the transaction that publishes it, so its own publish
            # time cannot be in it: always None here; the publish stage is the stage_seconds metric.
            publish_ms=None,
            event_to_verdict_ms=event_age_s(event, now) * 1000,
        ),
        batch_size=batch_size,
        event_time=event.created_at,
        judged_at=now,
        recipe=check.recipe,
        pixel_mm=check.pixel_mm,
        measurements=check.measurements,
        conforms=check.conforms,
        conformance=check.conformance,
    )
