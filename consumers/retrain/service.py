"""`battery-ct serve retrain`: settings, clients, topics, steps, run.

Reads top to bottom like the flow: the metrics/health server and the shutdown signal, the topics,
the object store, the registry and the dataset, the retrain job, the accepted-scans consumer and
the transactional outbox, then the loop until SIGTERM. The only writer of checkpoints and of the
registry's pointer.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from consumers.retrain.batching import BatchPolicy
from consumers.retrain.dataset import DatasetImages
from consumers.retrain.intake import Intake
from consumers.retrain.job import RetrainJob, WritableRegistry
from consumers.retrain.loop import LoopConfig, ManifestIO, RetrainLoop
from consumers.retrain.manifest import MANIFEST_KEY, DatasetManifest
from consumers.retrain.metrics import RetrainMetrics
from model_core.network import NetworkConfig
from model_core.scoring import PatchMemoryConfig
from model_core.thresholds import ThresholdRule
from model_core.training import EpochProgress, TrainingConfig
from runtime.delivery import BatchDelivery
from runtime.http import Health, MetricsServer
from runtime.kafka import instance_id, make_consumer
from runtime.lifecycle import connected
from runtime.metrics import service_registry
from runtime.outbox import outbox_for
from runtime.retry import Abandoned, Backoff, retry_transient
from runtime.shutdown import serve_until_signalled
from runtime.topics import ensure_topics, standard_topics
from schemas.settings import Settings
from storage.scans import scan_decoder

if TYPE_CHECKING:
    from storage.object_store import ObjectStore

log = logging.getLogger(__name__)


def training_configs(settings: Settings) -> tuple[TrainingConfig, TrainingConfig]:
    """(from scratch, warm start): the same network; a warm start runs `retrain_epochs`."""
    base = TrainingConfig(
        network=NetworkConfig(image_size=settings.image_size),
        memory=PatchMemoryConfig.for_image_size(settings.image_size),
        threshold=ThresholdRule(
            mode=settings.threshold_mode, quantile=settings.threshold_quantile, max_fpr=settings.threshold_max_fpr
        ),
        epochs=settings.epochs,
        batch_size=settings.batch_size,
    )
    return base, base.model_copy(update={"epochs": settings.retrain_epochs})


def manifest_io(store: ObjectStore, bucket: str) -> ManifestIO:
    def load() -> DatasetManifest:
        if not store.exists(bucket, MANIFEST_KEY):
            return DatasetManifest()
        return DatasetManifest.from_json(store.get_bytes(bucket, MANIFEST_KEY, max_bytes=512 * 1024 * 1024))

    def save(manifest: DatasetManifest) -> None:
        store.put_bytes(bucket, MANIFEST_KEY, manifest.to_json(), content_type="application/json")

    return load, save


def s3_registry(store: ObjectStore, settings: Settings) -> WritableRegistry:
    from model_core.registry import Registry
    from runtime.safety import registry_keys
    from storage.registry_store import S3BlobStore

    owner = f"retrain-{instance_id(settings)}"  # a restarted instance takes its own lease back at once
    # The one process that signs what it publishes (and verifies what it warm-starts from).
    keys = registry_keys(settings, sign=True)
    registry: WritableRegistry = Registry(S3BlobStore(store, settings.bucket_models), owner=owner, **keys)
    return registry


def _log_progress(step: EpochProgress) -> None:
    log.info(
        "epoch %d/%d: loss %.6f, validation loss %.6f, about %.0f s left",
        step.epoch,
        step.epochs,
        step.loss,
        step.val_loss,
        step.seconds_left,
    )


class RetrainService:
    """One retrain consumer process. `stop` ends it gracefully (SIGTERM sets it in `run`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: CollectorRegistry | None = None,
        stop: asyncio.Event | None = None,
        training: tuple[TrainingConfig, TrainingConfig] | None = None,
        replay_factor: float = 2.0,
    ) -> None:
        self.settings = settings
        self.registry = registry or service_registry()
        self.metrics = RetrainMetrics(self.registry)
        self.health = Health()
        self.stop = stop or asyncio.Event()
        self.server = MetricsServer(self.registry, self.health, port=settings.metrics_port_of("retrain"))
        self.training = training or training_configs(settings)
        self.replay_factor = replay_factor
        self.loop: RetrainLoop | None = None

    async def run(self) -> None:
        settings = self.settings
        await self.server.start()
        try:
            await retry_transient(
                lambda: ensure_topics(settings, standard_topics(settings)), what="creating topics", stop=self.stop
            )
            store = _object_store(settings)
            for bucket in (settings.bucket_datasets, settings.bucket_models):
                await retry_transient(
                    lambda b=bucket: asyncio.to_thread(store.ensure_bucket, b),  # type: ignore[misc]
                    what=f"creating bucket {bucket}",
                    stop=self.stop,
                )
            await self._serve(store)
        except Abandoned as exc:
            log.info("stopped while waiting for %s", exc)
        finally:
            self.health.set_not_ready("stopped")
            await self.server.stop()

    async def _serve(self, store: ObjectStore) -> None:
        settings = self.settings
        bootstrap, warm = self.training
        images = DatasetImages(
            store,
            settings.bucket_datasets,
            decode=scan_decoder(max_pixels=settings.max_image_pixels),
            size=bootstrap.network.image_size,
            max_bytes=settings.max_object_bytes,
        )
        job = RetrainJob(
            s3_registry(store, settings),
            images.load,
            Path(settings.checkpoint_dir) / "retrain",
            bootstrap_config=bootstrap,
            warm_config=warm,
            tolerance=settings.promotion_tolerance,
            auroc_drop=settings.promotion_auroc_drop,
            progress=_log_progress,
        )
        job.clean()
        current = await retry_transient(
            lambda: asyncio.to_thread(job.current), what="loading the current model", stop=self.stop
        )
        if current is not None:
            images.size = current.image_size
            self.metrics.current(current.version, current.threshold)
            self.metrics.errors(current.metadata.validation_error, current.metadata.anomaly_error)
        else:
            log.warning("the registry is empty: the first batch of normal scans trains the initial model")

        group = settings.retrain_group
        consumer = make_consumer(settings, group_id=group)
        # An update and its batch's offsets commit together, whatever `delivery` says.
        outbox = outbox_for(settings, consumer, group, transactional=True)
        delivery = BatchDelivery(
            consumer,
            outbox,
            self.metrics,
            topic_dead_letter=settings.topic_dead_letter,
            consumer_name=f"retrain/{instance_id(settings)}",
            stop=self.stop,
            backoff=Backoff(initial=0.5, maximum=10.0),
        )
        loop = RetrainLoop(
            delivery,
            Intake(store, settings, images, stop=self.stop),
            job,
            manifest_io(store, settings.bucket_datasets),
            BatchPolicy(settings.retrain_batch_size, settings.retrain_max_age_s),
            self.metrics,
            LoopConfig(
                topic_model_updates=settings.topic_model_updates,
                topic_control=settings.topic_control,
                replay_factor=self.replay_factor,
            ),
            stop=self.stop,
        )
        self.loop = loop
        topics = [settings.topic_accepted, settings.topic_control]
        async with connected(consumer, outbox, topics, loop.listener(), self.health, stop=self.stop):
            log.info(
                "retraining from %s (group %s, batches of %d or every %.0f s) -> %s",
                settings.topic_accepted,
                group,
                settings.retrain_batch_size,
                settings.retrain_max_age_s,
                settings.topic_model_updates,
            )
            await loop.run()


def _object_store(settings: Settings) -> ObjectStore:
    from storage.object_store import ObjectStore

    return ObjectStore.from_settings(settings)


async def run(settings: Settings) -> int:
    """Serve until SIGTERM or SIGINT; finish the batch in flight, commit, return 0."""
    return await serve_until_signalled(lambda stop: RetrainService(settings, stop=stop).run(), "retrain consumer")
