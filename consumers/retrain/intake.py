"""Intake of one accepted scan: parse the message, check the URL, fetch, decode, copy into the dataset.

Whatever can never succeed (an unknown schema major, a URL outside the allowed forms, a missing
object, a corrupt image) raises a poison error that becomes a dead letter; an unavailable object
store is retried until it answers, and never dead-lettered.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from consumers.retrain.dataset import DatasetImages
from consumers.retrain.manifest import NewScan, object_key
from runtime.records import InvalidMessage, SourceRecord, parse_record
from runtime.retry import retry_transient
from schemas.accepted import AcceptedScan
from schemas.settings import Settings

if TYPE_CHECKING:
    from storage.object_store import ObjectStore


class AcceptedScanError(InvalidMessage):
    """An accepted-topic message that is not a valid AcceptedScan (poison)."""


def source_of(record: SourceRecord) -> str:
    return f"{record.topic}/{record.partition}/{record.offset}"


def parse_accepted(record: SourceRecord) -> AcceptedScan:
    return parse_record(record, AcceptedScan, AcceptedScanError)


@dataclass(frozen=True)
class Taken:
    scan: NewScan
    record: SourceRecord


class Intake:
    def __init__(
        self, store: ObjectStore, settings: Settings, images: DatasetImages, *, stop: asyncio.Event | None = None
    ) -> None:
        self._store = store
        self._settings = settings
        self._images = images
        self._stop = stop

    async def take(self, record: SourceRecord) -> Taken:
        """The scan of `record`, its bytes copied into the datasets bucket. Raises poison errors."""
        from storage.urls import parse_image_url

        accepted = parse_accepted(record)
        settings = self._settings
        # An accepted scan comes from a scan bucket or the dataset (a relabel), never from elsewhere.
        ref = parse_image_url(
            accepted.image_url, settings, allowed_buckets=settings.scan_buckets() | {settings.bucket_datasets}
        )
        data = await retry_transient(
            lambda: self._store.aget_bytes(ref.bucket, ref.key, max_bytes=self._settings.max_object_bytes),
            what=f"fetching {accepted.image_url}",
            stop=self._stop,
        )
        sha = hashlib.sha256(data).hexdigest()
        await asyncio.to_thread(self._images.add, sha, data)  # decodes: a corrupt image fails here
        key = object_key(sha)
        bucket = self._settings.bucket_datasets
        if not await retry_transient(
            lambda: asyncio.to_thread(self._store.exists, bucket, key), what="checking the dataset", stop=self._stop
        ):
            await retry_transient(
                lambda: self._store.aput_bytes(bucket, key, data, content_type="application/octet-stream"),
                what=f"copying {accepted.scan_id} into the dataset",
                stop=self._stop,
            )
        scan = NewScan(
            scan_id=accepted.scan_id,
            sha256=sha,
            label=accepted.label,
            source=source_of(record),
            job_id=accepted.job_id,
        )
        return Taken(scan, record)
