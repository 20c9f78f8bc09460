from aiokafka.structs import ConsumerRecord

from runtime.records import SourceRecord, next_offsets, source_record


def record(offset: int, partition: int) -> SourceRecord:
    return SourceRecord("ct.scans", partition, offset, b"k", b"")


def test_offsets_to_commit_are_one_past_the_last_per_partition() -> None:
    records = [record(5, 0), record(7, 0), record(3, 1), record(6, 0)]
    assert next_offsets(records) == {("ct.scans", 0): 8, ("ct.scans", 1): 4}


def test_a_consumed_record_keeps_where_it_came_from_and_what_it_held() -> None:
    consumed = ConsumerRecord(
        topic="t", partition=2, offset=9, timestamp=1234, timestamp_type=0, key=b"k", value=b"v",
        checksum=None, serialized_key_size=1, serialized_value_size=1, headers=(),
    )  # fmt: skip
    assert source_record(consumed) == SourceRecord("t", 2, 9, b"k", b"v", 1234)
