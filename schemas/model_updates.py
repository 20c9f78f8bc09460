"""Messages of the model-updates topic: what the retrain consumer decided about a model version."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from schemas.base import Message, utc_now

UpdateStatus = Literal["promoted", "rejected", "rolled_back"]

# Model updates share one key so that a compacted topic keeps the latest decision.
MODEL_UPDATE_KEY = b"model"


class ModelUpdate(Message):
    status: UpdateStatus
    version: str = Field(max_length=64, description="The version this update is about")
    parent: str | None = Field(None, max_length=64)
    current_version: str = Field(max_length=64, description="The version serving after this update")
    threshold: float = Field(description="Threshold of current_version")
    new_validation_error: float | None = Field(None, description="Mean error on the normal validation set")
    new_anomaly_error: float | None = Field(None, description="Mean error on the known-defect set")
    dataset_size: dict[str, int] = Field(default_factory=dict, description="Scans by label")
    scan_ids: list[str] = Field(default_factory=list, max_length=100_000)
    job_ids: list[str] = Field(default_factory=list, max_length=100_000)
    reason: str | None = Field(None, max_length=2000, description="Why rejected or rolled back")
    created_at: datetime = Field(default_factory=utc_now)
