"""Which model serves: the registry's current version at start, then every promotion or rollback
announced on the model-updates topic, loaded in the background and swapped in between batches.

A checkpoint that fails its hash or load check is refused (and counted); the old model keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from consumers.inference.metrics import InferenceMetrics
from model_core.detector import Detector
from model_core.serving import ModelHolder
from runtime.http import Health
from runtime.model_updates import SERVING_STATUSES, read_model_updates
from runtime.retry import Abandoned, Backoff, is_retriable, retry_transient
from runtime.serving import ModelSource, fetch_and_load

log = logging.getLogger(__name__)


class ModelKeeper:
    def __init__(
        self,
        source: ModelSource,
        holder: ModelHolder,
        work_dir: Path,
        metrics: InferenceMetrics,
        health: Health,
        *,
        loader: Callable[[Path], Detector] = Detector.load,
        backoff: Backoff = Backoff(initial=0.5, maximum=10.0),
    ) -> None:
        self._source = source
        self._holder = holder
        self._work_dir = work_dir
        self._metrics = metrics
        self._health = health
        self._loader = loader
        self._backoff = backoff
        self._lock = asyncio.Lock()
        self.refused: set[str] = set()

    @property
    def serving_version(self) -> str | None:
        current = self._holder.current
        return None if current is None else current.version

    async def wait_for_first_model(self, stop: asyncio.Event, *, poll_s: float = 5.0) -> bool:
        """Load the registry's current version, waiting while there is none; False if stopped first."""
        announced = False
        while not stop.is_set():
            if self._holder.current is not None:  # a model update may have arrived meanwhile
                return True
            version = await retry_transient(
                lambda: asyncio.to_thread(self._source.current_version), what="reading the registry", stop=stop
            )
            if version is not None and version not in self.refused and await self.load(version, stop=stop):
                return True
            if not announced:
                log.warning("no usable model in the registry yet: waiting for one (train and import a checkpoint)")
                self._health.set_not_ready("no model in the registry yet")
                announced = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=poll_s)
        return self._holder.current is not None

    async def load(self, version: str, *, stop: asyncio.Event | None = None) -> bool:
        """Fetch, verify and load `version` off the event loop, then serve it. False when refused."""
        async with self._lock:
            if version == self.serving_version:
                return True
            try:
                detector = await retry_transient(
                    lambda: asyncio.to_thread(fetch_and_load, self._source, version, self._work_dir, self._loader),
                    what=f"loading model {version}",
                    stop=stop,
                    backoff=self._backoff,
                )
            except Abandoned:
                raise
            except Exception as exc:
                if is_retriable(exc):
                    raise
                self.refused.add(version)
                self._metrics.model_load_failures.inc()
                log.error("model %s refused, %s keeps serving: %s", version, self.serving_version, exc)
                return False
            previous = self._holder.swap(detector)
            self._metrics.model_serving(detector.version, detector.threshold)
            log.info(
                "model %s serving (threshold %.6g), replacing %s",
                detector.version,
                detector.threshold,
                None if previous is None else previous.version,
            )
            return True

    async def follow(self, updates: AIOKafkaConsumer) -> None:
        """Apply every promotion or rollback announced from now on (runs until cancelled)."""
        async for update in read_model_updates(updates):
            if update.status not in SERVING_STATUSES:
                continue
            log.info("model update: %s %s, current is now %s", update.status, update.version, update.current_version)
            await self.load(update.current_version)
