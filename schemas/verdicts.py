"""Messages of the verdicts topic: the judgement of one scan."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

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
    kind: Literal["slice", "cell"] = Field("slice", description="A slice's verdict, or a whole cell's (1.2)")
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


class Extent(BaseModel):
    """Where a finding lies: (z, y, x) in voxels of the volume, and in mm where the voxel size is known."""

    model_config = ConfigDict(frozen=True)
    centroid: tuple[float, float, float]
    low: tuple[int, int, int] = Field(description="The bounding box's first voxel (z, y, x)")
    high: tuple[int, int, int] = Field(description="Its last voxel (z, y, x), inclusive")
    centroid_mm: tuple[float, float, float] | None = None
    low_mm: tuple[float, float, float] | None = None
    high_mm: tuple[float, float, float] | None = None


class Finding(BaseModel):
    """A 3-D region of a cell the detector finds anomalous: slices it spans, where, how strongly,
    and the slice with the strongest evidence (whose heat map shows it)."""

    model_config = ConfigDict(frozen=True)
    z_first: int = Field(ge=0)
    z_last: int = Field(ge=0)
    extent: Extent
    peak_score: float
    strongest_slice: int = Field(ge=0)
    heatmap_url: str | None = Field(None, max_length=2048)


class CellVerdict(Verdict):
    """The verdict of a whole cell (a CT volume). `anomaly_score` is the cell's: the highest slice
    evidence that a neighbouring slice confirms; `reconstruction_error` the slices' mean."""

    kind: Literal["slice", "cell"] = "cell"
    slices: int = Field(ge=1, description="Slices judged")
    slice_mm: float | None = Field(None, gt=0)
    profile: list[float] = Field(
        default_factory=list, max_length=65536, description="Per slice, the confirmed evidence (the score's z-profile)"
    )
    findings: list[Finding] = Field(default_factory=list, max_length=256)
