"""Messages of the verdicts topic: the judgement of one scan."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from schemas.base import Message, ScanId, utc_now
from schemas.measurements import Measurement, MeasurementName
from schemas.recipes import Conformance, RecipeName


class StageTimings(BaseModel):
    """Where the time of one verdict went, in milliseconds."""

    model_config = ConfigDict(frozen=True)
    fetch_ms: float = Field(ge=0)
    decode_ms: float = Field(ge=0)
    measure_ms: float | None = Field(None, ge=0, description="Measuring the cell for its recipe (1.1)")
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
    # 1.1: the cell against its recipe (schemas/measurements.py names the measurements).
    recipe: RecipeName | None = Field(None, description="The cell design the scan was measured against")
    pixel_mm: float | None = Field(None, gt=0, description="Pixel size the measurements used; null: values in px")
    measurements: dict[MeasurementName, Measurement] | None = Field(
        None, description="What was measured (the recipe's families); null: not measured"
    )
    conforms: bool | None = Field(
        None, description="Within every tolerance of the recipe; null: not checked (see conformance.reason)"
    )
    conformance: Conformance | None = Field(None, description="Every check, the failed ones named, or the reason")
