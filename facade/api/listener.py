"""Follows the model-updates topic: finishes the /retrain and /anomaly jobs an update names, and
hot-swaps the served model on every promotion or rollback. Reconnects with backoff when Kafka is
down; runs until cancelled."""

from __future__ import annotations

import asyncio
import logging

from facade.api.jobs import JobStore
from facade.api.model import ModelLoader
from facade.api.ports import UpdateFeed
from runtime.model_updates import SERVING_STATUSES
from schemas.model_updates import ModelUpdate

log = logging.getLogger(__name__)


class UpdatesListener:
    def __init__(self, feed: UpdateFeed, jobs: JobStore, model: ModelLoader, *, retry_s: float = 2.0) -> None:
        self._feed = feed
        self._jobs = jobs
        self._model = model
        self._retry_s = retry_s
        self.connected = asyncio.Event()
        self.model_attempted = asyncio.Event()

    async def run(self) -> None:
        """Open the feed, then load the registry's current model (after opening, so that no
        update can fall in between), then apply updates as they come."""
        while True:
            try:
                await self._feed.open()
                self.connected.set()
                first_model = asyncio.create_task(self._wait_for_first_model(), name="first-model")
                try:
                    async for update in self._feed.updates():
                        await self.apply(update)
                finally:
                    first_model.cancel()
                    self.connected.clear()
                    await self._feed.close()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "model updates unavailable (%s: %s); retrying in %.1f s", type(exc).__name__, exc, self._retry_s
                )
            await asyncio.sleep(self._retry_s)

    async def apply(self, update: ModelUpdate) -> None:
        finished = self._jobs.resolve(update)
        if finished:
            log.info("model update %s %s finished %d job(s)", update.status, update.version, len(finished))
        if update.status in SERVING_STATUSES:
            try:
                await self._model.load(update.current_version)
            except Exception as exc:
                log.warning("could not load %s now (%s); the current model keeps serving", update.current_version, exc)

    async def _wait_for_first_model(self, poll_s: float = 10.0) -> None:
        """Until a model serves: the registry's current version, polled (it may be empty or down)."""
        announced = False
        while self._model.serving_version is None:
            try:
                loaded = await self._model.load_current()
            except Exception as exc:
                loaded = False
                log.warning("could not read the registry (%s: %s)", type(exc).__name__, exc)
            self.model_attempted.set()
            if loaded:
                return
            if not announced:
                log.warning("no usable model in the registry yet: /predict answers 503 until one is promoted")
                announced = True
            await asyncio.sleep(poll_s)
