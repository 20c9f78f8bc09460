"""The model the facade serves: the registry's current version at start, then each promotion or
rollback announced on the model-updates topic. Loading (S3 fetch, hash check, Keras) runs in a
worker thread; a checkpoint that fails its check is refused and the old model keeps serving."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from facade.api.metrics import FacadeMetrics
from facade.api.ports import Catalog
from model_core.detector import Detector
from model_core.serving import ModelHolder
from runtime.retry import is_retriable
from runtime.serving import fetch_and_load

log = logging.getLogger(__name__)


class ModelLoader:
    def __init__(
        self,
        catalog: Catalog,
        holder: ModelHolder,
        work_dir: Path,
        metrics: FacadeMetrics,
        *,
        loader: Callable[[Path], Detector] | None = None,
    ) -> None:
        self._catalog = catalog
        self._holder = holder
        self._work_dir = work_dir
        self._metrics = metrics
        self._loader = loader or Detector.load
        self._lock = asyncio.Lock()
        self.refused: set[str] = set()

    @property
    def serving_version(self) -> str | None:
        current = self._holder.current
        return None if current is None else current.version

    async def load_current(self) -> bool:
        """Serve the registry's current version; False when there is none (yet) or it is refused."""
        version = await asyncio.to_thread(self._catalog.current_version)
        return version is not None and await self.load(version)

    async def load(self, version: str) -> bool:
        async with self._lock:
            if version == self.serving_version:
                return True
            if version in self.refused:
                return False
            try:
                detector = await asyncio.to_thread(fetch_and_load, self._catalog, version, self._work_dir, self._loader)
            except Exception as exc:
                if is_retriable(exc):
                    raise  # the store is down: not the checkpoint's fault, try again later
                self.refused.add(version)
                self._metrics.model_load_failures.inc()
                log.error("model %s refused, %s keeps serving: %s", version, self.serving_version, exc)
                return False
            self._holder.swap(detector)
            self._metrics.model_serving(detector.version, detector.threshold)
            log.info("model %s serving (threshold %.6g)", detector.version, detector.threshold)
            return True
