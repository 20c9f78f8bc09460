"""The pure steps of the inference flow: records in, jobs and poison out, scores in, verdicts out.

Nothing here touches Kafka, S3 or TensorFlow, so every rule is testable with plain values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from model_core.detector import ScanScore
from runtime.dead_letters import Poison
from runtime.records import SourceRecord
from schemas.base import utc_now
from schemas.scans import ScanEvent, ScanMessageError, parse_scan_message
from schemas.verdicts import StageTimings, Verdict


@dataclass(frozen=True)
class Job:
    """One scan to judge, and the message that announced it."""

    event: ScanEvent
    source: SourceRecord


@dataclass(frozen=True)
class Parsed:
    jobs: list[Job] = field(default_factory=list)
    poisons: list[Poison] = field(default_factory=list)


@dataclass(frozen=True)
class Ready:
    """A scan fetched and preprocessed for the model."""

    job: Job
    image: np.ndarray  # (S, S) float32 from model_core.imaging.preprocess
    fetch_s: float
    decode_s: float


def parse_records(records: Iterable[SourceRecord]) -> Parsed:
    """Split a poll's messages into scans to judge and poison (malformed JSON, unknown schema major, ...)."""
    parsed = Parsed()
    for record in records:
        if not record.value:
            parsed.poisons.append(Poison(record, ScanMessageError("empty message (no value)")))
            continue
        try:
            events = parse_scan_message(record.value)
        except ScanMessageError as exc:
            parsed.poisons.append(Poison(record, exc))
            continue
        # A notification without object-created records announces nothing; its offset still moves on.
        parsed.jobs.extend(Job(event, record) for event in events)
    return parsed


def stack_images(ready: Sequence[Ready]) -> np.ndarray:
    """The model's input, (N, S, S) float32."""
    return np.stack([item.image for item in ready]).astype(np.float32, copy=False)


def verdict_label(is_anomaly: bool) -> str:
    return "anomaly" if is_anomaly else "normal"


def event_age_s(event: ScanEvent, now: datetime) -> float:
    """Seconds from the scan's event time to `now` (0 when clocks disagree)."""
    return max(0.0, (now - event.created_at).total_seconds())


def build_verdict(
    item: Ready,
    score: ScanScore,
    *,
    model_version: str,
    threshold: float,
    model_s: float,
    batch_size: int,
    heatmap_url: str | None = None,
    now: datetime | None = None,
) -> Verdict:
    """The verdict of one scan; `model_s` is its share of the batch's model time."""
    now = now or utc_now()
    event = item.job.event
    return Verdict(
        scan_id=event.scan_id,
        image_url=event.image_url,
        reconstruction_error=score.reconstruction_error,
        anomaly_score=score.anomaly_score,
        is_anomaly=score.is_anomaly,
        threshold=threshold,
        model_version=model_version,
        heatmap_url=heatmap_url,
        timings=StageTimings(
            fetch_ms=item.fetch_s * 1000,
            decode_ms=item.decode_s * 1000,
            model_ms=model_s * 1000,
            # The verdict is serialised before the transaction that publishes it, so its own publish
            # time cannot be in it: always None here; the publish stage is the stage_seconds metric.
            publish_ms=None,
            event_to_verdict_ms=event_age_s(event, now) * 1000,
        ),
        batch_size=batch_size,
        event_time=event.created_at,
        judged_at=now,
    )
