"""Messages of the scans topic: our own ScanEvent and the S3 bucket notification MinIO publishes."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import PurePosixPath
from typing import Literal
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.base import Message, ScanId, summarise, utc_now
from schemas.recipes import RecipeName

ScanKind = Literal["slice", "volume"]


class ScanEvent(Message):
    """A CT scan is in object storage and waits for its verdict."""

    scan_id: ScanId
    bucket: str = Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
    key: str = Field(min_length=1, max_length=1024)
    size: int | None = Field(None, ge=0)
    etag: str | None = Field(None, max_length=128)
    source: str = Field("battery-ct", max_length=128, description="Who produced the event")
    created_at: datetime = Field(default_factory=utc_now, description="When the scan landed")
    recipe: RecipeName | None = Field(None, description="The cell design to measure it against (1.1)")
    pixel_mm: float | None = Field(None, gt=0, le=10, description="Pixel size in mm, when the file has none (1.1)")
    kind: ScanKind | None = Field(
        None, description="A 2-D slice or a whole cell's volume; null: told by the object (its format) (1.2)"
    )
    slice_mm: float | None = Field(
        None, gt=0, le=10, description="A volume's slice spacing in mm, when the file has none (1.2)"
    )

    @property
    def image_url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def scan_id_from_key(key: str) -> str:
    """The scan id of an object: its key without the final extension (``line1/cell-42.png`` -> ``line1/cell-42``)."""
    path = PurePosixPath(key)
    return str(path.with_suffix("")) if path.suffix else key


# MinIO's notification format (AWS S3 event structure, plus the top-level EventName and Key that
# MinIO adds). Only the fields we use are modelled; the rest is ignored.
class _S3Bucket(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    name: str


class _S3Object(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)
    key: str = Field(min_length=1, max_length=3072)
    size: int | None = None
    etag: str | None = Field(None, alias="eTag")


class _S3Entity(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    bucket: _S3Bucket
    object: _S3Object


class S3EventRecord(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)
    event_name: str = Field(alias="eventName")
    event_time: datetime | None = Field(None, alias="eventTime")
    s3: _S3Entity


class BucketNotification(BaseModel):
    """The JSON MinIO publishes to Kafka for a bucket event (``s3:ObjectCreated:Put`` and friends)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)
    event_name: str = Field(alias="EventName")
    key: str = Field(alias="Key")
    records: list[S3EventRecord] = Field(alias="Records", min_length=1, max_length=1000)

    def to_scan_events(self) -> list[ScanEvent]:
        """One ScanEvent per object-created record; keys arrive URL-encoded and are decoded here."""
        events = []
        for record in self.records:
            if not record.event_name.startswith(("s3:ObjectCreated:", "ObjectCreated:")):
                continue
            key = unquote_plus(record.s3.object.key)
            events.append(
                ScanEvent(
                    scan_id=scan_id_from_key(key),
                    bucket=record.s3.bucket.name,
                    key=key,
                    size=record.s3.object.size,
                    etag=record.s3.object.etag,
                    source="s3-notification",
                    created_at=record.event_time or utc_now(),
                )
            )
        return events


class ScanMessageError(ValueError):
    """A message on the scans topic is neither a ScanEvent nor a bucket notification."""


def parse_scan_message(payload: bytes) -> list[ScanEvent]:
    """Read one message of the scans topic in either accepted form.

    Returns the scan events it announces (a notification can hold several records, or none
    that create objects). Raises ScanMessageError with the reason for anything else.
    """
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ScanMessageError(f"not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ScanMessageError(f"expected a JSON object, got {type(document).__name__}")
    try:
        if "Records" in document or "EventName" in document:
            return BucketNotification.model_validate(document).to_scan_events()
        return [ScanEvent.model_validate(document)]
    except ValidationError as exc:
        raise ScanMessageError(summarise(exc)) from exc
