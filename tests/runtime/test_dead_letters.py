from runtime.dead_letters import dead_letter, error_code
from runtime.records import SourceRecord
from schemas.dead_letters import DeadLetter


class ImageTroubleError(Exception):
    code = "image_truncated"


class ObjectMissing(Exception):  # noqa: N818 (named like storage.errors)
    pass


def test_error_code_prefers_the_code_attribute() -> None:
    assert error_code(ImageTroubleError("x")) == "image_truncated"
    assert error_code(ObjectMissing("x")) == "object_missing"


def test_dead_letter_keeps_the_original_payload_and_reason() -> None:
    record = SourceRecord("ct.scans", 3, 42, b"scan-1", b"\xff\x00 not utf-8")
    letter = DeadLetter.from_json(dead_letter(record, ObjectMissing("gone"), consumer="inference/a").to_json())
    assert letter.original_payload() == b"\xff\x00 not utf-8"
    assert letter.payload_encoding == "base64"
    assert (letter.source_topic, letter.partition, letter.offset, letter.key) == ("ct.scans", 3, 42, "scan-1")
    assert letter.error_class.endswith("ObjectMissing")
    assert letter.error_message == "gone"
    assert letter.consumer == "inference/a"


def test_dead_letter_of_an_empty_message() -> None:
    letter = dead_letter(SourceRecord("t", 0, 0, None, None), ValueError(""), consumer="c")
    assert letter.payload == ""
    assert letter.key is None
    assert letter.error_message == "ValueError"
