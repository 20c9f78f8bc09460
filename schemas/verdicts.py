"""Messages of the verdicts topic: the judgement of one scan."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from schemas.base import Message, ScanId, utc_now


class StageTimings(BaseModel):
    """Where the time of one verdict went, in milliseconds."""

    model_config = ConfigDict(frozen=True)
    fetch_ms: float = Field(ge=0)
    decode_ms: float = Field(ge=0)
    model_ms: float = Field(ge=0, description="The scan's share of its micro-batch's model time")
    publish_ms: float | None = Field(
        None,
        ge=0,
        description="Always null from the inference consumer: a verdict is serialised before the transaction "
        "that publishes it (the publish stage is the battery_ct_stage_seconds{stage=publish} metric)",
    )
    event_to_verdict_ms: float | None = Field(
        None, ge=0, description="From the scan's event time to the verdict being made (before it is published)"
    )


class Verdict(Message):
    scan_id: ScanId
    image_url: str = Field(max_length=2048)
    reconstruction_error: float = Field(description="Mean squared reconstruction error (original spec)")
    anomaly_score: float = Field(description="The detector's decision score; compared with the threshold")
    is_anomaly: bool
    threshold: float
    model_version: str = Field(max_length=64)
    heatmap_url: str | None = Field(None, max_length=2048)
    timings: StageTimings | None = None
    batch_size: int | None = Field(None, ge=1)
    event_time: datetime | None = None
    judged_at: datetime = Field(default_factory=utc_now)
