"""The scans topic: our ScanEvent and MinIO's real bucket notifications, through parse_scan_message."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.scans import ScanEvent, ScanMessageError, parse_scan_message, scan_id_from_key

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def test_minio_put_notification_becomes_one_scan_event_with_the_decoded_key() -> None:
    [event] = parse_scan_message(sample("minio_put.json"))

    assert event.bucket == "scans"
    assert event.key == "line 1/cell-0042 été.png"  # '+' is a space, %2F a slash, UTF-8 percent-escapes decoded
    assert event.scan_id == "line 1/cell-0042 été"
    assert event.size == 65871
    assert event.etag == "5fc7298143efe1276d39a3466d4e255f"
    assert event.source == "s3-notification"
    assert event.created_at == datetime(2024, 5, 14, 9, 27, 27, 485000, tzinfo=UTC)
    assert event.image_url == "s3://scans/line 1/cell-0042 été.png"


def test_minio_complete_multipart_upload_is_a_scan_too() -> None:
    [event] = parse_scan_message(sample("minio_multipart.json"))

    assert (event.bucket, event.key, event.size) == ("scans", "line2/cell 7.tif", 134217728)
    assert event.etag is not None and event.etag.endswith("-3")


def test_several_records_give_one_event_per_created_object_and_skip_removals() -> None:
    events = parse_scan_message(sample("minio_several_records.json"))

    assert [e.key for e in events] == ["a.png", "copies/b+c.png"]  # %2B is a literal plus


def test_own_scan_event_round_trips_through_the_topic_parser() -> None:
    event = ScanEvent(scan_id="line1/cell-1", bucket="scans", key="line1/cell-1.png", size=3)
    assert parse_scan_message(event.to_json()) == [event]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"text"', "JSON object"),
        (b"{}", "scan_id"),
        (json.dumps({"scan_id": "../etc/passwd", "bucket": "scans", "key": "k"}).encode(), "scan_id"),
        (json.dumps({"scan_id": "a", "bucket": "scans", "key": "k", "schema_version": "2.0"}).encode(), "major"),
        (json.dumps({"scan_id": "a", "bucket": "Bad_Bucket", "key": "k"}).encode(), "bucket"),
        (json.dumps({"scan_id": "a", "bucket": "scans", "key": ""}).encode(), "key"),
        (json.dumps({"scan_id": "a", "bucket": "scans", "key": "k" * 1025}).encode(), "key"),
        (json.dumps({"scan_id": "a", "bucket": "scans", "key": "k", "size": -1}).encode(), "size"),
        (json.dumps({"scan_id": ["a"], "bucket": "scans", "key": "k"}).encode(), "scan_id"),
        (json.dumps({"EventName": "s3:ObjectCreated:Put", "Key": "scans/a", "Records": []}).encode(), "Records"),
        (json.dumps({"EventName": "s3:ObjectCreated:Put", "Key": "x", "Records": [{"eventName": "x"}]}).encode(), "s3"),
    ],
)
def test_malformed_and_hostile_payloads_are_refused_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(ScanMessageError, match=reason):
        parse_scan_message(payload)


def test_a_notification_whose_decoded_key_traverses_is_refused() -> None:
    document = json.loads(sample("minio_put.json"))
    document["Records"][0]["s3"]["object"]["key"] = "..%2F..%2Fmodels%2Fcurrent.json"
    with pytest.raises(ScanMessageError):
        parse_scan_message(json.dumps(document).encode())


def test_scan_id_is_the_key_without_its_extension() -> None:
    assert scan_id_from_key("line1/cell-42.png") == "line1/cell-42"
    assert scan_id_from_key("line1/cell-42") == "line1/cell-42"
    assert scan_id_from_key("a.b/c.tif") == "a.b/c"
