"""Score a prepared batch with the detector pinned at its poll and turn the scores into verdicts.

The model runs in one dedicated worker thread (TensorFlow is never called from the event loop,
which must keep heartbeating).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from consumers.inference.prepare import PreparedBatch
from consumers.inference.steps import Ready, build_verdict, stack_images
from model_core.detector import Detector, ScanScore
from runtime.dead_letters import Poison
from schemas.verdicts import Verdict
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
