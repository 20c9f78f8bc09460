"""Everything a request handler needs, built once per process and started/stopped by the app's
lifespan: settings, the clients (as Protocols, so unit tests pass small fakes at this boundary),
the served model (the shared `runtime.served_model.ServedModel`), the job store, metrics and
worker pools. `build_services` wires the real ones; it is imported only when the app starts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from facade.api.errors import ApiError
from facade.api.jobs import JobStore
from facade.api.metrics import FacadeMetrics
from facade.web.station import RelayFactory, ReviewStation
from runtime.decode_budget import DecodeBudget, DecodeLanes, Lane, decode_within
from runtime.model_updates import UpdateFeed
from runtime.served_model import ServedModel, detector_loader
from schemas.api import CheckpointInfo
from schemas.model_updates import ModelUpdate
from schemas.settings import Settings

if TYPE_CHECKING:
    from model_core.metrology.plan import MeasurePlan
    from model_core.registry import Registry
    from runtime.recipes import NoPlan, RecipeCache
    from storage.scans import DecodedScan, MeasuringDecodeFn

log = logging.getLogger(__name__)

T = TypeVar("T")

DECODE_WORKERS = 2
DECODE_QUEUE = 64  # requests waiting for decoding memory before the next gets 503
SMALL_IMAGE_PIXELS = 1024 * 1024  # up to 1024 x 1024: the small lane
SMALL_LANE_IMAGES = 8


class ObjectRefLike(Protocol):
    @property
    def bucket(self) -> str: ...

    @property
    def key(self) -> str: ...


# image_url -> (bucket, key); raises storage.errors.UrlNotAllowed (the one policy lives in storage.urls)
UrlPolicy = Callable[[str], ObjectRefLike]
# (object bytes, model input size) -> (S, S) float32, raises ImageDecodeError (storage.scans.scan_decoder)
Decoder = Callable[[bytes, int], np.ndarray]


class Store(Protocol):
    async def aget_bytes(self, bucket: str, key: str, *, max_bytes: int) -> bytes: ...

    async def aput_bytes(self, bucket: str, key: str, data: bytes, *, content_type: str = ...) -> object: ...

    def exists(self, bucket: str, key: str) -> bool: ...


class Catalog(Protocol):
    """The model registry as the facade sees it (blocking calls: run them in a worker thread)."""

    def current_version(self) -> str | None: ...

    def fetch(self, version: str, dest: Path) -> Path: ...

    def checkpoints(self) -> list[CheckpointInfo]: ...


class Publisher(Protocol):
    async def publish(self, topic: str, key: bytes, value: bytes) -> None: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


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
    jobs: JobStore = field(default_factory=JobStore)
    # The review station's outbox relay (build_services: the Kafka one); without it, as with the
    # unit tests' fakes, decisions are stored and wait in the outbox.
    relay_factory: RelayFactory | None = None
    # Heat-map URL -> (bucket, key): the heat-map bucket only, which scans may never name.
    parse_heatmap_url: UrlPolicy | None = None
    # Measuring for a recipe (build_services: the registry's recipes); without them /predict
    # answers without measurements, as the unit tests' fakes do.
    measuring: MeasuringDecodeFn | None = None
    recipes: RecipeCache | None = None
    # TensorFlow is never called from the event loop: one model thread (the detector serialises
    # callers anyway), a small pool for decoding and heat-map rendering.
    model_pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="model"))
    decode_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(DECODE_WORKERS, thread_name_prefix="decode")
    )
    small_decode_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="decode-small")
    )
    decode_lanes: DecodeLanes = field(init=False)
    served: ServedModel = field(init=False)
    review: ReviewStation = field(init=False)
    _running: AsyncExitStack = field(default_factory=AsyncExitStack, init=False)

    def __post_init__(self) -> None:
        # A flood of large-but-legal images queues (and past a queue of 64, gets 503) instead of
        # exhausting memory, in its own lane: ordinary slices keep their own budget and thread.
        budget = self.settings.decode_budget()
        self.decode_lanes = DecodeLanes(
            small=Lane(DecodeBudget(SMALL_LANE_IMAGES * SMALL_IMAGE_PIXELS), self.small_decode_pool),
            large=Lane(DecodeBudget(budget, max_waiting=DECODE_QUEUE), self.decode_pool),
            small_pixels=SMALL_IMAGE_PIXELS,
        )
        self.served = ServedModel(
            self.catalog,
            self.feed,
            self.metrics,
            self.settings.checkpoint_dir / "facade",
            on_update=self._finish_jobs,
            loader=detector_loader(self.settings),
            poll_s=10.0,
        )
        self.review = ReviewStation(self.settings, relay_factory=self.relay_factory)
        if self.parse_heatmap_url is None:
            from storage.urls import parse_image_url

            self.parse_heatmap_url = partial(
                parse_image_url, settings=self.settings, allowed_buckets={self.settings.bucket_heatmaps}
            )

    def _finish_jobs(self, update: ModelUpdate) -> None:
        finished = self.jobs.resolve(update)
        if finished:
            log.info("model update %s %s finished %d job(s)", update.status, update.version, len(finished))

    async def start(self) -> None:
        """Open the review database (its relay publishing in the background) and follow model
        updates in the background (it connects, loads the model, retries)."""
        await self._running.enter_async_context(self.review.running())
        await self._running.enter_async_context(self.served.following())

    async def stop(self) -> None:
        await self._running.aclose()
        await self.publisher.close()
        for pool in (self.model_pool, self.decode_pool, self.small_decode_pool):
            pool.shutdown(wait=True, cancel_futures=True)

    async def in_model_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.model_pool, fn, *args)

    async def in_decode_pool(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.decode_pool, fn, *args)

    async def fetch_scan(self, image_url: str) -> tuple[ObjectRefLike, bytes]:
        """The object behind `image_url`, after the URL policy; raises UrlNotAllowed, ObjectMissing, ..."""
        ref = self.parse_url(image_url)
        data = await self.store.aget_bytes(ref.bucket, ref.key, max_bytes=self.settings.max_object_bytes)
        if not data:
            raise ApiError(422, "image_empty", f"s3://{ref.bucket}/{ref.key} is empty (0 bytes)")
        return ref, data

    async def fetch_heatmap(self, heatmap_url: str) -> bytes:
        """A verdict's stored heat map, after the heat-map URL policy."""
        assert self.parse_heatmap_url is not None
        ref = self.parse_heatmap_url(heatmap_url)
        return await self.store.aget_bytes(ref.bucket, ref.key, max_bytes=self.settings.max_object_bytes)

    async def decode_scan(self, data: bytes, size: int) -> np.ndarray:
        """The model's input, decoded as the inference consumer decodes it (in the decode pool)."""
        return await decode_within(self.decode_lanes, self.decode, data, size)

    async def plan_for(self, recipe: str | None, pixel_mm: float | None) -> MeasurePlan | NoPlan | None:
        """What to measure of a scan of `recipe` (else the default recipe); None: no measuring here."""
        if self.recipes is None or self.measuring is None:
            return None
        return await self.recipes.plan(recipe, default=self.settings.default_recipe, pixel_mm=pixel_mm)

    async def decode_and_measure(self, data: bytes, size: int, plan: MeasurePlan | NoPlan | None) -> DecodedScan:
        """The model's input and, under a `MeasurePlan`, the measurements, from one decode."""
        from model_core.metrology.plan import MeasurePlan
        from storage.scans import DecodedScan

        measuring = self.measuring
        if not isinstance(plan, MeasurePlan) or measuring is None:
            return DecodedScan(await self.decode_scan(data, size))
        chosen = plan

        def decode(data: bytes, size: int) -> DecodedScan:
            return measuring(data, size, chosen)

        return await decode_within(self.decode_lanes, decode, data, size)


class RegistryCatalog:
    """The `Catalog` on the checkpoint registry: versions as CheckpointInfo, and rollback."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def current_version(self) -> str | None:
        return self._registry.current_version()

    def fetch(self, version: str, dest: Path) -> Path:
        return self._registry.fetch(version, dest)

    def checkpoints(self) -> list[CheckpointInfo]:
        return [
            CheckpointInfo(
                version=record.version,
                status=record.status,
                current=record.current,
                threshold=record.metadata.threshold,
                created_at=record.metadata.created_at,
                parent=record.metadata.parent,
                validation_error=record.metadata.validation_error,
                anomaly_error=record.metadata.anomaly_error,
                reason=record.reason,
            )
            for record in self._registry.list_versions()
        ]


def readable_buckets(settings: Settings) -> frozenset[str]:
    """What an image URL may name: scans and the dataset, never the models or anything else."""
    return settings.scan_buckets() | {settings.bucket_datasets}


def build_services(settings: Settings, metrics: FacadeMetrics) -> Services:
    """The real services: the S3 object store, the registry in it, Kafka, the storage URL policy
    and the scan decoder the inference consumer uses too."""
    from model_core.recipe_book import RecipeBook
    from model_core.registry import Registry
    from reviews.relay import OutboxRelay
    from runtime.kafka import instance_id
    from runtime.model_updates import KafkaUpdateFeed
    from runtime.publisher import KafkaPublisher
    from runtime.recipes import RecipeCache
    from runtime.safety import registry_keys
    from storage.object_store import ObjectStore
    from storage.registry_store import S3BlobStore
    from storage.scans import measuring_decoder, scan_decoder
    from storage.urls import parse_image_url

    store = ObjectStore.from_settings(settings)
    registry = Registry(
        S3BlobStore(store, settings.bucket_models), owner=f"facade-{instance_id(settings)}", **registry_keys(settings)
    )
    return Services(
        settings=settings,
        store=store,
        catalog=RegistryCatalog(registry),
        publisher=KafkaPublisher(settings),
        feed=KafkaUpdateFeed(settings),
        parse_url=partial(parse_image_url, settings=settings, allowed_buckets=readable_buckets(settings)),
        decode=scan_decoder(max_pixels=settings.max_image_pixels),
        metrics=metrics,
        relay_factory=OutboxRelay,
        measuring=measuring_decoder(max_pixels=settings.max_image_pixels),
        recipes=RecipeCache(
            RecipeBook(S3BlobStore(store, settings.bucket_models)), refresh_s=settings.recipe_refresh_s
        ),
    )
