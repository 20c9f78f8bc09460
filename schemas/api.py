"""Bodies of the HTTP facade (see DESIGN's contract table)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.measurements import Measurement, MeasurementName
from schemas.recipes import Conformance, RecipeName


class ImageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image_url: str = Field(
        min_length=1,
        max_length=2048,
        description="s3://bucket/key, /bucket/key, or an http(s) URL of the configured object store",
        examples=["s3://scans/line1/cell-0001.png"],
    )
    heatmap: bool = Field(False, description="/predict only: store the heat map and return its URL")
    recipe: RecipeName | None = Field(
        None, description="/predict only: measure the cell against this recipe (default: the default_recipe setting)"
    )
    pixel_mm: float | None = Field(
        None, gt=0, le=10, description="/predict only: pixel size in mm (default: the recipe's)"
    )


class PredictResponse(BaseModel):
    reconstruction_error: float
    is_anomaly: bool
    anomaly_score: float
    threshold: float
    model_version: str
    heatmap_url: str | None = None
    recipe: str | None = Field(None, description="The recipe the cell was measured against")
    pixel_mm: float | None = None
    measurements: dict[MeasurementName, Measurement] | None = Field(
        None, description="The recipe's measurements (names: schemas/measurements.py); null: not measured"
    )
    conforms: bool | None = Field(None, description="Within every tolerance; null: not checked (see conformance)")
    conformance: Conformance | None = None


class TrainingResponse(BaseModel):
    """Answer of /retrain and /anomaly once the model update that includes the scan is broadcast."""

    new_validation_error: float | None
    new_anomaly_error: float | None
    model_version: str
    threshold: float
    status: Literal["promoted", "rejected", "rolled_back"]
    job_id: str


JobState = Literal["pending", "done", "failed"]


class JobAccepted(BaseModel):
    job_id: str
    status: JobState = "pending"
    location: str = Field(description="GET this path for the result")


class JobStatus(BaseModel):
    job_id: str
    status: JobState
    result: TrainingResponse | None = None
    error: str | None = None


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: a machine-readable code and a sentence for people."""

    code: str = Field(examples=["url_not_allowed", "image_corrupt", "object_missing"])
    message: str


class CheckpointInfo(BaseModel):
    version: str
    status: str
    current: bool
    threshold: float
    created_at: datetime
    parent: str | None = None
    validation_error: float | None = None
    anomaly_error: float | None = None
    reason: str | None = Field(None, description="Why the gate promoted or rejected it, or why it was rolled back")


class ReadinessReport(BaseModel):
    ready: bool
    kafka: bool
    s3: bool
    model_loaded: bool
    model_version: str | None = None
