"""The model the facade serves: the registry's current version at start, then each promotion or
rollback announced on the model-updates topic. Loading (S3 fetch, hash check, Keras) runs in a
worker thread; a checkpoint that fails its check is refused and the old model keeps serving."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from facade.api.metrics import FacadeMetrics
from facade.api.ports import Catalog
from model_core.detector import Detector
from model_core.serving import ModelHolder

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
                detector = await asyncio.to_thread(self._fetch_and_load, version)
            except Exception as exc:
                if getattr(exc, "retriable", False) or isinstance(exc, ConnectionError | TimeoutError):
                    raise  # the store is down: not the checkpoint's fault, try again later
                self.refused.add(version)
                self._metrics.model_load_failures.inc()
                log.error("model %s refused, %s keeps serving: %s", version, self.serving_version, exc)
                return False
            self._holder.swap(detector)
            self._metrics.model_serving(detector.version, detector.threshold)
            log.info("model %s serving (threshold %.6g)", detector.version, detector.threshold)
            return True

    def _fetch_and_load(self, version: str) -> Detector:
        # A private download directory: consumers and facades on one host share checkpoint_dir.
        # The loaded model lives in memory, so the download goes once it is loaded.
        self._work_dir.mkdir(parents=True, exist_ok=True)
        download = Path(tempfile.mkdtemp(prefix=f"{version}.", dir=self._work_dir))
        try:
            return self._loader(self._catalog.fetch(version, download / "checkpoint"))
        finally:
            shutil.rmtree(download, ignore_errors=True)
