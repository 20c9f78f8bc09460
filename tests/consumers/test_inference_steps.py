import json
from datetime import UTC, datetime, timedelta

import numpy as np

from consumers.inference.judge import build_verdict
from consumers.inference.prepare import Job, Ready, parse_records
from model_core.detector import ScanScore
from runtime.records import SourceRecord
from schemas.scans import ScanEvent, ScanMessageError


def record(value: bytes | None, offset: int = 0, partition: int = 0) -> SourceRecord:
    return SourceRecord("ct.scans", partition, offset, b"k", value)


def notification(key: str, event: str = "s3:ObjectCreated:Put") -> bytes:
    return json.dumps(
        {
            "EventName": event,
            "Key": f"scans/{key}",
            "Records": [
                {
                    "eventName": event,
                    "eventTime": "2026-01-01T00:00:00Z",
                    "s3": {"bucket": {"name": "scans"}, "object": {"key": key, "size": 10, "eTag": "abc"}},
                }
            ],
        }
    ).encode()


def test_scan_events_and_notifications_become_jobs() -> None:
    event = ScanEvent(scan_id="cell-1", bucket="scans", key="cell-1.png")
    parsed = parse_records(
        [
            record(event.to_json()),
            record(notification("line%201/cell+2.png"), 1),
            record(notification("x.png", "s3:CompleteMultipartUpload:Post"), 2),
        ]
    )
    assert parsed.poisons == []
    assert [job.event.key for job in parsed.jobs] == ["cell-1.png", "line 1/cell 2.png"]
    assert parsed.jobs[1].event.scan_id == "line 1/cell 2"
    assert parsed.jobs[1].source.offset == 1


def test_multipart_upload_notifications_are_scans() -> None:
    parsed = parse_records([record(notification("big.tif", "s3:ObjectCreated:CompleteMultipartUpload"))])
    assert [job.event.scan_id for job in parsed.jobs] == ["big"]


def test_poison_messages_are_separated_with_their_reason() -> None:
    unknown_major = ScanEvent(scan_id="a", bucket="scans", key="a.png").model_dump(mode="json")
    unknown_major["schema_version"] = "2.0"
    parsed = parse_records(
        [record(b"{not json", 0), record(json.dumps(unknown_major).encode(), 1), record(None, 2), record(b"[1]", 3)]
    )
    assert parsed.jobs == []
    assert [p.source.offset for p in parsed.poisons] == [0, 1, 2, 3]
    assert all(isinstance(p.error, ScanMessageError) for p in parsed.poisons)
    assert "major" in str(parsed.poisons[1].error)


def test_verdict_carries_scores_version_and_timings() -> None:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    event = ScanEvent(scan_id="cell-9", bucket="scans", key="cell-9.png", created_at=created)
    item = Ready(Job(event, record(b"")), np.zeros((4, 4), np.float32), fetch_s=0.01, decode_s=0.002)
    score = ScanScore(0.001, 0.7, True, np.zeros((4, 4), np.float32))
    verdict = build_verdict(
        item, score, model_version="v7", threshold=0.5, model_s=0.03, batch_size=8, now=created + timedelta(seconds=2)
    )
    assert (verdict.scan_id, verdict.image_url, verdict.model_version) == ("cell-9", "s3://scans/cell-9.png", "v7")
    assert verdict.is_anomaly and verdict.anomaly_score == 0.7 and verdict.threshold == 0.5
    assert verdict.timings is not None
    assert verdict.timings.fetch_ms == 10.0
    assert verdict.timings.event_to_verdict_ms == 2000.0
    assert verdict.timings.publish_ms is None  # not knowable before the verdict is published
    assert verdict.batch_size == 8
