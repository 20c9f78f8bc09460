"""Messages of the accepted topic: an operator (or the facade) confirms what a scan is."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from schemas.base import Message, ScanId, utc_now

Label = Literal["normal", "defect"]


class AcceptedScan(Message):
    scan_id: ScanId
    image_url: str = Field(max_length=2048, description="s3://bucket/key of the scan")
    label: Label
    note: str | None = Field(None, max_length=2000)
    kind: str | None = Field(None, max_length=32, description="A defect's kind, where the reviewer named one")
    reviewed_by: str | None = Field(None, max_length=64, description="The review station's user who decided")
    job_id: str | None = Field(None, max_length=64, description="Facade job waiting for this scan's update")
    accepted_at: datetime = Field(default_factory=utc_now)
