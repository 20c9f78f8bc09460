"""The real services: the S3 object store, the registry in it, Kafka, the storage URL policy and
the scan decoder the inference consumer uses too. Imported only when the app starts, never at import time."""

from __future__ import annotations

from functools import partial

from facade.api.catalog import RegistryCatalog
from facade.api.kafka import KafkaPublisher, KafkaUpdateFeed
from facade.api.metrics import FacadeMetrics
from facade.api.services import Services
from schemas.settings import Settings


def readable_buckets(settings: Settings) -> frozenset[str]:
    """What an image URL may name: scans and the dataset, never the models or anything else."""
    return frozenset({settings.bucket_scans, settings.bucket_datasets})


def facade_owner(settings: Settings) -> str:
    from runtime.kafka import instance_id

    return f"facade-{instance_id(settings)}"


def build_services(settings: Settings, metrics: FacadeMetrics) -> Services:
    from model_core.registry import Registry
    from storage.object_store import ObjectStore
    from storage.registry_store import S3BlobStore
    from storage.scans import scan_decoder
    from storage.urls import parse_image_url

    store = ObjectStore.from_settings(settings)
    return Services(
        settings=settings,
        store=store,
        catalog=RegistryCatalog(Registry(S3BlobStore(store, settings.bucket_models), owner=facade_owner(settings))),
        publisher=KafkaPublisher(settings),
        feed=KafkaUpdateFeed(settings),
        parse_url=partial(parse_image_url, settings=settings, allowed_buckets=readable_buckets(settings)),
        decode=scan_decoder(max_pixels=settings.max_image_pixels),
        metrics=metrics,
    )
