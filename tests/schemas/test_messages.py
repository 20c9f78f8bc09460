"""Every Kafka message: JSON round trips (hypothesis), and refusal of unknown majors and hostile payloads."""

from __future__ import annotations

import json
import string
from datetime import UTC

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.accepted import AcceptedScan
from schemas.base import SCHEMA_MAJOR, SCHEMA_VERSION, Message
from schemas.dead_letters import DeadLetter
from schemas.model_updates import ModelUpdate
from schemas.scans import ScanEvent
from schemas.verdicts import StageTimings, Verdict

_id_chars = string.ascii_letters + string.digits + "-_.é"
scan_ids = (
    st.lists(st.text(_id_chars, min_size=1, max_size=12), min_size=1, max_size=3)
    .map("/".join)
    .filter(lambda s: s[0] not in ".-" and ".." not in s.split("/") and "." not in s.split("/"))
)
buckets = st.from_regex(r"\A[a-z0-9][a-z0-9-]{1,30}[a-z0-9]\Z")
times = st.datetimes(timezones=st.just(UTC))
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
small_text = st.text(max_size=200)
versions = st.text(string.ascii_letters + string.digits + "-.", min_size=1, max_size=64)
minors = st.integers(0, 99).map(lambda m: f"{SCHEMA_MAJOR}.{m}")

scan_events = st.builds(
    ScanEvent,
    schema_version=minors,
    scan_id=scan_ids,
    bucket=buckets,
    key=st.text(min_size=1, max_size=200),
    size=st.none() | st.integers(0, 2**40),
    etag=st.none() | st.text(string.hexdigits, max_size=34),
    source=st.sampled_from(["battery-ct", "s3-notification"]),
    created_at=times,
)
verdicts = st.builds(
    Verdict,
    scan_id=scan_ids,
    image_url=buckets.map(lambda b: f"s3://{b}/x.png"),
    reconstruction_error=finite,
    anomaly_score=finite,
    is_anomaly=st.booleans(),
    threshold=finite,
    model_version=versions,
    heatmap_url=st.none() | st.just("s3://heatmaps/x.png"),
    timings=st.none()
    | st.builds(
        StageTimings,
        fetch_ms=st.floats(0, 1e6),
        decode_ms=st.floats(0, 1e6),
        model_ms=st.floats(0, 1e6),
        publish_ms=st.none() | st.floats(0, 1e6),
        event_to_verdict_ms=st.none() | st.floats(0, 1e6),
    ),
    batch_size=st.none() | st.integers(1, 1024),
    event_time=st.none() | times,
    judged_at=times,
)
accepted = st.builds(
    AcceptedScan,
    scan_id=scan_ids,
    image_url=st.just("s3://scans/a.png"),
    label=st.sampled_from(["normal", "defect"]),
    note=st.none() | small_text,
    job_id=st.none() | st.uuids().map(str),
    accepted_at=times,
)
model_updates = st.builds(
    ModelUpdate,
    status=st.sampled_from(["promoted", "rejected", "rolled_back"]),
    version=versions,
    parent=st.none() | versions,
    current_version=versions,
    threshold=finite,
    new_validation_error=st.none() | finite,
    new_anomaly_error=st.none() | finite,
    dataset_size=st.dictionaries(st.sampled_from(["normal", "defect"]), st.integers(0, 10**6)),
    scan_ids=st.lists(scan_ids, max_size=5),
    job_ids=st.lists(st.uuids().map(str), max_size=3),
    reason=st.none() | small_text,
    created_at=times,
)
dead_letters = st.builds(
    lambda value, **kw: DeadLetter(
        payload=DeadLetter.encode_payload(value)[0], payload_encoding=DeadLetter.encode_payload(value)[1], **kw
    ),
    value=st.binary(max_size=300),
    source_topic=st.just("ct.scans"),
    partition=st.integers(0, 1000),
    offset=st.integers(0, 2**62),
    key=st.none() | small_text,
    error_class=st.just("storage.errors.ObjectMissing"),
    error_message=small_text,
    consumer=st.just("inference/host-1"),
    failed_at=times,
)


@pytest.mark.parametrize(
    "strategy", [scan_events, verdicts, accepted, model_updates, dead_letters], ids=lambda s: repr(s)[:30]
)
@given(data=st.data())
def test_every_message_round_trips_through_json(strategy: st.SearchStrategy[Message], data: st.DataObject) -> None:
    message = data.draw(strategy)
    assert type(message).from_json(message.to_json()) == message


@given(value=st.binary(max_size=500))
def test_dead_letter_keeps_the_original_bytes(value: bytes) -> None:
    payload, encoding = DeadLetter.encode_payload(value)
    letter = DeadLetter(
        source_topic="t", partition=0, offset=0, payload=payload, payload_encoding=encoding,
        error_class="E", error_message="m", consumer="c",
    )  # fmt: skip
    assert DeadLetter.from_json(letter.to_json()).original_payload() == value


MESSAGES: list[tuple[type[Message], dict[str, object]]] = [
    (ScanEvent, {"scan_id": "a", "bucket": "scans", "key": "a.png"}),
    (AcceptedScan, {"scan_id": "a", "image_url": "s3://scans/a.png", "label": "normal"}),
    (ModelUpdate, {"status": "promoted", "version": "v1", "current_version": "v1", "threshold": 0.5}),
    (
        Verdict,
        {
            "scan_id": "a",
            "image_url": "s3://scans/a.png",
            "reconstruction_error": 0.1,
            "anomaly_score": 0.2,
            "is_anomaly": False,
            "threshold": 0.5,
            "model_version": "v1",
        },
    ),
    (
        DeadLetter,
        {
            "source_topic": "t",
            "partition": 0,
            "offset": 1,
            "payload": "x",
            "error_class": "E",
            "error_message": "m",
            "consumer": "c",
        },
    ),
]


@pytest.mark.parametrize(("model", "fields"), MESSAGES, ids=[m.__name__ for m, _ in MESSAGES])
def test_minimal_messages_parse_and_newer_minors_and_unknown_fields_are_tolerated(
    model: type[Message], fields: dict[str, object]
) -> None:
    assert model.from_json(json.dumps(fields)).schema_version == SCHEMA_VERSION
    newer = model.from_json(json.dumps({**fields, "schema_version": f"{SCHEMA_MAJOR}.7", "added_later": [1]}))
    assert newer.schema_version == f"{SCHEMA_MAJOR}.7"


@pytest.mark.parametrize(("model", "fields"), MESSAGES, ids=[m.__name__ for m, _ in MESSAGES])
@pytest.mark.parametrize("version", [f"{SCHEMA_MAJOR + 1}.0", "0.9", "x.1", "1.x", "", "1" * 20, 1])
def test_unknown_major_and_malformed_versions_are_validation_errors(
    model: type[Message], fields: dict[str, object], version: object
) -> None:
    with pytest.raises(ValidationError, match="schema_version"):
        model.from_json(json.dumps({**fields, "schema_version": version}))


@pytest.mark.parametrize(
    "scan_id", ["..", "../x", "a/../b", "a//b", "/abs", "", "-flag", "a\nb", "a\x00b", "a" * 257, "a\\b", "a?b"]
)
def test_hostile_scan_ids_are_refused(scan_id: str) -> None:
    with pytest.raises(ValidationError, match="scan_id"):
        AcceptedScan.from_json(json.dumps({"scan_id": scan_id, "image_url": "s3://scans/a.png", "label": "normal"}))


@pytest.mark.parametrize(
    ("model", "fields", "field", "value"),
    [
        (AcceptedScan, MESSAGES[1][1], "label", "maybe"),
        (AcceptedScan, MESSAGES[1][1], "image_url", "s3://scans/" + "a" * 3000),
        (AcceptedScan, MESSAGES[1][1], "note", "n" * 2001),
        (ModelUpdate, MESSAGES[2][1], "status", "deleted"),
        (ModelUpdate, MESSAGES[2][1], "threshold", "high"),
        (ModelUpdate, MESSAGES[2][1], "version", "v" * 65),
        (Verdict, MESSAGES[3][1], "is_anomaly", "perhaps"),
        (Verdict, MESSAGES[3][1], "anomaly_score", [1.0]),
        (DeadLetter, MESSAGES[4][1], "offset", -1),
        (DeadLetter, MESSAGES[4][1], "error_message", "e" * 4001),
        (ScanEvent, MESSAGES[0][1], "size", "big"),
    ],
)
def test_wrong_types_and_oversized_fields_are_refused(
    model: type[Message], fields: dict[str, object], field: str, value: object
) -> None:
    with pytest.raises(ValidationError, match=field):
        model.from_json(json.dumps({**fields, field: value}))


def test_a_huge_payload_is_refused_not_swallowed() -> None:
    with pytest.raises(ValidationError):
        DeadLetter.from_json(json.dumps({**MESSAGES[4][1], "payload": "p" * 1_000_001}))


@pytest.mark.parametrize("payload", [b"", b"{", b"[]", b"null", b'{"scan_id": "a"}'])
def test_non_objects_and_incomplete_json_are_validation_errors(payload: bytes) -> None:
    with pytest.raises(ValidationError):
        AcceptedScan.from_json(payload)


def test_messages_are_immutable() -> None:
    event = ScanEvent(scan_id="a", bucket="scans", key="a.png")
    with pytest.raises(ValidationError):
        event.key = "b.png"  # type: ignore[misc]
