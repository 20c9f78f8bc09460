"""The producer side of the pipeline: put a CT slice in the scans bucket, then announce it.

`Uploader` checks that the bytes decode as an image (a scan the consumer would dead-letter is
refused here, where a person can still fix it), writes `<scan_id><ext>` to `bucket_scans` and
publishes a `ScanEvent` keyed by the scan id to `topic_scans` (unless a bucket notification
already announces uploads). One ObjectStore and one producer serve every upload between
`start` and `stop`.

Order matters: the object is written before the event, so a consumer never hears of a scan it
cannot fetch. If the event fails after the upload, uploading again is harmless: same key, and
the consumer's verdict for a scan id is idempotent.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from pydantic import TypeAdapter, ValidationError

from model_core.errors import ImageDecodeError
from model_core.imaging import SUPPORTED_EXTENSIONS, decode_image
from schemas.base import ScanId, summarise
from schemas.scans import ScanEvent
from schemas.settings import Settings

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

    from storage.object_store import ObjectStore

SOURCE = "battery-ct-upload"
CONTENT_TYPES = {
    ".png": "image/png",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
}
_SCAN_ID = TypeAdapter(ScanId)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class UploadRefused(Exception):  # noqa: N818 - a refusal of this input, not a failure of ours
    """This file will not be uploaded (not an image, too large, bad name); the others still are."""

    retriable = False

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


def scan_id_for(name: str, data: bytes, *, prefix: str = "") -> str:
    """A readable, unique scan id: `<prefix><file stem>-<first 8 hex of the content's SHA-256>`.
    The same file gets the same id, so uploading it twice is one scan, not two."""
    stem = _UNSAFE.sub("-", Path(name).stem).strip("-._") or "scan"
    digest = hashlib.sha256(data).hexdigest()[:8]
    return checked_scan_id(f"{prefix}{stem[:100]}-{digest}")


def checked_scan_id(scan_id: str) -> str:
    try:
        return str(_SCAN_ID.validate_python(scan_id))
    except ValidationError as exc:
        raise UploadRefused(
            f"invalid scan id {scan_id!r}: {summarise(exc, whole='scan id')}", code="bad_scan_id"
        ) from exc


class Uploader:
    """Uploads scans and announces them. `async with Uploader(settings) as uploader: ...`"""

    def __init__(
        self,
        settings: Settings,
        *,
        store: ObjectStore | None = None,
        producer: AIOKafkaProducer | None = None,
        publish_events: bool = True,
        validate: bool = True,
    ) -> None:
        self.settings = settings
        self.publish_events = publish_events
        self.validate = validate
        self._store = store
        self._producer = producer
        self._own_producer = producer is None
        self._started = False

    async def start(self) -> None:
        if self._store is None:
            from storage.object_store import ObjectStore

            self._store = ObjectStore.from_settings(self.settings)
        await self._store.aensure_bucket(self.settings.bucket_scans)
        if self.publish_events and self._producer is None:
            from runtime.kafka import make_producer

            self._producer = make_producer(self.settings)
        if self.publish_events and self._own_producer and self._producer is not None:
            await self._producer.start()
        self._started = True

    async def stop(self) -> None:
        self._started = False
        if self._own_producer and self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def upload(
        self, data: bytes, scan_id: str, ext: str, *, recipe: str | None = None, pixel_mm: float | None = None
    ) -> ScanEvent:
        """Store `data` as `<scan_id><ext>` and (unless events are off) publish its ScanEvent, which
        names the cell's `recipe` and the scan's `pixel_mm` when given.
        Raises `UploadRefused` for input that will never be accepted; storage and Kafka errors
        pass through (their `retriable` flag says whether to try again)."""
        if not self._started or self._store is None:
            raise RuntimeError("Uploader.upload called before start()")
        scan_id = checked_scan_id(scan_id)
        ext = ext.lower() if ext.startswith(".") else f".{ext.lower()}"
        if ext not in SUPPORTED_EXTENSIONS:
            allowed = ", ".join(sorted(SUPPORTED_EXTENSIONS))
            raise UploadRefused(f"unsupported extension {ext!r} (expected one of {allowed})", code="bad_extension")
        if len(data) > self.settings.max_object_bytes:
            raise UploadRefused(
                f"{len(data)} bytes is more than the {self.settings.max_object_bytes} a scan may have",
                code="too_large",
            )
        if self.validate:
            await asyncio.to_thread(self._check_decodes, data)
        key = f"{scan_id}{ext}"
        etag = await self._store.aput_bytes(self.settings.bucket_scans, key, data, content_type=CONTENT_TYPES[ext])
        event = ScanEvent(
            scan_id=scan_id,
            bucket=self.settings.bucket_scans,
            key=key,
            size=len(data),
            etag=etag,
            source=SOURCE,
            recipe=recipe,
            pixel_mm=pixel_mm,
        )
        if self.publish_events:
            if self._producer is None:
                raise RuntimeError("Uploader started without a producer but with events on")
            await self._producer.send_and_wait(self.settings.topic_scans, event.to_json(), key=scan_id.encode())
        return event

    def _check_decodes(self, data: bytes) -> None:
        try:
            decode_image(data, max_pixels=self.settings.max_image_pixels)
        except ImageDecodeError as exc:
            raise UploadRefused(f"not a usable scan: {exc}", code=exc.code) from exc
