"""`battery-ct serve inference`: settings, clients, topics, steps, run.

Reads top to bottom like the flow: the metrics/health server, the topics, the object store and
the registry, the served model (following model updates; waiting for a first model if the
registry is empty), the scans consumer with its batch delivery, and the pipeline until SIGTERM:

    poll -> parse -> fetch -> decode -> score -> verdict -> deliver (one transaction)
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client import CollectorRegistry

from consumers.inference.judge import HeatmapWriter, Judge
from consumers.inference.metrics import InferenceMetrics
from consumers.inference.pipeline import InferencePipeline, PipelineConfig
from consumers.inference.prepare import FetchFn, Preparer
from runtime.decode_budget import DecodeBudget
from runtime.delivery import BatchDelivery
from runtime.http import Health, MetricsServer
from runtime.kafka import instance_id, make_consumer
from runtime.lifecycle import connected
from runtime.metrics import service_registry
from runtime.model_updates import KafkaUpdateFeed, UpdateFeed
from runtime.outbox import outbox_for
from runtime.recipes import RecipeCache
from runtime.retry import Abandoned, retry_transient
from runtime.served_model import ModelSource, ServedModel, detector_loader
from runtime.shutdown import serve_until_signalled
from runtime.topics import ensure_topics, standard_topics
from schemas.scans import ScanEvent
from schemas.settings import Settings
from storage.scans import measuring_decoder, scan_decoder
from storage.urls import ObjectRef

if TYPE_CHECKING:
    from storage.object_store import ObjectStore

log = logging.getLogger(__name__)

DECODE_WORKERS = 2  # image decoding mostly releases the GIL; more threads only fight the model


def object_fetcher(store: ObjectStore, settings: Settings) -> FetchFn:
    async def fetch(event: ScanEvent) -> bytes:
        return await store.aget_bytes(event.bucket, event.key, max_bytes=settings.max_object_bytes)

    return fetch


def heatmap_writer(
    store: ObjectStore, settings: Settings, pool: ThreadPoolExecutor, stop: asyncio.Event
) -> HeatmapWriter:
    from model_core.heatmap import render_heatmap_png

    async def write(image: np.ndarray, error_map: np.ndarray, key: str) -> str | None:
        png = await asyncio.get_running_loop().run_in_executor(pool, render_heatmap_png, image, error_map)
        try:
            await retry_transient(
                lambda: store.aput_bytes(settings.bucket_heatmaps, key, png, content_type="image/png"),
                what=f"storing heat map {key}",
                stop=stop,
            )
        except Abandoned:
            raise
        except Exception as exc:  # a heat map is an extra: the verdict goes out without it
            log.warning("heat map %s not stored (%s: %s)", key, type(exc).__name__, exc)
            return None
        return ObjectRef(settings.bucket_heatmaps, key).url

    return write


def recipe_cache(store: ObjectStore, settings: Settings) -> RecipeCache:
    """The recipes in the registry's bucket, each read again after `recipe_refresh_s`."""
    from model_core.recipe_book import RecipeBook
    from storage.registry_store import S3BlobStore

    return RecipeCache(RecipeBook(S3BlobStore(store, settings.bucket_models)), refresh_s=settings.recipe_refresh_s)


def registry_source(store: ObjectStore, settings: Settings) -> ModelSource:
    from model_core.registry import Registry
    from runtime.safety import registry_keys
    from storage.registry_store import S3BlobStore

    return Registry(S3BlobStore(store, settings.bucket_models), **registry_keys(settings))


class InferenceService:
    """One inference consumer process. `stop` ends it gracefully (SIGTERM sets it in `run`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: CollectorRegistry | None = None,
        stop: asyncio.Event | None = None,
        source: ModelSource | None = None,
        feed: UpdateFeed | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry or service_registry()
        self.metrics = InferenceMetrics(self.registry)
        self.health = Health()
        self.stop = stop or asyncio.Event()
        self.server = MetricsServer(self.registry, self.health, port=settings.metrics_port_of("inference"))
        self.store = _object_store(settings)  # the minio client connects on first use
        self.served = ServedModel(
            source or registry_source(self.store, settings),
            feed or KafkaUpdateFeed(settings),
            self.metrics,
            settings.checkpoint_dir / "serving",
            health=self.health,
            loader=detector_loader(settings),
        )
        self.pipeline: InferencePipeline | None = None

    async def run(self) -> None:
        settings, stop = self.settings, self.stop
        model_thread = ThreadPoolExecutor(1, thread_name_prefix="model")
        decode_pool = ThreadPoolExecutor(DECODE_WORKERS, thread_name_prefix="decode")
        await self.server.start()
        try:
            await retry_transient(
                lambda: ensure_topics(settings, standard_topics(settings)), what="creating topics", stop=stop
            )
            store, served = self.store, self.served
            if settings.heatmaps:
                await retry_transient(
                    lambda: asyncio.to_thread(store.ensure_bucket, settings.bucket_heatmaps),
                    what="creating the heat-map bucket",
                    stop=stop,
                )
            async with served.following(first_model=False):
                if await served.wait_until_following(stop) and await served.wait_for_first_model(stop):
                    await self._consume(store, served, model_thread, decode_pool)
        except Abandoned as exc:
            log.info("stopped while waiting for %s", exc)
        finally:
            await self.server.stop()
            model_thread.shutdown(wait=True, cancel_futures=True)
            decode_pool.shutdown(wait=True, cancel_futures=True)

    async def _consume(
        self, store: ObjectStore, served: ServedModel, model_thread: ThreadPoolExecutor, decode_pool: ThreadPoolExecutor
    ) -> None:
        settings, stop = self.settings, self.stop
        group = settings.inference_group
        consumer = make_consumer(settings, group_id=group, max_partition_fetch_bytes=4 * 1024 * 1024)
        outbox = outbox_for(settings, consumer, group, transactional=settings.delivery == "exactly-once")
        delivery = BatchDelivery(
            consumer,
            outbox,
            self.metrics,
            topic_dead_letter=settings.topic_dead_letter,
            consumer_name=f"inference/{instance_id(settings)}",
            stop=stop,
        )
        preparer = Preparer(
            object_fetcher(store, settings),
            scan_decoder(max_pixels=settings.max_image_pixels),
            decode_pool,
            stop=stop,
            allowed_buckets=settings.scan_buckets(),
            budget=DecodeBudget(settings.decode_budget()),
            concurrency=2 * settings.batch_size,
            measuring=measuring_decoder(max_pixels=settings.max_image_pixels),
            recipes=recipe_cache(store, settings),
            default_recipe=settings.default_recipe,
        )
        heatmaps = heatmap_writer(store, settings, decode_pool, stop) if settings.heatmaps else None
        pipeline = InferencePipeline(
            delivery,
            preparer,
            Judge(model_thread, heatmaps=heatmaps),
            served,
            self.metrics,
            PipelineConfig(settings.topic_verdicts, settings.batch_size, settings.batch_linger_ms),
            stop=stop,
        )
        self.pipeline = pipeline
        async with connected(consumer, outbox, settings.topic_scans, delivery.listener(), self.health, stop=stop):
            log.info(
                "serving %s -> %s (group %s, %s, batches of %d)",
                settings.topic_scans,
                settings.topic_verdicts,
                group,
                settings.delivery,
                settings.batch_size,
            )
            await pipeline.run()


def _object_store(settings: Settings) -> ObjectStore:
    from storage.object_store import ObjectStore

    return ObjectStore.from_settings(settings)


async def run(settings: Settings) -> int:
    """Serve until SIGTERM or SIGINT; finish the batch in flight, commit, return 0."""
    return await serve_until_signalled(lambda stop: InferenceService(settings, stop=stop).run(), "inference consumer")
