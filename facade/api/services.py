"""Everything a request handler needs, built once per process and started/stopped by the
app's lifespan: settings, clients, the served model, the job store, metrics and worker pools."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from facade.api.jobs import JobStore
from facade.api.listener import UpdatesListener
from facade.api.metrics import FacadeMetrics
from facade.api.model import ModelLoader
from facade.api.ports import Catalog, Decoder, Publisher, Store, UpdateFeed, UrlPolicy
from model_core.serving import ModelHolder
from schemas.settings import Settings

T = TypeVar("T")

DECODE_WORKERS = 2


@dataclass
class Services:
    settings: Settings
    store: Store
    catalog: Catalog
    publisher: Publisher
    feed: UpdateFeed
    parse_url: UrlPolicy
    decode: Decoder
    metrics: FacadeMetrics
    holder: ModelHolder = field(default_factory=ModelHolder)
    jobs: JobStore = field(default_factory=JobStore)
    # TensorFlow is never called from the event loop: one model thread (the detector serialises
    # callers anyway), a small pool for decoding and heat-map rendering.
    model_pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="model"))
    decode_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(DECODE_WORKERS, thread_name_prefix="decode")
    )
    model: ModelLoader = field(init=False)
    listener: UpdatesListener = field(init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.model = ModelLoader(self.catalog, self.holder, self.settings.checkpoint_dir / "facade", self.metrics)
        self.listener = UpdatesListener(self.feed, self.jobs, self.model)

    async def start(self) -> None:
        """Follow model updates in the background (it connects, loads the model, retries)."""
        self._task = asyncio.create_task(self.listener.run(), name="model-updates")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.publisher.close()
        self.model_pool.shutdown(wait=True, cancel_futures=True)
        self.decode_pool.shutdown(wait=True, cancel_futures=True)

    async def in_model_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.model_pool, fn, *args)

    async def in_decode_pool(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.decode_pool, fn, *args)
